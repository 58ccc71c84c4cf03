"""What a user sees: the console of a run through a pipe, one-line errors, the help, a missing data folder."""
import subprocess
import sys

import pytest

from tests.helpers import ROOT, cli_args

FOREIGN = ("Tip:", "litlogger", "LeafSpec", "args parameter", "it/s]", "Traceback")


def train_py(*args, cwd=ROOT):
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_a_run_through_a_pipe_prints_one_line_per_epoch_and_nothing_foreign(tmp_path):
    run = train_py(*cli_args(ROOT / "tests" / "data" / "mnist_slice", tmp_path, "--data.train_subset", "640"))
    assert run.returncode == 0, run.stderr[-2000:]
    lines = [line for line in run.stdout.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 2, run.stdout
    for number, line in enumerate(lines, start=1):
        assert line.startswith(f"epoch {number}/2  train loss ") and " val loss " in line and line.endswith(" s")
        assert line.count("acc ") == 2 and line.count("%") == 2
    assert "test accuracy:" in run.stdout
    for text in FOREIGN:
        assert text not in run.stdout + run.stderr, text


@pytest.mark.parametrize("args,hint", [
    (["--model.hidden_sizes", "800"], "--model.hidden_sizes must be a list such as [800], got 800"),
    (["--model.activation", "softplus"], "--model.activation must be one of relu, sigmoid, tanh, got softplus"),
    (["--model.lr", "fast"], "--model.lr must be a number, got fast"),
    (["--model.no_such_key", "1"], "--model.no_such_key is not an option of MNISTClassifier"),
    (["--trainer.max_epoch", "3"], "unrecognized arguments: --trainer.max_epoch 3"),  # no silent prefix match
])
def test_a_bad_option_is_one_line_naming_it(args, hint):
    run = train_py(*args, "--print_config")
    assert run.returncode == 2
    assert run.stderr.startswith(f"error: {hint}"), run.stderr
    assert len(run.stderr.splitlines()) == 2, run.stderr


def test_help_says_what_runs_without_a_subcommand_and_how_to_list_the_arguments():
    run = train_py("--help")
    assert run.returncode == 0
    text = " ".join(run.stdout.split())
    assert "Without a subcommand: fit, then test the best checkpoint" in text
    assert "--model.help MNISTClassifier" in text and "--data.help MNISTDataModule" in text
    assert "hidden_sizes" in train_py("--model.help", "MNISTClassifier").stdout


def test_a_missing_data_folder_is_two_lines_and_leaves_no_folder(tmp_path):
    run = train_py("--data.data_dir", "nowhere", "--data.download", "false", "--trainer.logger.init_args.save_dir",
                   "runs", cwd=tmp_path)
    assert run.returncode == 1
    error = run.stderr[run.stderr.index("error: "):].splitlines()
    assert len(error) == 2, run.stderr
    assert "nowhere" in error[0] and "train-images-idx3-ubyte" in error[0] and "t10k-labels-idx1-ubyte" in error[0]
    assert "--data.data_dir" in error[1] and "Traceback" not in run.stderr
    assert list(tmp_path.iterdir()) == []  # no data folder, no empty run folder
