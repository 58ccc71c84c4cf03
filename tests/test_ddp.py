"""Lightning's DDP strategy (2 CPU processes, gloo) with the manual layers equals one process on the global batch."""
import subprocess
import sys

import pytest
import torch

from tests.helpers import ROOT, cli_args

pytestmark = pytest.mark.slow  # two processes and one, each started afresh



def train(tmp_path, name, mnist_slice, batch_size, *extra):
    args = [sys.executable, "train.py", "fit", *cli_args(
        mnist_slice, tmp_path, "--data.train_subset", "512", "--data.batch_size", str(batch_size),
        "--model.optimizer", "sgd", "--model.lr", "0.1", "--model.lr_schedule", "none",
        "--trainer.accelerator", "cpu", *extra, name=name)]
    completed = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    checkpoint = torch.load(tmp_path / name / "version_0" / "checkpoints" / "last.ckpt", weights_only=False)
    best_val_acc = next(state["best_model_score"] for key, state in checkpoint["callbacks"].items()
                        if key.startswith("ModelCheckpoint"))
    return checkpoint["state_dict"], checkpoint["global_step"], best_val_acc


def test_two_gloo_processes_match_one_process_with_the_global_batch(tmp_path, mnist_slice):
    ddp, ddp_steps, ddp_val_acc = train(tmp_path, "ddp", mnist_slice, 32,
                                        "--trainer.strategy", "ddp", "--trainer.devices", "2")
    single, single_steps, single_val_acc = train(tmp_path, "single", mnist_slice, 64, "--trainer.devices", "1")
    assert ddp_steps == single_steps == 2 * 512 // 64  # every sample once per epoch, split over the two ranks
    # tolerance: the all-reduce averages two float32 half-batch gradients instead of one full-batch mean
    torch.testing.assert_close(ddp, single, rtol=1e-5, atol=1e-6)
    # validation accuracy is reduced across the ranks (each validates half of the 500 images)
    torch.testing.assert_close(ddp_val_acc, single_val_acc)
