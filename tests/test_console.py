"""What a user sees: the console of a run through a pipe, one-line errors, the help, a missing data folder."""
import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios

import pytest

from pytorch_lightning.loggers import CSVLogger

from models.console import EpochProgressBar, EpochSummary
from tests.helpers import ROOT, cli_args, fit
from train import cli_main

# NOTE: on a GPU, "GPU available: True (cuda), used: True" stays; the last three are torch's and Lightning's there
FOREIGN = ("Tip:", "litlogger", "LeafSpec", "args parameter", "it/s]", "Traceback", "Seed set to",
           "GPU available: False", "TPU available", "FLOPs", "Flops", "Test metric", "weights_only", "Tensor Cores",
           "cuBLAS", "AccumulateGrad")


def train_py(*args, cwd=ROOT, env=None):
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)


def train_py_on_a_terminal(*args, cwd):
    """train.py with its stdout and stderr on a terminal of 120 columns (a pseudo-terminal): (exit status, output)."""
    main, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, stdin=subprocess.DEVNULL,
                               stdout=terminal, stderr=terminal)
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 1 << 16)
        except OSError:  # EIO: every process holding the terminal has closed it
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    return process.wait(timeout=300), b"".join(chunks).decode(errors="replace")


def test_a_run_through_a_pipe_prints_one_line_per_epoch_and_nothing_foreign(tmp_path):
    run = train_py(*cli_args(ROOT / "tests" / "data" / "mnist_slice", tmp_path, "--data.train_subset", "640"))
    assert run.returncode == 0, run.stderr[-2000:]
    first, *lines, last = run.stdout.splitlines()  # the run folder, the epoch lines, the test accuracy: nothing else
    assert first == f"run folder: {tmp_path / 'mnist' / 'version_0'}"
    assert len(lines) == 2, run.stdout
    for number, line in enumerate(lines, start=1):
        assert line.startswith(f"epoch {number}/2  train loss ") and " val loss " in line and line.endswith(" s")
        assert line.count("acc ") == 2 and line.count("%") == 2
    assert re.fullmatch(r"test accuracy: \d+\.\d\d%  \(.*/checkpoints/best-epoch0[01]\.ckpt\)", last), last
    summary = run.stderr.splitlines()
    assert "  | Name | Type       | Params | Mode " in summary and "25.4 K    Total params" in summary, run.stderr
    for text in FOREIGN:
        assert text not in run.stdout + run.stderr, text


def test_the_progress_bar_counts_epochs_as_the_epoch_lines(mnist_slice, tmp_path, capsys):
    fit(mnist_slice, {"hidden_sizes": (8,)}, [EpochSummary(), EpochProgressBar()], max_epochs=2,
        limit_train_batches=3, limit_val_batches=1, enable_progress_bar=True, logger=CSVLogger(tmp_path))
    out = capsys.readouterr().out
    assert "v_num" not in out  # the logger's version, which Lightning's bar shows
    frames = [frame for frame in re.split(r"[\r\n]+", out)
              if "it/s" in frame and not frame.startswith(("Sanity Checking", "Validation"))]
    assert {frame.split(":")[0] for frame in frames} == {"epoch 1/2", "epoch 2/2"}, frames
    assert frames[-1].startswith("epoch 2/2: 100%|")
    assert [line.split("  ")[0] for line in re.split(r"[\r\n]+", out) if "train loss" in line] == ["epoch 1/2",
                                                                                                   "epoch 2/2"]


@pytest.mark.slow
def test_a_run_on_a_terminal_resumed_through_a_pipe_shows_no_progress_bar_frames(tmp_path):
    args = ["--data.data_dir", str(ROOT / "tests" / "data" / "mnist_slice"), "--data.val_size", "500",
            "--data.train_subset", "640", "--data.download", "false", "--model.hidden_sizes", "[16]",
            "--model.lr_schedule", "none", "--trainer.max_epochs", "1", "--trainer.logger.init_args.save_dir",
            str(tmp_path)]
    status, output = train_py_on_a_terminal(*args, cwd=tmp_path)
    assert status == 0, output[-3000:]
    assert "it/s]" in output  # the progress bar, on the terminal, named as the epoch line
    lines = re.split(r"[\r\n]+", output)
    assert any(line.startswith("epoch 1/1: 100%|") for line in lines) and "Epoch" not in output, output[-3000:]
    assert "v_num" not in output
    assert [line.split("  ")[0] for line in lines if " train loss " in line] == ["epoch 1/1"]
    run_dir = tmp_path / "mnist" / "version_0"
    resumed = train_py("--config", str(run_dir / "config.yaml"), "--ckpt_path",
                       str(run_dir / "checkpoints" / "last.ckpt"), "--trainer.max_epochs", "2", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [line.split("  ")[0] for line in resumed.stdout.splitlines() if line.startswith("epoch ")] == ["epoch 2/2"]
    for frame in ("\r", "it/s", "%|"):  # a bar's frames, each redrawn over the last with a carriage return
        assert frame not in resumed.stdout + resumed.stderr, (frame, resumed.stdout, resumed.stderr)


@pytest.mark.parametrize("args,hint", [
    (["--model.hidden_sizes", "800"], "--model.hidden_sizes must be a list such as [800], got 800"),
    (["--model.activation", "softplus"], "--model.activation must be one of relu, sigmoid, tanh, got softplus"),
    (["--model.lr", "fast"], "--model.lr must be a number, got fast"),
    (["--model.no_such_key", "1"], "--model.no_such_key is not an option of MNISTClassifier (list them: python "
                                   "train.py --model.help MNISTClassifier)"),
    (["--model.hiden_sizes", "[8]"], "--model.hiden_sizes is not an option of MNISTClassifier; did you mean "
                                     "--model.hidden_sizes?"),
    # an option of another section
    (["--model.batch_size", "64"], "--model.batch_size is not an option of MNISTClassifier; did you mean "
                                   "--data.batch_size?"),
    (["--model.cuda_graph", "false"], "--model.cuda_graph is not an option of MNISTClassifier; did you mean "
                                      "--training_steps.cuda_graph?"),
    # no silent prefix match of --trainer.max_epochs, and a suggestion for a section's option or a bare name
    (["--trainer.max_epoch", "3"], "--trainer.max_epoch is not an option; did you mean --trainer.max_epochs?"),
    (["--max_epochs", "3"], "--max_epochs is not an option; did you mean --trainer.max_epochs?"),
    (["--trainer.no_such_key", "3"], "--trainer.no_such_key is not an option"),
    (["--print_conf"], "--print_conf is not an option; did you mean --print_config?"),  # train.py's own options
    (["--ckpt", "x"], "--ckpt is not an option; did you mean --ckpt_path?"),  # the start of one
    (["--model.lr"], "--model.lr needs a value"),  # not argparse's "--model: expected one argument"
    (["--seed_everything", "abc"], "--seed_everything must be true, false or an integer, got abc"),
    (["fitt"], "fitt is not a subcommand: use fit, validate, test or predict, or none (fit, then test); options "
               "start with --"),
    # the same after a subcommand
    (["fit", "--model.lr"], "--model.lr needs a value"),
    (["fit", "--trainer.max_epoch", "3"], "--trainer.max_epoch is not an option; did you mean --trainer.max_epochs?"),
    (["fit", "3"], "3 is neither an option (those start with --) nor the value of one"),
])
def test_a_bad_option_is_one_line_naming_it(args, hint):
    run = train_py(*args, "--print_config")
    assert run.returncode == 2
    assert run.stderr.splitlines() == [f"error: {hint}", "(python train.py --help lists the options)"], run.stderr


@pytest.mark.parametrize("args,line", [
    (["--model.hidden_sizes", "[0]"], "--model.hidden_sizes must be a non-empty list of positive integers, got [0]"),
    (["--model.lr", "-0.1"], "--model.lr must be > 0, got -0.1"),
    (["--data.data-dir", "x"], "--data.data-dir is not an option of MNISTDataModule; did you mean --data.data_dir?"),
])
def test_an_impossible_value_is_one_line_naming_the_option_expected_and_given(args, line, tmp_path):
    # in a process of its own: Lightning's own lines (its seed line, ...) are on the stderr counted here
    run = train_py("--data.data_dir", "nowhere", "--data.download", "false", *args, cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.splitlines() == [f"error: {line}", "(python train.py --help lists the options)"], run.stderr
    assert run.stdout == "" and list(tmp_path.iterdir()) == []  # nothing written


def test_a_gpu_asked_for_on_a_machine_without_one_is_one_line_saying_what_to_use(tmp_path):
    no_gpu = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # NOTE: no GPU for this process, on any machine
    run = train_py("--data.data_dir", str(ROOT / "tests" / "data" / "mnist_slice"), "--trainer.accelerator", "gpu",
                   cwd=tmp_path, env=no_gpu)
    assert run.returncode == 2
    assert run.stderr.splitlines() == ["error: --trainer.accelerator gpu: no GPU is available on this machine; use "
                                       "--trainer.accelerator cpu, or auto (a GPU where there is one, else the CPU)"]
    assert run.stdout == "" and list(tmp_path.iterdir()) == []


def test_help_says_what_runs_without_a_subcommand_and_how_to_list_the_arguments():
    run = train_py("--help", env={**os.environ, "COLUMNS": "80"})
    assert run.returncode == 0
    lines = run.stdout.splitlines()
    assert len(lines) <= 50, run.stdout  # not every class's every option (845 lines)
    assert lines[0] == "usage: python train.py [fit|validate|test|predict] [--config FILE] [--section.key VALUE ...]"
    text = " ".join(run.stdout.split())
    assert "Without a subcommand: fit, then test the best checkpoint" in text
    assert "--model.help MNISTClassifier" in text and "--data.help MNISTDataModule" in text
    options = [line.split()[0].rstrip(",") for line in lines if line.startswith("  -")]
    assert options == ["-h", "-c", "--print_config", "--seed_everything", "--ckpt_path", "--trainer.help",
                       "--checkpoint.help", "--resume_checkpoint.help", "--graceful_interrupt.help",
                       "--training_steps.help", "--lr_monitor.help", "--grad_check.help", "--layer_stats.help",
                       "--test_report.help"]


@pytest.mark.parametrize("args,first,absent", [
    (["--trainer.help"], "  --trainer.max_epochs MAX_EPOCHS", "--model"),
    (["--checkpoint.help"], "  --checkpoint.monitor MONITOR", "--trainer"),
    (["--training_steps.help"], "  --training_steps.cuda_graph {true,false}", "--trainer"),
    (["--model.help", "MNISTClassifier"], "An MLP of manual_bp layers (or their torch.nn twin) that classifies 28x28 "
                                          "images into 10 classes:", "Thin wrapper"),
])
def test_a_section_or_class_help_lists_its_options_alone(args, first, absent, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main([*args])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert first in out.splitlines() and absent not in out.split("default config file locations:")[-1], out


def test_a_missing_data_folder_is_two_lines_and_leaves_no_folder(tmp_path):
    run = train_py("--data.data_dir", "nowhere", "--data.download", "false", "--trainer.logger.init_args.save_dir",
                   "runs", cwd=tmp_path)
    assert run.returncode == 1
    error = run.stderr[run.stderr.index("error: "):].splitlines()
    assert len(error) == 2, run.stderr
    assert "nowhere" in error[0] and "train-images-idx3-ubyte" in error[0] and "t10k-labels-idx1-ubyte" in error[0]
    assert "--data.data_dir" in error[1] and "Traceback" not in run.stderr
    assert list(tmp_path.iterdir()) == []  # no data folder, no empty run folder


def test_the_shipped_slice_with_the_default_validation_split_is_two_lines_naming_the_option(tmp_path):
    run = train_py("--data.data_dir", str(ROOT / "tests" / "data" / "mnist_slice"), "--data.download", "false",
                   "--trainer.logger.init_args.save_dir", str(tmp_path))
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    lines = lines[next(i for i, line in enumerate(lines) if line.startswith("error: ")):]  # after Lightning's banner
    assert len(lines) == 2 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert lines[0].startswith("error: val_size must be smaller than the 3000 training images in ")
    assert lines[0].endswith("train-images-idx3-ubyte.gz, got 5000")
    assert lines[1] == "(give a smaller one with --data.val_size)"


def test_a_checkpoint_in_a_folder_that_does_not_exist_names_the_missing_folder(tmp_path):
    from cli.resume import ResumeError, resume_checkpoint
    (tmp_path / "runs" / "mnist" / "version_0" / "checkpoints").mkdir(parents=True)
    path = tmp_path / "runs" / "mnist" / "version_9" / "checkpoints" / "last.ckpt"
    with pytest.raises(ResumeError) as error:
        resume_checkpoint(path)
    assert str(error.value) == (f"no checkpoint at {path}; there is no folder {tmp_path / 'runs' / 'mnist' / 'version_9'}"
                                ": check the path (a run's checkpoints are in "
                                "<save_dir>/<name>/version_<n>/checkpoints/)")


def test_a_monitored_metric_the_run_does_not_log_is_one_line_naming_the_ones_it_does(mnist_slice, tmp_path):
    run = train_py(*cli_args(mnist_slice, tmp_path, "--trainer.max_epochs", "1", "--checkpoint.monitor", "acc/vall"))
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.splitlines()[-1] == ("error: --checkpoint.monitor acc/vall is not a metric of this run; it logs "
                                           "loss/val, acc/val, loss/train, acc/train")


@pytest.mark.parametrize("subcommand", ["test", "validate"])
def test_testing_without_a_checkpoint_is_refused_in_one_line(subcommand, tmp_path):
    run = train_py(subcommand, "--data.data_dir", "nowhere", cwd=tmp_path)
    assert run.returncode == 2 and run.stdout == "" and list(tmp_path.iterdir()) == []
    assert run.stderr.splitlines() == [
        f"error: {subcommand} needs --ckpt_path, the checkpoint to {subcommand} (e.g. a run's "
        "checkpoints/best-epochNN.ckpt or last.ckpt): without one the weights are untrained",
        "(python train.py --help lists the options)"]
