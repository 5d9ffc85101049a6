#!/usr/bin/env bash
# The GPU check of issue 10, as one JSON document on stdout (progress on stderr), in < 10 min.
#
# On a machine with an NVIDIA GPU, from the repository root (with .venv set up by setup.sh):
#   bash benchmarks/device_suite.sh > device_suite.json
# Parts, each under its own time limit (seconds; the sum stays under 600):
#   tests        pytest of tests/models (device-parametrised tests use CUDA when present,
#                the tiny compiled step included)                                     110
#   step         training step fp32 / tf32 / bf16, eager, mlp and cnn, M in {1,3},
#                K in {100,500}, interleaved rounds (bench_train_step.py)             60
#   step_compile the same step compiled vs eager, fp32 / tf32 / bf16, mlp, M=1, K=500   90
#   is           IS evaluation fp32 / tf32 / bf16, M in {1,3}, K=500, S=5000           45
#   packing      16-trial Fashion-MNIST study at gpus_per_trial 0.125, 0.25, 0.5, 1
#                (most packed first; a setting that no longer fits in the part's 270 s
#                is reported as skipped): trials/hour, GPU utilisation (nvidia-smi),
#                memory peaks                                                         275
# A part that fails or runs out of time is reported with its exit status and the tail of its
# stderr; the document is always written. Without a GPU, DEVICE_SUITE_CPU=1 runs every part
# small and on the CPU (tf32 dropped, packing on CPU) to check the script itself.
# $OUT (if set) also receives the document and each part's raw output.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
PARTS=$(mktemp -d "${TMPDIR:-/tmp}/device-suite.XXXXXX")
export PYTHONUNBUFFERED=1
DATA_DIR=${GMMPVAE_DATA_DIR:-../shared/datasets}

run_part() {  # name limit_seconds command...
  local name=$1 limit=$2
  shift 2
  echo "device_suite: $name (limit ${limit}s)" >&2
  local start end
  start=$(date +%s.%N)
  timeout -k 5 "$limit" "$@" > "$PARTS/$name.out" 2> "$PARTS/$name.err"
  echo $? > "$PARTS/$name.rc"
  end=$(date +%s.%N)
  echo "$start $end" > "$PARTS/$name.time"
  tail -n 3 "$PARTS/$name.err" >&2
}

if [ "${DEVICE_SUITE_CPU:-0}" = "1" ]; then
  MODE=cpu
  run_part tests 300 "$PY" -m pytest -q -x -p no:cacheprovider -m "not slow" \
    tests/models/test_precision.py tests/models/test_step.py
  run_part step 120 "$PY" benchmarks/bench_train_step.py --precisions fp32 bf16 \
    --Ms 1 --Ks 100 --steps 3 --repeats 2 --threads 1
  run_part step_compile 10 true  # compiling on CPU takes minutes: skipped in the CPU check
  run_part is 120 "$PY" benchmarks/bench_eval.py --precisions fp32 bf16 --M 1 --K 100 \
    --images 4 --samples 200 --repeats 2 --threads 1 --device cpu
  run_part packing 400 "$PY" benchmarks/bench_packing.py --cpu-dry-run
else
  MODE=cuda
  run_part tests 110 "$PY" -m pytest -q -p no:cacheprovider tests/models
  run_part step 60 "$PY" benchmarks/bench_train_step.py --device cuda \
    --precisions fp32 tf32 bf16 --archs mlp cnn --Ms 1 3 --Ks 100 500 --steps 20 --repeats 3
  run_part step_compile 90 "$PY" benchmarks/bench_train_step.py --device cuda \
    --precisions fp32 tf32 bf16 --compile both --archs mlp --Ms 1 --Ks 500 --steps 20 \
    --repeats 3
  run_part is 45 "$PY" benchmarks/bench_eval.py --device cuda --precisions fp32 tf32 bf16 \
    --M 1 3 --K 500 --samples 5000 --images 200 --repeats 3 --memory-mb 2048
  run_part packing 275 "$PY" benchmarks/bench_packing.py --data-dir "$DATA_DIR" \
    --gpus-per-trial 0.125 0.25 0.5 1 --budget 265
fi

"$PY" benchmarks/suite_json.py "$PARTS" "$MODE" tests step step_compile is packing \
  > "$PARTS/device_suite.json"
status=$?
cat "$PARTS/device_suite.json"
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT" && cp "$PARTS"/* "$OUT"/
fi
exit $status
