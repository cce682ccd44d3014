#!/usr/bin/env bash
# The accelerator benchmark set, one script for a lent GPU (about 11 minutes).
#
#   bash bench/gpu.sh [OUT]          # OUT defaults to bench-out/gpu
#   QUICK=1 bash bench/gpu.sh OUT    # every command at its --quick sizes (a smoke
#                                    # test: tests/test_bench.py runs it on CPU)
#
# Runs, each under its own time limit, writing JSON under OUT:
#   api.json        bench/api.py: the public calls as ratios to a training step
#                   (MLP, CNN, transformer), as docs/performance.md leads with
#   mnist/          bench/full_pipeline.py --workload mnist-hara at full size
#                   (50,000 images, Hara's recipe, 20 epochs): training, SGD-IE and
#                   the fast ACC for every image (the rankings cleansing uses)
#   text/           bench/full_pipeline.py --workload news20 at full size (10,314
#                   posts, 128 tokens, the 1.44M-parameter transformer, AdamW, 3
#                   epochs, 10 % flipped labels): training, Adam-IE, self-influence,
#                   the fast ACC in 4 GB and the attribution matrix
# and exits 1 if any of them failed (each one's exit status is in OUT/log.txt).
# PYTHON names the interpreter (default: python3, or .venv's on a CPU try-out).
#
# The lent machine can reach nothing outside it and our .venv does not travel:
# use its python3 (JAX with CUDA, optax, flax, chex, scikit-learn and matplotlib
# are in its image) with this checkout on PYTHONPATH. ../shared/data does not
# travel either; copy MNIST into an ignored folder of the checkout and carry it:
#
#   echo /.device-data/ >> .git/info/exclude
#   mkdir -p .device-data/mnist && cp ../shared/data/mnist/*.gz .device-data/mnist/
#   cp -r ../shared/data/20newsgroups .device-data/
#   run(command="bash bench/gpu.sh $OUT", carry=[".device-data"], timeout_s=560)
set -u
OUT=${1:-bench-out/gpu}
mkdir -p "$OUT"
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif ! command -v nvidia-smi >/dev/null && [ -x .venv/bin/python ]; then PY=.venv/bin/python  # a CPU try-out
else PY=python3; fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -z "${ACCJAX_DATA:-}" ]; then
  if [ -d .device-data ]; then export ACCJAX_DATA=$PWD/.device-data; else export ACCJAX_DATA=../shared/data; fi
fi
LOG="$OUT/log.txt"  # one log: the device returns at most 8 files
"$PY" -c "import jax; print(jax.__version__, jax.devices())" 2>&1 | tee "$LOG"
nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null | tee -a "$LOG"
FAILED=0
run() {  # run SECONDS NAME CMD...
  local limit=$1 name=$2 rc; shift 2
  echo "== $name (limit ${limit}s)" | tee -a "$LOG"
  timeout "$limit" "$@" >> "$LOG" 2>&1
  rc=$?
  echo "   $name exit $rc" | tee -a "$LOG"
  [ "$rc" -eq 0 ] || FAILED=$((FAILED + 1))
}
# The sizes of each command; QUICK=1 drops them for --quick's.
if [ "${QUICK:-0}" = 1 ]; then
  Q=(--quick) API=(--workloads mlp) MNIST=()
  TEXT=(--seq-len 16 --width 16 --attribution-queries 5)
else
  Q=() API=(--repeats 5) MNIST=(--epochs 20 --n-val 10000)
  TEXT=(--epochs 3 --batch-size 32 --label-noise 0.1)
fi
run 150 api "$PY" bench/api.py "${Q[@]}" "${API[@]}" --out "$OUT/api.json"
run 240 mnist "$PY" bench/full_pipeline.py --workload mnist-hara \
  "${Q[@]}" "${MNIST[@]}" --parts train,sgd_ie,acc_fast --out "$OUT/mnist"
run 240 text "$PY" bench/full_pipeline.py --workload news20 "${Q[@]}" "${TEXT[@]}" \
  --parts train,sgd_ie,tracin_self,acc_fast,attribution --out "$OUT/text"
ls -la "$OUT"
[ "$FAILED" -eq 0 ] || { echo "$FAILED of the runs failed (see $LOG)"; exit 1; }
