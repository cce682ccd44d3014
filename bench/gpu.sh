#!/usr/bin/env bash
# The accelerator benchmark set, one script for a lent GPU (about 14 minutes).
#
#   bash bench/gpu.sh [OUT]          # OUT defaults to bench-out/gpu
#   QUICK=1 bash bench/gpu.sh OUT    # every command at its --quick sizes (a smoke
#                                    # test: tests/test_bench.py runs it on CPU)
#
# Runs, each under its own time limit, writing JSON under OUT:
#   api.json        bench/api.py: the public calls as ratios to a training step
#                   (MLP, CNN, transformer), as docs/performance.md leads with
#   speed-4000.json bench/speed.py at n = 4,000, 10 epochs, chunk 1000
#   scale.json      bench/scale.py --small (time and memory against n, T, |params|)
#   mnist_all.json  ACC-SGD-IE over 11,000 MNIST 1-vs-7 examples (the headline)
#   cnn.json        bench/cnn.py: Hara's CNN step, loo / acc per target-step, sgd_ie
#                   (on the GPU models.cnn lowers to lax.conv, not the CPU matmul)
#   text/           bench/full_pipeline.py --workload news20 at full size (10,314
#                   posts, 128 tokens, the 1.44M-parameter transformer, AdamW, 3
#                   epochs, 10 % flipped labels): training, Adam-IE, self-influence,
#                   the fast ACC in 8 GB and the attribution matrix (the parts that
#                   fit a few minutes; about 4 minutes of the ~13)
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
  Q=(--quick) API=(--workloads mlp) SPEED_4000=() SCALE=() MNIST=() CNN=()
  TEXT=(--seq-len 16 --width 16 --attribution-queries 5)
else
  Q=() API=(--repeats 5) SCALE=(--small) MNIST=(--epochs 3) CNN=(--repeats 5)
  SPEED_4000=(--num-examples 4000 --epochs 10 --repeats 3 --chunk-size 1000)
  TEXT=(--epochs 3 --batch-size 32 --label-noise 0.1)
fi
run 150 api "$PY" bench/api.py "${Q[@]}" "${API[@]}" --out "$OUT/api.json"
run 120 speed-4000 "$PY" bench/speed.py "${Q[@]}" "${SPEED_4000[@]}" \
  --out "$OUT/speed-4000.json"
run 150 scale "$PY" bench/scale.py "${Q[@]}" "${SCALE[@]}" --out "$OUT/scale/scale.json"
run 150 mnist_all "$PY" bench/mnist_all.py "${Q[@]}" "${MNIST[@]}" \
  --out "$OUT/mnist_all.json"
run 120 cnn "$PY" bench/cnn.py "${Q[@]}" "${CNN[@]}" --out "$OUT/cnn.json"
run 240 text "$PY" bench/full_pipeline.py --workload news20 "${Q[@]}" "${TEXT[@]}" \
  --parts train,sgd_ie,tracin_self,acc_fast,attribution --out "$OUT/text"
ls -la "$OUT"
[ "$FAILED" -eq 0 ] || { echo "$FAILED of the runs failed (see $LOG)"; exit 1; }
