#!/usr/bin/env bash
# The accelerator benchmark set, one script for a lent GPU/TPU (about 8 minutes).
#
#   bash bench/gpu.sh [OUT]          # OUT defaults to bench-out/gpu
#
# Installs the CUDA wheels of jax when an NVIDIA GPU is present and jax does not
# see it, then runs, each under its own time limit, writing JSON under OUT:
#   speed.json      bench/speed.py at the reference size (acc/loo, sgd_ie/train)
#   scale.json      bench/scale.py --quick (time and memory against n, T, |params|)
#   mnist_all.json  ACC-SGD-IE over 11,000 MNIST 1-vs-7 examples (the headline)
# The data sets are read from $ACCJAX_DATA (default ../shared/data).
set -u
OUT=${1:-bench-out/gpu}
mkdir -p "$OUT"
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export ACCJAX_DATA=${ACCJAX_DATA:-../shared/data}
if command -v nvidia-smi >/dev/null && ! "$PY" -c "import jax,sys; sys.exit(jax.default_backend()!='gpu')" 2>/dev/null; then
  "$PY" -m pip install -q "jax[cuda12]" || echo "could not install jax[cuda12]" >&2
fi
"$PY" -c "import jax; print(jax.devices())" | tee "$OUT/devices.txt"
nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null | tee -a "$OUT/devices.txt"
run() {  # run SECONDS NAME CMD...
  local limit=$1 name=$2; shift 2
  echo "== $name (limit ${limit}s)"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "   exit $? ($(tail -c 300 "$OUT/$name.log" | tr '\n' ' '))"
}
run 90 speed "$PY" bench/speed.py --repeats 5 --out "$OUT/speed.json"
run 180 scale "$PY" bench/scale.py --quick --out "$OUT/scale/scale.json"
run 200 mnist_all "$PY" bench/mnist_all.py --epochs 3 --out "$OUT/mnist_all.json"
ls -la "$OUT"
