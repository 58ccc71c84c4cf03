#!/usr/bin/env bash
# The GPU checks on one H100/H200, in calls of under 5 minutes each (stage names in brackets):
#   bash scripts/gpu_check.sh [MNIST_DIR]
#       the checks: the CUDA tests [tests] (every op against torch, no synchronisation, CUDA-graph capture, the
#       graphed training step, what train.py prints on a GPU), the benchmarks on CUDA [bench], a full default run
#       of train.py [train]
#   STAGES="before_after checkpoint host hooks" BASELINE=.baseline bash scripts/gpu_check.sh [MNIST_DIR]
#       the speed diagnosis: epoch times of this tree against an older one on the same GPU [before_after], a
#       checkpoint write's parts [checkpoint], a step's host time against a thin Lightning module's [host] and per
#       callback hook [hooks]; .baseline (git-ignored: carry it to a lent GPU machine) holds the older tree, e.g.
#       mkdir -p .baseline && git archive 3eeaa7b | tar -x -C .baseline
#   STAGES="check op_profile profile" bash scripts/gpu_check.sh [MNIST_DIR]
#       the tables: manual against native, largest error per op [check]; the operations each op launches, manual
#       against native [op_profile]; where a train.py step's time goes [profile]
# Prints what the docs' GPU figures need; full logs go to $OUT (default /tmp/gpu_check). Each stage has its own time
# limit, cut to what is left of BUDGET seconds (default 300); a stage with under 20 s left is skipped and says so.
# Exits 1 if a stage failed, ran out of time or was skipped, 2 on an unknown stage name. Needs the project's
# dependencies installed (pip install -e ".[test]"). MNIST_DIR defaults to ../shared/datasets/mnist; on a machine
# where that folder does not exist, copy the four .gz files into a git-ignored folder of the repo (e.g. data/mnist)
# and pass that folder.
set -uo pipefail
cd "$(dirname "$0")/.."
export MNIST_DIR=${1:-../shared/datasets/mnist} PYTHONUNBUFFERED=1
PYTHON=${PYTHON:-python3}
OUT=${OUT:-/tmp/gpu_check}
BUDGET=${BUDGET:-300}
STAGES=${STAGES:-tests bench train}
ALL_STAGES="tests before_after bench train checkpoint host hooks check op_profile profile"
for name in $STAGES; do
    [[ " $ALL_STAGES " == *" $name "* ]] || { echo "unknown stage $name; the stages are: $ALL_STAGES" >&2; exit 2; }
done
if [[ " $STAGES " == *" before_after "* && -z "${BASELINE:-}" ]]; then
    echo "the before_after stage needs BASELINE, the older tree to compare with" >&2; exit 2
fi
mkdir -p "$OUT"
SECONDS=0
FAILED=""

# stage KEY TITLE LIMIT: returns 1 (skip) for a stage STAGES does not name; else prints the title and returns 1 when
# under 20 s of the budget is left, or sets LIMIT to the stage's limit cut to what is left
stage() {
    [ "$1" = device ] || [[ " $STAGES " == *" $1 "* ]] || return 1
    local left=$((BUDGET - SECONDS))
    echo; echo "=== $2 ($(date +%T), ${SECONDS} s in)"
    if [ "$left" -lt 20 ]; then echo "skipped: ${left} s of the ${BUDGET} s budget left"; FAILED+=" $1"; return 1; fi
    STAGE=$1 LIMIT=$(($3 < left ? $3 : left))
}

# limited LOG COMMAND...: the command under the stage's LIMIT, its output in LOG; says how it ended if not well
limited() {
    local log=$1; shift
    local start=$SECONDS
    timeout "$LIMIT" "$@" > "$log" 2>&1
    local status=$?
    if [ "$status" -eq 124 ]; then echo "timed out after $((SECONDS - start)) s (log: $log)"; FAILED+=" $STAGE"
    elif [ "$status" -ne 0 ]; then echo "exit $status after $((SECONDS - start)) s (log: $log)"; FAILED+=" $STAGE"
    fi
    return "$status"
}

stage device "device" 30 && {
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
    $PYTHON -c "import torch, pytorch_lightning as pl; assert torch.cuda.is_available(), 'no CUDA device'; \
print(torch.cuda.get_device_name(), 'torch', torch.__version__, 'lightning', pl.__version__, \
'cpus', __import__('os').cpu_count())" || exit 1
}

stage tests "CUDA tests" 150 && {
    limited "$OUT/tests.log" $PYTHON -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_training_steps.py \
        tests/test_console.py::test_a_run_through_a_pipe_prints_one_line_per_epoch_and_nothing_foreign
    grep -E "^(FAILED|ERROR)|passed|failed" "$OUT/tests.log" | tail -n 25
}

if [ -n "${BASELINE:-}" ]; then
    stage before_after "before/after: (a) train.py and (b) the plain loop, this tree against $BASELINE" 150 && {
        limited "$OUT/before_after.log" $PYTHON -m benchmarks.before_after --baseline "$BASELINE" \
            --data_dir "$MNIST_DIR" --device cuda --rounds 2
        tail -n 8 "$OUT/before_after.log"
    }
fi

stage bench "benchmarks on CUDA (op table, training step, optimizer steps, memory, epoch pipelines)" 170 && {
    limited "$OUT/bench.log" $PYTHON -m benchmarks.run --data_dir "$MNIST_DIR" --device cuda --rounds 2 \
        --pipeline_rounds 1 --out "$OUT/cuda.json"
    grep -v -E "^(GPU|TPU|HPU|LOCAL_RANK|💡|Loading|\`Trainer)" "$OUT/bench.log" | tail -n 30
}

stage train "train.py, default config, on CUDA (start-up, 12 epochs with validation, test)" 120 && {
    start=$SECONDS
    limited "$OUT/train.log" $PYTHON train.py --data.data_dir "$MNIST_DIR" --data.download false \
        --trainer.enable_progress_bar false --trainer.logger.init_args.save_dir /tmp/gpu_check_runs \
        && echo "$((SECONDS - start)) s wall"
    grep -E "test accuracy|^epoch|rror|Warning" "$OUT/train.log" | tail -n 10
}

stage checkpoint "one checkpoint write on CUDA, in parts" 40 && {
    limited "$OUT/checkpoint_write.log" $PYTHON -m benchmarks.checkpoint_write --device cuda
    tail -n 6 "$OUT/checkpoint_write.log"
}

stage host "host time of a step on CUDA (default network): train.py against a thin module, fresh processes" 140 && {
    # NOTE: 20-35 s a variant (a fresh process: imports, CUDA, the capture, 4 epochs)
    limited "$OUT/host.log" $PYTHON -m benchmarks.host_time --data_dir "$MNIST_DIR" --device cuda --hidden "[800]" \
        --rounds 1 --only thin train.py "train.py without ModelCheckpoint" "train.py without all of them"
    grep -E "^(round|thin|train\.py|variant|the layers)" "$OUT/host.log"
}

stage hooks "host time of train.py's callback hooks on CUDA (default network), one run" 40 && {
    limited "$OUT/hooks.log" $PYTHON -m benchmarks.host_time --data_dir "$MNIST_DIR" --device cuda --hidden "[800]" \
        --hooks
    grep "µs/step" "$OUT/hooks.log" | head -n 10; grep "^all of them" "$OUT/hooks.log"  # NOTE: the largest first
}

stage check "manual vs native on CUDA (largest errors per op)" 60 && {
    limited "$OUT/check.txt" $PYTHON -m manual_bp.check --device cuda
    tail -n 15 "$OUT/check.txt"
}

stage op_profile "the operations each op launches on CUDA, manual against native" 60 && {
    limited "$OUT/op_profile.txt" $PYTHON -m benchmarks.op_profile --device cuda
    cut -c1-90 "$OUT/op_profile.txt"
}

stage profile "where a train.py step's time goes on CUDA" 60 && {
    limited "$OUT/profile.log" $PYTHON -m benchmarks.profile_train --data_dir "$MNIST_DIR" --device cuda --top 0
    grep -A 12 "per training step" "$OUT/profile.log"
}

echo; echo "done in ${SECONDS} s; logs in $OUT"
if [ -n "$FAILED" ]; then echo "failed, out of time or skipped:$FAILED"; exit 1; fi
