#!/usr/bin/env bash
# Every GPU check in one go, in under 5 minutes on one H100/H200: the CUDA tests, the manual-vs-native table on
# CUDA, a short CUDA training run of train.py, and the benchmarks. Prints what the README's GPU figures need.
#   bash scripts/gpu_check.sh [MNIST_DIR]
# MNIST_DIR defaults to ../shared/datasets/mnist; on a lent machine where ../shared does not travel, copy the four
# .gz files into a git-ignored folder of the repo (e.g. data/mnist) and pass that folder.
set -euo pipefail
cd "$(dirname "$0")/.."
MNIST_DIR=${1:-../shared/datasets/mnist}
export PYTHONUNBUFFERED=1
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('device:', torch.cuda.get_device_name())"
python -m pip install -q -e ".[test]"
python -m pytest -q tests/test_cuda.py tests/test_check_cli.py
python -m manual_bp.check --device cuda | tail -20
start=$(date +%s)
python train.py --data.data_dir "$MNIST_DIR" --data.download false --trainer.max_epochs 3 \
    --trainer.enable_progress_bar false --trainer.logger.init_args.name mnist_cuda 2>&1 | grep -E "test accuracy|Epoch|error"
echo "3-epoch CUDA run of train.py (start-up and test included): $(( $(date +%s) - start )) s"
python -m benchmarks.run --data_dir "$MNIST_DIR" --device cuda --quick
