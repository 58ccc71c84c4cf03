"""Every lecture module a docs/lecture.md row names with `python -m lecture.<name>` prints what it shows, as a user sees it."""
import importlib
import re
import subprocess
import sys

import pytest

from tests.helpers import ROOT


def run(module):
    done = subprocess.run([sys.executable, "-m", f"lecture.{module}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.parametrize("module,lines,patterns", [
    ("notation", 2, [r"^z_j = w_jᵀx \+ b_j neuron by neuron = X·W \+ B at once: largest difference \d\.\de-1[6-9]; manual_bp's Linear",
                     r"^per-sample gradients summed, over m = vectorised batch gradient: largest difference"]),
    ("xor", 5, [r"x1 = 0, x2 = 0: OR/NAND/AND network gives 0\.0000\d, XOR is 0",
                r"x1 = 0, x2 = 1: OR/NAND/AND network gives 0\.9999\d, XOR is 1",
                r"x1 = 1, x2 = 0: OR/NAND/AND network gives 0\.9999\d, XOR is 1",
                r"x1 = 1, x2 = 1: OR/NAND/AND network gives 0\.0000\d, XOR is 0", r"learned from random weights"]),
    ("circle", 2, [r"CircleFunction: gradcheck and gradgradcheck pass", r"centre and radius learned"]),
    ("graph", 5, [r"d = 28", r"∂d/∂a = 11 over routes", r"∂d/∂b = 4", r"∂d/∂c = 4", r"one backward pass: "]),
])
def test_the_module_prints_its_lines(module, lines, patterns):
    output = run(module)
    assert len(output) == lines
    for line, pattern in zip(output, patterns):
        assert re.search(pattern, line), (line, pattern)


@pytest.mark.parametrize("module", ["notation", "xor", "circle", "graph", "two_layer_net", "optimiser_paths",
                                    "optimisers_mnist", "initialisation"])
def test_a_module_refuses_an_argument_it_does_not_take_in_one_line(module, capsys):
    with pytest.raises(SystemExit) as stopped:
        importlib.import_module(f"lecture.{module}").main(["--steps", "10"])
    error = capsys.readouterr().err.splitlines()
    assert stopped.value.code == 2 and error[-1].endswith("error: unrecognized arguments: --steps 10")


@pytest.mark.parametrize("module,argv,message", [
    ("optimisers_mnist", ["--epochs", "0"], "argument --epochs: must be an integer >= 1, got 0"),
    ("initialisation", ["--epochs", "-1"], "argument --epochs: must be an integer >= 1, got -1"),
    ("optimisers_mnist", ["--val_size", "x"], "argument --val_size: must be an integer >= 1, got 'x'"),
    ("optimisers_mnist", ["--data_dir", "no/such/folder"], "no/such/folder"),
    ("initialisation", ["--data_dir", "no/such/folder"], "no/such/folder"),
    ("initialisation", ["--epochs", "1", "--logdir", "/dev/null/runs"], "give a writable folder with --logdir"),
])
def test_a_bad_number_data_folder_or_logdir_is_one_error_line(module, argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as stopped:
        importlib.import_module(f"lecture.{module}").main(["--logdir", str(tmp_path / "runs"), *argv])
    error = capsys.readouterr().err.splitlines()
    assert stopped.value.code == 2 and error[-1].split(": error: ")[1].count(message) == 1, error
    if "--data_dir" in argv:  # NOTE: the data is read before the run folder is made
        assert not (tmp_path / "runs").exists()
