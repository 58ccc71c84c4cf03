"""python -m manual_bp.exercises: the checker passes the right backward, says precisely what is wrong with a wrong
one (which gradient, how far off, on what shape) in one line per exercise and shape, and never prints a traceback."""
import re
import shutil
import subprocess
import sys

import pytest

from manual_bp import exercises
from tests.helpers import ROOT

TODO = re.compile(r"raise NotImplementedError\(.*\)")
ANSWERS = {  # manual_bp's own backward (manual_bp/ops/), in each exercise's names
    "sigmoid": "return grad_output * output * (1 - output)",
    "linear": "return grad_output @ weight, grad_output.t() @ input, grad_output.sum(0)",
    "mse": "grad = grad_output * 2 * (input - target) / input.numel()\n        return grad, -grad",
    "bce": "return grad_output * (input - target) / (input * (1 - input)) / input.numel(), None",
    "softmax_cross_entropy": "onehot = torch.nn.functional.one_hot(target, logits.shape[1]).to(logits.dtype)\n"
                             "        return grad_output * (torch.softmax(logits, dim=1) - onehot) / len(target), None",
    "batch_norm": "n, grad_x_hat = len(x_hat), grad_output * weight\n"
                  "        through_mean, through_var = grad_x_hat.sum(0), x_hat * (grad_x_hat * x_hat).sum(0)\n"
                  "        grad_input = inv_std / n * (n * grad_x_hat - through_mean - through_var)\n"
                  "        return grad_input, (grad_output * x_hat).sum(0), grad_output.sum(0)",
}


def exercise_folder(tmp_path, answers):
    """A copy of exercises/ with the backward of each named exercise written as given."""
    folder = tmp_path / "exercises"
    shutil.copytree(ROOT / "exercises", folder)
    for name, answer in answers.items():
        path = folder / f"{name}.py"
        path.write_text(TODO.sub(lambda _: answer, path.read_text(), count=1))
    return folder


def run_check(folder, *names):
    done = subprocess.run([sys.executable, "-m", "manual_bp.exercises", "check", *names, "--dir", str(folder)],
                          cwd=folder.parent, capture_output=True, text=True, timeout=300)
    assert "Traceback" not in done.stdout + done.stderr
    return done.returncode, done.stdout.splitlines()


def test_the_templates_are_all_todo_one_line_each(tmp_path):
    code, lines = run_check(exercise_folder(tmp_path, {}))
    assert code == 1 and len(lines) == len(exercises.EXERCISES) + 1
    assert all(re.match(rf"{name} +todo  not written yet: backward raises NotImplementedError", line)
               for name, line in zip(exercises.EXERCISES, lines))
    assert lines[-1] == "0 passed, 0 failed, 6 not written yet  (answers: python -m manual_bp.exercises solutions)"


def test_manual_bps_own_backward_passes_every_exercise(tmp_path):
    code, lines = run_check(exercise_folder(tmp_path, ANSWERS))
    assert lines[-1] == "12 passed, 0 failed, 0 not written yet" and code == 0, lines
    assert all(line.split()[-1] == "pass" for line in lines[:-1])


@pytest.mark.parametrize("name,mistake,expected", [
    ("linear", "return grad_output @ weight, input.t() @ grad_output, grad_output.sum(0)",  # a transpose missing
     [r"linear +\(1, 3, 2\) +FAIL  grad weight has shape \(3, 2\), expected \(2, 3\): a transpose or a sum missing\?",
      r"linear +\(8, 5, 4\) +FAIL  grad weight has shape \(5, 4\), expected \(4, 5\)"]),
    ("linear", "return grad_output @ weight, grad_output.t() @ input, grad_output",  # Σ_batch missing (autograd
     [r"linear +\(1, 3, 2\) +FAIL  grad bias has shape \(1, 2\), expected \(2,\): a sum missing\?$",
      r"linear +\(8, 5, 4\) +FAIL  grad bias has shape \(8, 4\), expected \(4,\)"]),  # would sum it quietly)
    ("batch_norm", ANSWERS["batch_norm"].replace("(grad_output * x_hat).sum(0), grad_output.sum(0)",
                                                 "grad_output * x_hat, grad_output"),  # Σ_batch missing twice
     [r"batch_norm +\(4, 3\) +FAIL  grad weight has shape \(4, 3\), expected \(3,\)",
      r"batch_norm +\(16, 5\) +FAIL  grad weight has shape \(16, 5\), expected \(5,\)"]),
    ("sigmoid", "return (grad_output * output * (1 - output)).sum(0)",  # a sum too many
     [r"sigmoid +\(1, 1\) +FAIL  grad input has shape \(1,\), expected \(1, 1\): a sum too many\?$",
      r"sigmoid +\(8, 5\) +FAIL  grad input has shape \(5,\), expected \(8, 5\): a sum too many\?$"]),
    ("mse", "return None, None",  # no gradient for an input that needs one
     [r"mse +\(1, 1\) +FAIL  grad input is None, but input needs a gradient: return ∂L/∂input \(None only for an "
      r"input that gets none\)$", r"mse +\(8, 5\) +FAIL  grad input is None"]),
    ("mse", "grad = grad_output * 2 * (input - target) / input.numel()\n        return -grad, grad",  # a sign
     [r"mse +\(1, 1\) +FAIL  grad input differs from torch's: 1 / 1 \(100.0%\) elements off, greatest absolute",
      r"mse +\(8, 5\) +FAIL  grad input differs from torch's: 40 / 40 \(100.0%\) elements off.*; grad target differs"]),
    ("mse", "grad = grad_output * 2 * (input - target)\n        return grad, -grad",  # 1/N missing: right for N = 1
     [r"mse +\(1, 1\) +pass$",
      r"mse +\(8, 5\) +FAIL  grad input differs from torch's: 40 / 40 .*greatest relative 39"]),
    ("sigmoid", "return grad_output * output",  # σ' taken as a instead of a(1 − a)
     [r"sigmoid +\(1, 1\) +FAIL  grad input differs",
      r"sigmoid +\(8, 5\) +FAIL  grad input differs from torch's: 40 / 40"]),
    ("softmax_cross_entropy", "return grad_output * torch.softmax(logits, dim=1), None",  # onehot(Y) forgotten
     [r"softmax_cross_entropy +\(1, 3\) +FAIL  grad logits differs", r"softmax_cross_entropy +\(8, 5\) +FAIL"]),
    ("bce", "return grad_output * (input - target) / input.numel()",  # one gradient for two inputs
     [r"bce +\(1, 1\) +FAIL  backward returned 1 gradient\(s\), expected 2: one per input of forward, None for an "
      r"input that gets none$", r"bce +\(8, 5\) +FAIL  backward returned 1"]),
    # the paths through μ and σ² forgotten: ∂L/∂x = ∂L/∂y ⊙ γ/√(σ² + ε) alone
    ("batch_norm", "return grad_output * weight * inv_std, (grad_output * x_hat).sum(0), grad_output.sum(0)",
     [r"batch_norm +\(4, 3\) +FAIL  grad input differs", r"batch_norm +\(16, 5\) +FAIL  grad input differs"]),
    ("sigmoid", "return grad_output * output * (1 - output) + undefined_name",  # an error in the learner's code
     [r"sigmoid +\(1, 1\) +FAIL  raised NameError at .*sigmoid.py:\d+: name 'undefined_name' is not defined$",
      r"sigmoid +\(8, 5\) +FAIL  raised NameError"]),
])
def test_each_planted_mistake_is_named_in_one_line_per_shape(tmp_path, name, mistake, expected):
    code, lines = run_check(exercise_folder(tmp_path, {name: mistake}), name)
    assert code == 1 and len(lines) == len(expected) + 1
    for line, pattern in zip(lines, expected):
        assert re.match(pattern, line), (line, pattern)


def test_an_unknown_name_or_a_missing_file_is_one_line(tmp_path):
    code, lines = run_check(exercise_folder(tmp_path, {}), "softmax")
    assert code == 2 and lines == ["error: no exercise softmax; the exercises are sigmoid, linear, mse, bce, "
                                   "softmax_cross_entropy, batch_norm"]
    (tmp_path / "exercises" / "bce.py").unlink()
    code, lines = run_check(tmp_path / "exercises", "bce")
    assert code == 1 and lines[0].startswith("bce") and "no file" in lines[0] and len(lines) == 2
