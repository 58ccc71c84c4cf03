"""Checkpoints on disk: never torn (a full disk, kill -9 mid-write)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.checkpoints import AtomicCheckpointIO
from tests.conftest import cli_args

ROOT = Path(__file__).resolve().parents[1]


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
