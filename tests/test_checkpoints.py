"""Checkpoints on disk: never torn (a full disk, kill -9 mid-write), and a resume refused in one line, before anything
is written, when its checkpoint is missing, damaged or was trained with other settings."""
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from cli.resume import train_py
from models.checkpoints import AtomicCheckpointIO, CachedKeyModelCheckpoint
from tests.helpers import ROOT, at_step, cli_args, fit
from train import CHECKPOINTS, cli_main



def all_files(folder):
    return {path: path.read_bytes() for path in Path(folder).rglob("*") if path.is_file()}


@pytest.mark.slow
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
import os, sys, torch
from cli.resume import train_py
from models.checkpoints import AtomicCheckpointIO

def paused_fsync(descriptor):  # the new checkpoint is written, not yet renamed onto its name: it waits here, once
    os.fsync = real_fsync
    print("writing", flush=True)
    sys.stdin.readline()  # until the test says go on (or kills it)
    real_fsync(descriptor)

real_fsync, os.fsync = os.fsync, paused_fsync
AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.zeros(1000)}, "global_step": 2}, sys.argv[1])
print("saved", flush=True)
"""


@pytest.mark.slow
def test_kill_9_while_a_checkpoint_is_written_leaves_the_previous_one_whole(tmp_path):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(1000)}, "global_step": 1}, path)
    before = path.read_bytes()
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WHILE_WRITING, str(path)], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline() == "writing\n"
    writer.kill()
    writer.wait(timeout=30)
    assert path.read_bytes() == before
    # the next save of that name reuses the temporary file the kill left behind, and leaves none
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(1000)}, "global_step": 3}, path)
    assert torch.load(path, weights_only=True)["global_step"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


@pytest.mark.slow
def test_two_writers_of_one_checkpoint_name_never_share_a_temporary_file(tmp_path):
    """One process paused between writing its temporary file and renaming it, another saves the same name meanwhile:
    both saves complete (each renames its own file), the later rename wins, nothing is left behind."""
    path = tmp_path / "last.ckpt"
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WHILE_WRITING, str(path)], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert writer.stdout.readline() == "writing\n"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(1000)}, "global_step": 1}, path)
    assert torch.load(path, weights_only=True)["global_step"] == 1
    writer.stdin.write("go on\n")
    writer.stdin.flush()
    out, err = writer.communicate(timeout=60)
    assert writer.returncode == 0 and out == "saved\n", err[-2000:]
    assert torch.load(path, weights_only=True)["global_step"] == 2
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
    last = run_copy / "checkpoints" / "last.ckpt"
    assert err.splitlines() == [
        f"error: {last} was trained with other settings than given now: model.hidden_sizes [32] -> [400], "
        "data.batch_size 128 -> 64; resume with the run's own config.yaml (or start a new run without --ckpt_path):",
        f"  python {train_py()} --config {run_copy / 'config.yaml'} --ckpt_path {last}"], err
    assert all_files(run_copy.parent) == before


def test_resuming_without_the_runs_config_says_the_command_to_use_and_that_command_resumes(mnist_slice, run_copy,
                                                                                             capsys, monkeypatch):
    monkeypatch.chdir(run_copy.parents[1])  # the folder the run was started in: the paths as a user types them
    last = pathlib.Path("mnist", "version_0", "checkpoints", "last.ckpt")
    code, err = resume(["--data.data_dir", str(mnist_slice), "--ckpt_path", str(last)], capsys)
    assert code == 2
    *_, command = err.splitlines()
    assert err.splitlines() == [
        f"error: {last} was trained with other settings than given now: model.hidden_sizes [32] -> [800], "
        "data.val_size 500 -> 5000, data.train_subset 640 -> None; resume with the run's own config.yaml (or start a "
        "new run without --ckpt_path):",
        f"  python {ROOT / 'train.py'} --config mnist/version_0/config.yaml --ckpt_path {last}"], err
    cli = cli_main(shlex.split(command)[2:])  # the command, as it runs
    assert cli.trainer.global_step == 10 and "test accuracy: " in capsys.readouterr().out


def test_resuming_a_finished_one_cycle_run_with_more_epochs_is_refused(mnist_slice, run_copy, capsys):
    before = all_files(run_copy.parent)
    code, err = resume(cli_args(mnist_slice, run_copy.parents[1], "--data.train_subset", "640", "--ckpt_path",
                                str(run_copy / "checkpoints" / "last.ckpt"), "--trainer.max_epochs", "3"), capsys)
    assert code == 2
    assert "onecycle learning-rate schedule spans the run's planned length, which changed (trainer.max_epochs " \
           "2 -> 3)" in err and err.count("\n") == 2, err
    assert err.splitlines()[1] == (f"  python {train_py()} --config {run_copy / 'config.yaml'} --ckpt_path "
                                   f"{run_copy / 'checkpoints' / 'last.ckpt'}")
    assert all_files(run_copy.parent) == before


@pytest.mark.slow
def test_kill_9_before_the_first_checkpoint_then_resume_says_start_again(mnist_slice, tmp_path):
    # killed at its first step: set up, config.yaml written, no checkpoint yet (the first comes after epoch 0)
    args = cli_args(mnist_slice, tmp_path, *at_step(1, tmp_path / "killed", "SIGKILL"), name="run")
    run_dir = tmp_path / "run" / "version_0"
    killed = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, timeout=300)
    assert killed.returncode == -9 and (tmp_path / "killed").exists()
    assert not list(run_dir.glob("checkpoints/*.ckpt")), "a checkpoint was written before the kill"
    before = all_files(tmp_path)
    last = run_dir / "checkpoints" / "last.ckpt"
    done = subprocess.run([sys.executable, "train.py", "--config", str(run_dir / "config.yaml"), "--ckpt_path",
                           str(last)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr == (f"error: no checkpoint at {last}; {last.parent} holds no good checkpoint (the run "
                           "stopped before writing one?): start it again without --ckpt_path\n")
    assert all_files(tmp_path) == before  # no version_1, nothing written


@pytest.mark.parametrize("settings", CHECKPOINTS.values(), ids=CHECKPOINTS)  # train.py's two checkpoints
def test_a_cached_key_checkpoint_keeps_its_state_under_lightnings_key(settings):
    ours = CachedKeyModelCheckpoint(**settings)
    # Lightning's key for the same settings (so a checkpoint written with either class restores into the other),
    # formed once
    lightnings = {name: value for name, value in settings.items() if name != "save_on_train_end"}  # not its argument
    assert ours.state_key == ModelCheckpoint(**lightnings).state_key
    assert ours.state_key is ours.state_key


@pytest.mark.parametrize("settings", [
    {"every_n_train_steps": 7},  # by steps
    {"every_n_train_steps": 10, "monitor": "acc/val", "mode": "max"},  # by steps, a save deferred to validation
    {"train_time_interval": timedelta(0)},  # by time
    {"every_n_epochs": 1},  # by epochs: no save at a batch's end
], ids=["steps", "steps-monitored", "time", "epochs"])
def test_a_cached_key_checkpoint_saves_at_the_steps_modelcheckpoint_saves_at(mnist_slice, tmp_path, settings):
    # the same seeded fit (40 steps an epoch, validation after each), once with each class: the same files, the
    # same bookkeeping
    saved = {}
    for kind in (ModelCheckpoint, CachedKeyModelCheckpoint):
        folder = tmp_path / kind.__name__
        checkpoint = kind(dirpath=folder, filename="{epoch}-{step}", save_top_k=-1, **settings)
        fit(mnist_slice, {"hidden_sizes": [16]}, [checkpoint], max_epochs=2, enable_checkpointing=True)
        state = {key: str(value).replace(str(folder), "") for key, value in checkpoint.state_dict().items()}
        saved[kind] = sorted(path.name for path in folder.iterdir()), state
    assert saved[CachedKeyModelCheckpoint] == saved[ModelCheckpoint]
    assert len(saved[ModelCheckpoint][0]) >= 2


@pytest.mark.parametrize("save_on_train_end", [True, False])
def test_a_step_wise_last_checkpoint_holds_the_final_weights_with_save_on_train_end(mnist_slice, tmp_path,
                                                                                     save_on_train_end):
    last = CachedKeyModelCheckpoint(dirpath=tmp_path, filename="last", every_n_train_steps=3,
                                    save_on_train_end=save_on_train_end)
    trainer, model, _ = fit(mnist_slice, {"hidden_sizes": [16]}, callbacks=[last], max_steps=7,
                            enable_checkpointing=True, limit_val_batches=0)
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    final = all(torch.equal(saved["state_dict"][name], value) for name, value in model.state_dict().items())
    # saves at steps 3 and 6; the fit ends at step 7
    assert (saved["global_step"], final) == ((7, True) if save_on_train_end else (6, False))
    assert [path.name for path in tmp_path.iterdir()] == ["last.ckpt"]


def test_last_ckpt_holds_a_finished_runs_last_step_and_resuming_it_trains_nothing_more(mnist_slice, tmp_path, capsys):
    # NOTE: without the best checkpoint's copy beside each new best, which may or may not fall on the last epoch
    args = cli_args(mnist_slice, tmp_path, "--data.train_subset", "640", "--checkpoint.save_last", "false")
    assert cli_main(args).trainer.global_step == 10
    last = tmp_path / "mnist" / "version_0" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 10
    capsys.readouterr()
    cli = cli_main([*args, "--ckpt_path", str(last)])
    assert cli.trainer.global_step == 10 and "epoch " not in capsys.readouterr().out
