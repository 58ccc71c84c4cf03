"""Checkpoints on disk: never torn (a full disk, kill -9 mid-write), and a resume refused in one line, before anything
is written, when its checkpoint is missing, damaged or was trained with other settings."""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from models.checkpoints import AtomicCheckpointIO
from tests.helpers import ROOT, cli_args
from train import cli_main



@pytest.fixture
def tmpfs(tmp_path):
    """mount(size) -> a folder on a new tmpfs of that size (skips where this process may not mount one)."""
    mounted = []

    def mount(name, size):
        folder = tmp_path / name
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here to fill a disk for real: {done.stderr.strip() or done.returncode}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def all_files(folder):
    return {path: path.read_bytes() for path in Path(folder).rglob("*") if path.is_file()}


def test_a_full_disk_ends_the_run_in_one_line_and_leaves_only_complete_checkpoints(mnist_slice, tmpfs):
    # the run folder on a 500 kB disk: last.ckpt (320 kB) of step 2 fits, its successor of step 4 does not; $TMPDIR
    # on another, tiny filesystem (where Lightning's own writer would stage every checkpoint)
    runs, tmpdir = tmpfs("runs", "500k"), tmpfs("tmp", "64k")
    done = subprocess.run([sys.executable, "train.py", *cli_args(mnist_slice, runs, "--data.train_subset", "640",
                                                               "--resume_checkpoint.every_n_train_steps", "2")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TMPDIR": str(tmpdir)})
    folder = runs / "mnist" / "version_0" / "checkpoints"
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(
        f"error: no space left in {folder} to write last.ckpt: it needs 320,"), done.stderr[-3000:]
    assert torch.load(folder / "last.ckpt", weights_only=True)["global_step"] == 2  # the previous one, complete
    assert sorted(path.name for path in folder.iterdir()) == ["last.ckpt"]  # no temporary file left
    assert list(tmpdir.iterdir()) == []


KILLED_WHILE_WRITING = """
import os, sys, time, torch
from models.checkpoints import AtomicCheckpointIO

def slow_fsync(descriptor):  # the new checkpoint is written, not yet renamed onto its name: kill -9 lands here
    print("writing", flush=True)
    time.sleep(60)

os.fsync = slow_fsync
AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.zeros(1000)}, "global_step": 2}, sys.argv[1])
"""


def test_kill_9_while_a_checkpoint_is_written_leaves_the_previous_one_whole(tmp_path):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(1000)}, "global_step": 1}, path)
    before = path.read_bytes()
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WHILE_WRITING, str(path)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline() == "writing\n"
    writer.kill()
    writer.wait(timeout=30)
    assert path.read_bytes() == before
    # the next save of that name reuses the temporary file the kill left behind, and leaves none
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(1000)}, "global_step": 3}, path)
    assert torch.load(path, weights_only=True)["global_step"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def resume(args, capsys):
    """Exit status and stderr of train.py with args (in this process)."""
    with pytest.raises(SystemExit) as exit_info:
        cli_main(args)
    return exit_info.value.code, capsys.readouterr().err


@pytest.fixture(scope="module")
def finished_run(mnist_slice, tmp_path_factory):
    """A short finished run (hidden [32], 2 epochs of 5 steps, one-cycle): its folder, copied afresh by each test."""
    save_dir = tmp_path_factory.mktemp("finished")
    cli_main(cli_args(mnist_slice, save_dir, "--data.train_subset", "640"))
    return save_dir


@pytest.fixture
def run_copy(finished_run, tmp_path):
    shutil.copytree(finished_run, tmp_path, dirs_exist_ok=True)
    return tmp_path / "mnist" / "version_0"


@pytest.mark.parametrize("damage", [lambda data: data[: len(data) // 2], lambda data: os.urandom(len(data)),
                                    lambda data: b""], ids=["truncated", "random-bytes", "empty"])
def test_a_damaged_checkpoint_is_named_with_the_newest_good_one(mnist_slice, run_copy, capsys, damage):
    last = run_copy / "checkpoints" / "last.ckpt"
    last.write_bytes(damage(last.read_bytes()))
    before = all_files(run_copy.parent)
    code, err = resume(cli_args(mnist_slice, run_copy.parents[1], "--data.train_subset", "640", "--ckpt_path",
                                str(last)), capsys)
    best = run_copy / "checkpoints" / "best-epoch01.ckpt"
    assert code == 2
    assert err == (f"error: {last} is damaged: it cannot be read as a checkpoint (truncated, empty or overwritten); "
                   f"the newest good checkpoint in {last.parent} is best-epoch01.ckpt (step 10): resume with "
                   f"--ckpt_path {best}\n")
    assert "weights_only" not in err  # torch's advice for random bytes would run the file's code
    assert all_files(run_copy.parent) == before


@pytest.mark.parametrize("subcommand", [[], ["fit"]], ids=["fit-then-test", "fit"])
def test_resuming_with_another_model_or_data_is_refused_naming_each_change(mnist_slice, run_copy, capsys,
                                                                            subcommand):
    before = all_files(run_copy.parent)
    code, err = resume([*subcommand, *cli_args(mnist_slice, run_copy.parents[1], "--data.train_subset", "640",
                                               "--ckpt_path", str(run_copy / "checkpoints" / "last.ckpt"),
                                               "--model.hidden_sizes", "[400]", "--data.batch_size", "64")], capsys)
    assert code == 2
    assert err.startswith(f"error: {run_copy / 'checkpoints' / 'last.ckpt'} was trained with other settings than "
                          "given now: model.hidden_sizes [32] -> [400], data.batch_size 128 -> 64; ") and err.count(
        "\n") == 1, err
    assert all_files(run_copy.parent) == before


def test_resuming_a_finished_one_cycle_run_with_more_epochs_is_refused(mnist_slice, run_copy, capsys):
    before = all_files(run_copy.parent)
    code, err = resume(cli_args(mnist_slice, run_copy.parents[1], "--data.train_subset", "640", "--ckpt_path",
                                str(run_copy / "checkpoints" / "last.ckpt"), "--trainer.max_epochs", "3"), capsys)
    assert code == 2
    assert "onecycle learning-rate schedule spans the run's planned length, which changed (trainer.max_epochs " \
           "2 -> 3)" in err and err.count("\n") == 1, err
    assert all_files(run_copy.parent) == before


def test_kill_9_before_the_first_checkpoint_then_resume_says_start_again(mnist_slice, tmp_path):
    args = cli_args(mnist_slice, tmp_path, "--trainer.max_epochs", "50", name="run")
    run_dir = tmp_path / "run" / "version_0"
    process = subprocess.Popen([sys.executable, "train.py", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    while not (run_dir / "hparams.yaml").is_file() and process.poll() is None:  # set up, config.yaml written
        time.sleep(0.01)
    process.kill()
    process.wait(timeout=30)
    assert not list(run_dir.glob("checkpoints/*.ckpt")), "a checkpoint was written before the kill"
    before = all_files(tmp_path)
    last = run_dir / "checkpoints" / "last.ckpt"
    done = subprocess.run([sys.executable, "train.py", "--config", str(run_dir / "config.yaml"), "--ckpt_path",
                           str(last)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr == (f"error: no checkpoint at {last}; {last.parent} holds no good checkpoint (the run "
                           "stopped before writing one?): start it again without --ckpt_path\n")
    assert all_files(tmp_path) == before  # no version_1, nothing written
