"""Run folders: each one process's alone, claimed atomically; one line when the folder, its disk or a SLURM leftover is
in the way."""
import errno
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from models.callback_group import each_callback
from models.callbacks import EpochlessTensorBoardLogger
from models.reliability import GracefulInterrupt
from models.run_folder import release_run_folders
from tests.helpers import ROOT, SignalHandlers, at_step, cli_args
from train import cli_main


def run_cli(args, capsys):
    """Exit status and stderr of train.py with args (in this process)."""
    with pytest.raises(SystemExit) as exit_info:
        cli_main(args)
    return exit_info.value.code, capsys.readouterr().err


def test_two_runs_starting_at_once_get_a_version_folder_each(tmp_path):
    # the race of two runs entering train.py at the same instant, made certain: both loggers choose their version
    # before either has written anything
    first, second = (EpochlessTensorBoardLogger(str(tmp_path), name="mnist") for _ in range(2))
    try:
        assert (first.version, second.version) == (0, 1)
        assert sorted(path.name for path in (tmp_path / "mnist").iterdir()) == ["version_0", "version_1"]
    finally:
        release_run_folders()


@pytest.mark.slow
def test_resuming_while_the_run_still_trains_in_its_folder_is_refused(mnist_slice, tmp_path):
    run_dir = tmp_path / "mnist" / "version_0"
    paused, proceed = tmp_path / "paused", tmp_path / "proceed"
    # the run writes last.ckpt every step and waits at step 7 until the test lets it go on
    args = cli_args(mnist_slice, tmp_path, "--data.train_subset", "640", "--resume_checkpoint.every_n_train_steps",
                    "1", *at_step(7, paused, "wait", proceed=proceed))
    run = subprocess.Popen([sys.executable, "train.py", *args], cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        while not paused.exists() and run.poll() is None:  # NOTE: it stays at step 7 until `proceed` exists
            time.sleep(0.05)
        assert run.poll() is None, run.communicate()[1][-3000:]
        resume = subprocess.run([sys.executable, "train.py", "--config", str(run_dir / "config.yaml"), "--ckpt_path",
                                 str(run_dir / "checkpoints" / "last.ckpt")], cwd=ROOT, capture_output=True, text=True,
                                timeout=300)
    finally:
        proceed.touch()
    _, stderr = run.communicate(timeout=300)
    assert resume.returncode == 2, resume.stderr[-3000:]
    assert resume.stderr[resume.stderr.index("error: "):] == (f"error: {run_dir} is in use by another process (pid {run.pid}) that is still writing "
                             "in it: wait until it ends or stop it, then run this again\n")
    assert run.returncode == 0, stderr[-3000:]
    assert [path.name for path in run_dir.parent.iterdir()] == ["version_0"]
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 10
    assert [path.name for path in (run_dir / "checkpoints").iterdir() if path.name.endswith(".tmp")] == []


@pytest.mark.parametrize("kind", ["a file", "not writable"])
def test_a_save_dir_that_cannot_hold_run_folders_is_one_line(mnist_slice, tmp_path, capsys, monkeypatch, kind):
    save_dir = tmp_path / "runs"
    if kind == "a file":
        save_dir.write_text("not a folder")
        reason = "Not a directory"
    else:  # NOTE: as root without CAP_DAC_OVERRIDE, or a read-only mount; a chmod does not stop root here
        real_mkdir = pathlib.Path.mkdir

        def refused(path, *args, **kwargs):
            if str(path).startswith(str(save_dir)):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
            return real_mkdir(path, *args, **kwargs)

        monkeypatch.setattr(pathlib.Path, "mkdir", refused)
        reason = "Permission denied"
    code, err = run_cli(cli_args(mnist_slice, save_dir, "--data.train_subset", "640"), capsys)
    assert code == 2
    assert err == (f"error: cannot create a run folder in {save_dir / 'mnist'}: {reason}; give a writable folder "
                   "with --trainer.logger.init_args.save_dir\n")


def test_under_slurm_a_stray_hpc_checkpoint_is_not_loaded_unchecked(mnist_slice, tmp_path, capsys, monkeypatch):
    # SLURM's variables (srun) and Lightning's hpc_ckpt_<n>.ckpt in the working directory, from some other run
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    stray = tmp_path / "hpc_ckpt_1.ckpt"
    stray.write_bytes(os.urandom(4096))
    code, err = run_cli(cli_args(mnist_slice, tmp_path / "runs", "--data.train_subset", "640"), capsys)
    assert code == 2
    assert err == (f"error: {stray}: under SLURM Lightning would resume from this file unasked (it lies in "
                   f"trainer.default_root_dir) and without this project's checks; to resume from it give "
                   f"--ckpt_path {stray}, else move it out of {tmp_path}\n")
    # asked for by name, it is checked like any --ckpt_path
    code, err = run_cli(cli_args(mnist_slice, tmp_path / "runs", "--data.train_subset", "640", "--ckpt_path",
                                 "hpc"), capsys)
    assert code == 2 and err.startswith(f"error: {stray} is damaged: it cannot be read as a checkpoint"), err
    assert not (tmp_path / "runs").exists()


def test_a_run_started_in_another_folder_prints_absolute_paths_and_a_command_that_runs_there(mnist_slice, tmp_path,
                                                                                           capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = cli_main(["--data.data_dir", str(mnist_slice), "--data.val_size", "500", "--data.train_subset", "320",
                    "--model.hidden_sizes", "[16]", "--trainer.max_epochs", "1", "--trainer.enable_progress_bar",
                    "false", "--trainer.logger.init_args.save_dir", "runs"])
    run_dir = tmp_path / "runs" / "mnist" / "version_0"
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"run folder: {run_dir}" and out[1].startswith("epoch 1/1  train loss ") and len(out) == 3, out
    assert out[2].startswith("test accuracy: ") and out[2].endswith(f"  ({run_dir}/checkpoints/best-epoch00.ckpt)")
    interrupt = next(callback for callback in each_callback(cli.trainer) if isinstance(callback, GracefulInterrupt))
    assert interrupt.resume_command == f"python {ROOT / 'train.py'} --config {{config}} --ckpt_path {{checkpoint}}"
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["trainer"]["logger"]["init_args"]["save_dir"] == \
        "runs"  # as given: a new run from this config writes where it runs


@pytest.mark.slow
def test_the_resume_command_printed_in_another_folder_resumes_there(mnist_slice, tmp_path):
    args = ["--data.data_dir", str(mnist_slice), "--data.val_size", "500", "--data.train_subset", "640",
            "--model.hidden_sizes", "[16]", "--trainer.max_epochs", "1", "--trainer.logger.init_args.save_dir", "runs",
            "--resume_checkpoint.every_n_train_steps", "1"]
    stopped = subprocess.run([sys.executable, str(ROOT / "train.py"), *args, *at_step(3, tmp_path / "sent", "SIGINT")],
                             cwd=tmp_path, capture_output=True, text=True, timeout=300)
    run_dir = tmp_path / "runs" / "mnist" / "version_0"
    assert stopped.returncode == 1, stopped.stderr[-3000:]
    assert stopped.stdout.splitlines() == [f"run folder: {run_dir}"]
    saved = stopped.stderr[stopped.stderr.index("saved "):].splitlines()[:2]
    assert saved == [f"saved {run_dir}/checkpoints/last.ckpt at step 3; resume with:",
                     f"  python {ROOT / 'train.py'} --config {run_dir}/config.yaml --ckpt_path "
                     f"{run_dir}/checkpoints/last.ckpt"]
    resumed = subprocess.run(["bash", "-c", saved[1]], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                             env={**os.environ, "PATH": f"{pathlib.Path(sys.executable).parent}:{os.environ['PATH']}"})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    out = resumed.stdout.splitlines()  # the epoch it continued too: the line of epoch 1, from step 3 on
    assert out[0] == f"run folder: {run_dir}" and out[1].startswith("epoch 1/1  train loss ") and len(out) == 3, out
    assert out[2].endswith(f"  ({run_dir}/checkpoints/best-epoch00.ckpt)"), out


def test_a_run_without_a_logger_trains_and_leaves_only_its_checkpoints_so_it_runs_again(mnist_slice, tmp_path,
                                                                                        capsys, monkeypatch):
    # NOTE: --trainer.logger false: nothing for TensorBoard (LearningRateMonitor would refuse to start), and no
    # config.yaml in the working directory (the next run would refuse to overwrite it)
    monkeypatch.chdir(tmp_path)
    args = ["--data.data_dir", str(mnist_slice), "--data.val_size", "500", "--data.train_subset", "640",
            "--model.hidden_sizes", "[16]", "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
            "--trainer.logger", "false"]
    for _ in range(2):
        cli = cli_main(args)
        out = capsys.readouterr().out.splitlines()
        assert [line.split("  ")[0] for line in out if line.startswith("epoch ")] == ["epoch 1/1"], out
        assert out[-1].startswith("test accuracy: ") and out[-1].endswith(f"({tmp_path}/checkpoints/best-epoch00.ckpt)")
        assert cli.trainer.logger is None
        assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoints"]
        assert sorted(path.name for path in (tmp_path / "checkpoints").iterdir()) == ["best-epoch00.ckpt", "last.ckpt"]


def test_the_resume_command_of_a_run_without_a_logger_is_its_own_command_line(monkeypatch):
    from train import rerun_command
    monkeypatch.chdir(ROOT)  # NOTE: train.py is named as run from here (elsewhere by its absolute path)
    command = rerun_command(["--trainer.logger", "false", "--model.hidden_sizes", "[8]", "--ckpt_path", "old.ckpt",
                             "--trainer.callbacks+={\"class_path\": \"A\"}"])
    assert command.format(checkpoint="'my runs/last.ckpt'") == (
        "python train.py --trainer.logger false --model.hidden_sizes '[8]' "
        "'--trainer.callbacks+={\"class_path\": \"A\"}' --ckpt_path 'my runs/last.ckpt'")


def test_under_slurm_lightning_does_not_requeue_on_sigusr1(mnist_slice, tmp_path, capsys, monkeypatch):
    # NOTE: SIGTERM is this project's (a resumable checkpoint, then the printed command); Lightning's requeue would
    # write hpc_ckpt_<n>.ckpt files, which a later run under SLURM would load unchecked
    monkeypatch.chdir(tmp_path)
    for name, value in {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "train", "SLURM_LOCALID": "0", "SLURM_PROCID": "0",
                        "SLURM_NODEID": "0", "SLURM_NODELIST": "node1", "SLURM_JOB_ID": "7"}.items():
        monkeypatch.setenv(name, value)
    before = signal.getsignal(signal.SIGUSR1)
    cli = cli_main(cli_args(mnist_slice, tmp_path / "runs", "--data.train_subset", "320", "--trainer.max_epochs", "1",
                            "--trainer.callbacks+=tests.helpers.SignalHandlers"))
    handlers = next(callback for callback in each_callback(cli.trainer) if isinstance(callback, SignalHandlers))
    assert handlers.sigusr1 is before  # no handler of Lightning's: SIGUSR1 does what it did before the run
    assert capsys.readouterr().out.splitlines()[-1].startswith("test accuracy: ")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["runs"]  # no hpc_ckpt_<n>.ckpt


@pytest.mark.slow
def test_tensorboard_events_on_a_full_disk_end_in_two_lines_with_the_resume_command(mnist_slice, tmpfs, tmp_path):
    # the run folder (events, config.yaml) on a small disk that the events fill; the checkpoints on another
    runs, checkpoints = tmpfs("runs", "64k"), tmp_path / "checkpoints"
    done = subprocess.run([sys.executable, "train.py", *cli_args(
        mnist_slice, runs, "--data.train_subset", "640", "--trainer.max_epochs", "40", "--trainer.log_every_n_steps",
        "1", "--checkpoint.dirpath", str(checkpoints), "--resume_checkpoint.dirpath", str(checkpoints),
        "--resume_checkpoint.every_n_train_steps", "2")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    run_dir = runs / "mnist" / "version_0"
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "Exception" not in done.stderr, done.stderr[-3000:]
    lines = done.stderr[done.stderr.index("error: "):].splitlines()
    assert lines == [f"error: no space left on the device to write TensorBoard's events in {run_dir}; free some "
                     "space, then resume from the last checkpoint with:",
                     f"  python train.py --config {run_dir / 'config.yaml'} --ckpt_path {checkpoints / 'last.ckpt'}"]
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["global_step"] > 0
