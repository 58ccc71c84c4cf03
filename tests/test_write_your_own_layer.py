"""docs/write-your-own-layer.md's example runs, passes, and its check catches a deliberately wrong backward."""
import io
import re
import subprocess
import sys

import pytest
import torch

from examples import softplus as example
from manual_bp.testing import compare_fns, print_table
from tests.helpers import ROOT, doc_text_after


def test_the_example_runs_as_a_module_and_every_row_is_ok():
    completed = subprocess.run([sys.executable, "-m", "examples.softplus"], cwd=ROOT, capture_output=True, text=True,
                               timeout=300)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    rows = completed.stdout.splitlines()[1:]
    assert len(rows) == 6 and all(" ok " in row for row in rows), completed.stdout
    assert all("pass      pass" in row for row in rows if "float64" in row)  # gradcheck and gradgradcheck ran


class ForgetsTheUpstreamGradient(example.SoftplusFunction):
    """The classic slip: returns ∂A/∂Z = σ(Z) instead of ∂L/∂A ⊙ σ(Z)."""

    @staticmethod
    def backward(ctx, grad_output):
        (input,) = ctx.saved_tensors
        return torch.sigmoid(input)


class WrongDerivative(example.SoftplusFunction):
    """Takes softplus' = e^Z (the derivative of the inner e^Z only): right near −∞, wrong elsewhere."""

    @staticmethod
    def backward(ctx, grad_output):
        (input,) = ctx.saved_tensors
        return grad_output * torch.exp(input)


def test_the_check_catches_a_wrong_backward():
    for wrong in (ForgetsTheUpstreamGradient, WrongDerivative):
        results = example.prove(wrong.apply)
        assert not any(result.ok for result in results)
        assert all(result.gradcheck is False for result in results if result.dtype == torch.float64)
        table = io.StringIO()
        print_table(results, file=table)
        assert "FAIL" in table.getvalue() and "grad input differs from native" in table.getvalue()


def test_the_docs_show_what_the_check_prints_for_the_forgotten_upstream_gradient():
    shown = doc_text_after("write-your-own-layer.md", "is caught (a test checks this, and a wrong derivative too):")
    table = io.StringIO()
    print_table(example.prove(ForgetsTheUpstreamGradient.apply), file=table)
    header, *lines = table.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("softplus[8, 5]") and "float64" in line)
    # NOTE: the output's own error is a few ulp, which the CPU's vector instructions (AVX2, AVX-512) may move
    def ulp_free(text):
        return [re.sub(r"output=\S+", "output=…", line) for line in text]
    assert ulp_free(shown.splitlines()) == ulp_free([header, *lines[start:start + 3]])


def test_the_example_layer_works_with_jacrev_like_the_built_in_ones():
    x = torch.randn(4, dtype=torch.float64)
    jacobian = torch.func.jacrev(example.Softplus())(x)
    torch.testing.assert_close(jacobian, torch.diag(torch.sigmoid(x)))


@pytest.mark.parametrize("inputs,names,error,message", [
    (torch.randn(3), ("input",), TypeError,
     r"^inputs must be a tuple of the functions' arguments, e\.g\. \(x,\) for one, got Tensor$"),
    ((torch.randn(3),), "input", TypeError, r"^input_names must be a tuple of names, one per input, .* got 'input'$"),
    ((torch.randn(3),), ("input", "beta"), ValueError, r"^input_names must name each of the 1 input\(s\), got 2: "),
    ((torch.tensor([1, 2]),), ("input",), ValueError, r"^inputs must hold a floating-point tensor"),
])
def test_compare_fns_names_a_wrong_argument(inputs, names, error, message):
    with pytest.raises(error, match=message):
        compare_fns(example.softplus, torch.nn.functional.softplus, inputs, names)
