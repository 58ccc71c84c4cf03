#!/usr/bin/env bash
# Every GPU check in one go on one H100/H200: the CUDA tests (ops and the CUDA-graph training step), the speed
# comparison against an older tree (with BASELINE), the benchmarks on CUDA, a full default run of train.py, a step's
# host time against a thin Lightning module's (per callback hook too) and a checkpoint write's parts, the
# manual-vs-native table, the operations each op launches, and where a train.py step's time goes. Prints what the
# docs' GPU figures need; full logs go to $OUT (default /tmp/gpu_check).
#   bash scripts/gpu_check.sh [MNIST_DIR]                          # about 5 minutes
#   BASELINE=.baseline bash scripts/gpu_check.sh [MNIST_DIR]       # and, after the tests, epoch times of this
#       tree against an older one on the same GPU (about 1.5 minutes more); .baseline (git-ignored: carry it to a
#       lent GPU machine) holds the older tree, e.g. the one before the training-side redesign:
#       mkdir -p .baseline && git archive 3eeaa7b | tar -x -C .baseline
# Each stage has its own time limit, cut to what is left of BUDGET seconds (default 540, under a 10-minute call);
# a stage with under 20 s left is skipped and says so. STAGES="tests host" runs only the stages named (tests,
# before_after, bench, train, host, check, op_profile, profile). Needs the project's dependencies installed
# (pip install -e ".[test]"). MNIST_DIR defaults to ../shared/datasets/mnist; on a machine where that folder does
# not exist, copy the four .gz files into a git-ignored folder of the repo (e.g. data/mnist) and pass that folder.
set -uo pipefail
cd "$(dirname "$0")/.."
export MNIST_DIR=${1:-../shared/datasets/mnist} PYTHONUNBUFFERED=1
PYTHON=${PYTHON:-python3}
OUT=${OUT:-/tmp/gpu_check}
BUDGET=${BUDGET:-540}
mkdir -p "$OUT"
SECONDS=0

# stage KEY TITLE LIMIT: returns 1 (skip) for a stage STAGES does not name; else prints the title and returns 1 when
# under 20 s of the budget is left, or sets LIMIT to the stage's limit cut to what is left
stage() {
    [ "$1" = device ] || [ -z "${STAGES:-}" ] || [[ " $STAGES " == *" $1 "* ]] || return 1
    local left=$((BUDGET - SECONDS))
    echo; echo "=== $2 ($(date +%T), ${SECONDS} s in)"
    if [ "$left" -lt 20 ]; then echo "skipped: ${left} s of the ${BUDGET} s budget left"; return 1; fi
    LIMIT=$(($3 < left ? $3 : left))
}

stage device "device" 30 && {
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
    $PYTHON -c "import torch, pytorch_lightning as pl; assert torch.cuda.is_available(), 'no CUDA device'; \
print(torch.cuda.get_device_name(), 'torch', torch.__version__, 'lightning', pl.__version__, 'cpus', __import__('os').cpu_count())" \
        || exit 1
}

stage tests "CUDA tests" 150 && {
    timeout $LIMIT $PYTHON -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_training_steps.py 2>&1 \
        | tee "$OUT/tests.log" | tail -n 25
}

if [ -n "${BASELINE:-}" ]; then
    stage before_after "before/after: (a) train.py and (b) the plain loop, this tree against $BASELINE (2 rounds)" 150 && {
        timeout $LIMIT $PYTHON -m benchmarks.before_after --baseline "$BASELINE" --data_dir "$MNIST_DIR" \
            --device cuda --rounds 2 2>&1 | tee "$OUT/before_after.log" | tail -n 8
    }
fi

stage bench "benchmarks on CUDA (op table, training step, optimizer steps, memory, epoch pipelines)" 170 && {
    timeout $LIMIT $PYTHON -m benchmarks.run --data_dir "$MNIST_DIR" --device cuda --rounds 2 --pipeline_rounds 1 \
        --out "$OUT/cuda.json" > "$OUT/bench.log" 2>&1
    echo "exit $?"; grep -v -E "^(GPU|TPU|HPU|LOCAL_RANK|💡|Loading|\`Trainer)" "$OUT/bench.log" | tail -n 30
}

stage train "train.py, default config, on CUDA" 120 && {
    start=$SECONDS
    timeout $LIMIT $PYTHON train.py --data.data_dir "$MNIST_DIR" --data.download false \
        --trainer.enable_progress_bar false --trainer.logger.init_args.save_dir /tmp/gpu_check_runs \
        > "$OUT/train.log" 2>&1
    echo "exit $?, $((SECONDS - start)) s wall (start-up, 12 epochs with validation, test)"
    grep -E "test accuracy|^epoch|rror|Warning" "$OUT/train.log" | tail -n 10
}

stage host "host time of a step on CUDA (default network): train.py against a thin module, then per hook" 170 && {
    # NOTE: a checkpoint write's parts (a few s), the variants in fresh processes (about 17 s each), then the hooks
    # timed in one run (about 15 s)
    timeout 30 $PYTHON -m benchmarks.checkpoint_write --device cuda 2>&1 | tee "$OUT/checkpoint_write.log" | tail -n 4
    timeout $((LIMIT > 80 ? LIMIT - 60 : 20)) $PYTHON -m benchmarks.host_time --data_dir "$MNIST_DIR" --device cuda \
        --hidden "[800]" \
        --rounds 1 --only thin train.py "train.py without ModelCheckpoint" "train.py without all of them" \
        "train.py, native layers" > "$OUT/host.log" 2>&1
    tail -n 7 "$OUT/host.log"
    left=$((BUDGET - SECONDS))
    [ "$left" -ge 5 ] && timeout $((left < 30 ? left : 30)) $PYTHON -m benchmarks.host_time \
        --data_dir "$MNIST_DIR" --device cuda --hidden "[800]" --hooks 2>&1 | tee -a "$OUT/host.log" | tail -n 14
}

stage check "manual vs native on CUDA (largest errors per op)" 60 && {
    timeout $LIMIT $PYTHON -m manual_bp.check --device cuda > "$OUT/check.txt" 2>&1; tail -n 15 "$OUT/check.txt"
}

stage op_profile "the operations each op launches on CUDA, manual against native" 60 && {
    timeout $LIMIT $PYTHON -m benchmarks.op_profile --device cuda 2>&1 | tee "$OUT/op_profile.txt" | cut -c1-90
}

stage profile "where a train.py step's time goes on CUDA" 60 && {
    timeout $LIMIT $PYTHON -m benchmarks.profile_train --data_dir "$MNIST_DIR" --device cuda --top 0 \
        > "$OUT/profile.log" 2>&1
    grep -A 12 "per training step" "$OUT/profile.log"
}
echo; echo "done in ${SECONDS} s; logs in $OUT"
