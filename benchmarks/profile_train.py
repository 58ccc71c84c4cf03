"""Where a train.py training step's time goes: cProfile over two training epochs of the default config.

    python -m benchmarks.profile_train --data_dir ../shared/datasets/mnist [--device cuda] [--top 25]

Prints milliseconds per step of the parts of Lightning's batch loop (cumulative times; cProfile's own overhead
inflates Python-heavy parts, so read the shares, not the absolute times), then the top functions.
"""
import argparse
import cProfile
import pstats
import tempfile
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PARTS = {  # (file suffix, function): what it is
    ("training_epoch_loop.py", "advance"): "one batch of Lightning's epoch loop (everything below)",
    ("fetchers.py", "__next__"): "  fetch the batch (TensorBatches: index, copy)",
    ("optimizer.py", "step"): "  LightningOptimizer.step: the closure below, optimizer-step hooks, fused Adam",
    ("classifier.py", "training_step"): "    our training_step: the forward and loss (on CUDA: a replay)",
    ("strategy.py", "backward"): "    the backward, with on_before/after_backward hooks (on CUDA: a replay)",
    ("adam.py", "step"): "    torch's fused Adam",
    ("training_steps.py", "on_before_optimizer_step"): "    TrainingSteps: the non-finite test",
    ("lr_scheduler.py", "step"): "  the lr scheduler",
    ("call.py", "_call_callback_hooks"): "  callback hooks (all of them)",
    ("training_steps.py", "on_train_batch_end"): "    TrainingSteps: the epoch sums, steps/loss",
    ("model_checkpoint.py", "on_train_batch_end"): "    ModelCheckpoint (the step-wise last.ckpt)",
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=str(ROOT.parent / "shared" / "datasets" / "mnist"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    from train import cli_main

    with tempfile.TemporaryDirectory() as tmp:
        profiler = cProfile.Profile()
        profiler.enable()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")  # NOTE: as in benchmarks/run.py
            cli = cli_main(["fit", "--data.data_dir", args.data_dir, "--data.download", "false",
                            "--trainer.max_epochs", "2", "--trainer.limit_val_batches", "0", "--data.max_shift", "0",
                            "--trainer.accelerator", args.device, "--trainer.enable_progress_bar", "false",
                            "--trainer.logger.init_args.save_dir", tmp])
        profiler.disable()
    steps = cli.trainer.global_step
    stats = pstats.Stats(profiler)
    print(f"\nper training step ({steps} steps, {args.device}), cumulative ms:")
    for (file, name), label in PARTS.items():
        total = sum(row[3] for (path, _, function), row in stats.stats.items()
                    if path.endswith(file) and function == name)
        print(f"{total / steps * 1e3:8.3f}  {label}")
    stats.sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
