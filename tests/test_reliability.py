"""Nothing lost when training is interrupted; deterministic runs; a diverging run stops with a clear message."""
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.helpers import ROOT, at_step, cli_args
from train import cli_main

STEPS_PER_EPOCH = 40  # 2,500 training digits of the slice in batches of 64
EPOCHS = 3
INTERRUPT_AT = 45  # the step each interruption is sent at: past the validation of epoch 0, the best epoch of run_args
SAVE_EVERY = 8  # steps; NOTE: a divisor of all 120, so that last.ckpt holds the final weights (tested)
BASH_PATH = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def run_args(mnist_slice, save_dir, name):
    """A small but real run: dropout and random shifts draw random numbers, so a resume must restore them too.

    NOTE: its "best" checkpoint is the one of lowest validation accuracy, epoch 0's, so every interruption below
    comes after the best epoch has passed: only if ModelCheckpoint's bookkeeping survives the resume does the final
    test use the same checkpoint as the uninterrupted run.
    """
    return cli_args(mnist_slice, save_dir, "--data.batch_size", "64", "--data.max_shift", "1",
                    "--model.hidden_sizes", "[64]", "--model.dropout", "0.2", "--trainer.max_epochs", str(EPOCHS),
                    "--resume_checkpoint.every_n_train_steps", str(SAVE_EVERY), "--checkpoint.mode", "min",
                    name=name)


def checkpoint_step(path):
    try:
        return torch.load(path, weights_only=True)["global_step"]
    except Exception:  # not written yet
        return -1


def final_results(run_dir, output):
    """The final weights, the test metrics as logged (every digit: TensorBoard's scalars) and the checkpoint
    tested."""
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == EPOCHS * STEPS_PER_EPOCH
    weights = last["state_dict"]
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0}).Reload()
    metrics = {tag: [event.value for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]
               if tag.startswith("test/")}
    tested = re.search(r"test accuracy: [\d.]+%  \((.+)\)$", output, re.MULTILINE).group(1)
    return weights, metrics, tested


@pytest.fixture(scope="module")
def uninterrupted(mnist_slice, tmp_path_factory):
    save_dir = tmp_path_factory.mktemp("uninterrupted")
    done = subprocess.run([sys.executable, "train.py", *run_args(mnist_slice, save_dir, "run")], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    weights, metrics, tested = final_results(save_dir / "run" / "version_0", done.stdout)
    assert Path(tested).name == "best-epoch00.ckpt" and set(metrics) == {"test/acc", "test/loss"}
    return weights, metrics, Path(tested).relative_to(save_dir)


def resume_command(stderr, last):
    """The resume command the run printed (the line after "resume with:"); for a kill, README's."""
    printed = re.search(r"resume with:\n  (.+)", stderr)
    if printed:
        return printed.group(1)
    return f"python train.py --config {shlex.quote(str(last.parents[1] / 'config.yaml'))} --ckpt_path " \
           f"{shlex.quote(str(last))}"


def interrupt_then_resume(mnist_slice, tmp_path, send_signal, move=False):
    """A run that its own AtStep sends `send_signal` at step INTERRUPT_AT, resumed by its printed command pasted into
    bash (the folder has a space in it), with move after moving its whole save_dir elsewhere."""
    save_dir, marker = tmp_path / "my runs", tmp_path / "interrupted"
    stopped = subprocess.run([sys.executable, "train.py", *run_args(mnist_slice, save_dir, "run"),
                              *at_step(INTERRUPT_AT, marker, send_signal)], cwd=ROOT, capture_output=True, text=True,
                             timeout=600)
    last = save_dir / "run" / "version_0" / "checkpoints" / "last.ckpt"
    step = checkpoint_step(last)
    assert marker.exists() and step < EPOCHS * STEPS_PER_EPOCH, f"not interrupted (step {step})\n{stopped.stderr}"
    command = resume_command(stopped.stderr, last)
    if move:
        save_dir = shutil.move(save_dir, tmp_path / "moved runs")
        command = command.replace(str(tmp_path / "my runs"), str(save_dir))
    resumed = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=600,
                             env=BASH_PATH)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "not resumable" not in resumed.stderr  # it is: the DataModule's state_dict holds the position
    assert [path.name for path in (save_dir / "run").iterdir()] == ["version_0"]  # continued in its own folder
    weights, metrics, tested = final_results(save_dir / "run" / "version_0", resumed.stdout)
    return stopped.returncode, stopped.stderr, step, (weights, metrics, Path(tested).relative_to(save_dir))


def assert_same_result(resumed, uninterrupted):
    """Bit for bit: the final weights, the test metrics and the checkpoint they were measured on."""
    torch.testing.assert_close(resumed[0], uninterrupted[0], rtol=0, atol=0)
    assert resumed[1:] == uninterrupted[1:]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_gives_exactly_the_uninterrupted_result(mnist_slice, tmp_path, uninterrupted):
    returncode, _, step, result = interrupt_then_resume(mnist_slice, tmp_path, "SIGKILL")
    assert returncode == -signal.SIGKILL
    assert step == INTERRUPT_AT // SAVE_EVERY * SAVE_EVERY  # the last step-wise checkpoint before the kill
    assert_same_result(result, uninterrupted)


@pytest.mark.slow
def test_a_run_folder_moved_elsewhere_resumes_where_it_is_now(mnist_slice, tmp_path, uninterrupted):
    """Killed, its save_dir moved, resumed from there: it continues in the moved folder (the old save_dir is not
    made again) with its best-model bookkeeping, so it ends exactly as the uninterrupted run."""
    returncode, _, step, result = interrupt_then_resume(mnist_slice, tmp_path, "SIGKILL", move=True)
    assert returncode == -signal.SIGKILL and not (tmp_path / "my runs").exists()
    assert_same_result(result, uninterrupted)


@pytest.mark.slow
@pytest.mark.parametrize("send_signal,status", [("SIGINT", 1), ("SIGTERM", 143)], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_stops_cleanly_with_a_resumable_checkpoint(mnist_slice, tmp_path, uninterrupted,
                                                                     send_signal, status):
    returncode, stderr, step, result = interrupt_then_resume(mnist_slice, tmp_path, send_signal)
    assert returncode == status and "Traceback" not in stderr and "weights_only" not in stderr
    assert step in (INTERRUPT_AT, INTERRUPT_AT + 1), step  # after the batch it came in (or the next)
    assert f"saved {tmp_path}/my runs/run/version_0/checkpoints/last.ckpt at step {step}; resume with:" in stderr
    assert_same_result(result, uninterrupted)


def live_processes(group):
    """The processes of a process group that have not exited (zombies left to a reaper do not count)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):  # exited meanwhile
            continue
        if int(pgrp) == group and state != "Z":
            alive.append(stat.parent.name)
    return alive


@pytest.mark.slow
def test_under_ddp_sigterm_to_rank_0_or_ctrl_c_to_all_stops_every_rank_with_a_resumable_checkpoint(mnist_slice,
                                                                                                  tmp_path):
    args = cli_args(mnist_slice, tmp_path, "--data.train_subset", "512", "--data.batch_size", "32",
                    "--trainer.accelerator", "cpu", "--trainer.strategy", "ddp", "--trainer.devices", "2",
                    "--trainer.max_epochs", "8", "--resume_checkpoint.every_n_train_steps", "5", name="run")
    last = tmp_path / "run" / "version_0" / "checkpoints" / "last.ckpt"
    resume = ["--config", str(last.parents[1] / "config.yaml"), "--ckpt_path", str(last)]
    # 8 steps an epoch of 2 x 32 digits, 64 in all; the ranks agree on whether to stop every 10th step
    for arguments, at, group, send, status, stop in (
        (args, 15, False, "SIGTERM", 143, 20),  # a scheduler: to rank 0 alone
        (resume, 35, True, "SIGINT", 1, 40),  # a terminal: to every process
    ):
        process = subprocess.Popen([sys.executable, "train.py", *arguments,
                                    *at_step(at, tmp_path / f"sent-{at}", send, group=group)], cwd=ROOT,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == status, stderr[-3000:]
        assert checkpoint_step(last) == stop  # every rank stopped after the same, agreed batch
        assert stderr.count("resume with:") == 1 and f"at step {stop}; resume with:" in stderr, stderr[-3000:]
        assert "Traceback" not in stderr
        # NOTE: rank 1 ends on its own, shortly after rank 0 (a bound for the wait, not a race with the run)
        deadline = time.monotonic() + 120
        while live_processes(process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not live_processes(process.pid), "a rank outlived the run"
    done = subprocess.run([sys.executable, "train.py", *resume], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert checkpoint_step(last) == 64 and "test accuracy:" in done.stdout


class SigtermDuringTest(pl.Callback):
    """Sends its own process SIGTERM after the first test batch, as a scheduler may at any moment."""

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if batch_idx == 0:
            os.kill(os.getpid(), signal.SIGTERM)


class SigtermInTheLastValidation(pl.Callback):
    """Sends its own process SIGTERM in the last validation: after the last training step, before the test."""

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking and trainer.current_epoch == trainer.max_epochs - 1:
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.slow
def test_sigterm_after_the_training_steps_exits_143_not_0(mnist_slice, tmp_path):
    for callback, message in (
        ("SigtermInTheLastValidation", "training had ended (step 10), not the test; resume with:"),
        ("SigtermDuringTest", "error: stopped by SIGTERM outside the training steps (nothing more was saved)\n"),
    ):
        args = quick_args(mnist_slice, tmp_path / callback, "--data.eval_batch_size", "250",
                          f"--trainer.callbacks+=tests.test_reliability.{callback}")
        done = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 143, done.stderr[-3000:]
        assert message in done.stderr and "Traceback" not in done.stderr, done.stderr[-3000:]
    run_dir = tmp_path / "SigtermInTheLastValidation" / "mnist" / "version_0"
    resumed = subprocess.run([sys.executable, "train.py", "--config", str(run_dir / "config.yaml"), "--ckpt_path",
                              str(run_dir / "checkpoints" / "last.ckpt")], cwd=ROOT, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0 and "test accuracy:" in resumed.stdout, resumed.stderr[-3000:]


def quick_args(mnist_slice, save_dir, *extra):
    return cli_args(mnist_slice, save_dir, "--data.train_subset", "640", *extra)


def test_same_config_and_seed_give_identical_metrics_and_weights_and_never_overwrite(mnist_slice, tmp_path):
    first = cli_main(quick_args(mnist_slice, tmp_path))
    first_dir = Path(first.trainer.log_dir)
    first_files = {path: path.read_bytes() for path in first_dir.rglob("*") if path.is_file()}
    second = cli_main(quick_args(mnist_slice, tmp_path))
    assert Path(second.trainer.log_dir) != first_dir  # version_1 beside version_0
    assert {path: path.read_bytes() for path in first_files} == first_files  # nothing of the first run touched
    for key in ("test/acc", "test/loss"):
        assert first.trainer.callback_metrics[key].item() == second.trainer.callback_metrics[key].item(), key
    assert first.trainer.checkpoint_callback.best_model_score == second.trainer.checkpoint_callback.best_model_score
    torch.testing.assert_close(first.model.state_dict(), second.model.state_dict(), rtol=0, atol=0)


def test_diverging_run_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(mnist_slice, tmp_path,
                                                                                      capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(quick_args(mnist_slice, tmp_path, "--model.optimizer", "sgd", "--model.lr", "1e6",
                            "--model.lr_schedule", "none", "--resume_checkpoint.every_n_train_steps", "1"))
    err = capsys.readouterr().err
    assert exit_info.value.code == 1
    message = re.search(r"error: the gradient became NaN or infinite at step (\d+) \(epoch 1/2\); .*last good "
                        r"checkpoint is (\S+)\. "
                        r"Likely cause: the learning rate \(lr=1000000.0\) is too high", err)
    assert message, err[-2000:]
    checkpoint = torch.load(message.group(2), weights_only=False)
    assert checkpoint["global_step"] <= int(message.group(1))
    assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values())
