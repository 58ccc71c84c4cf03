"""docs/write-your-own-layer.md's example runs, passes, and its check catches a deliberately wrong backward."""
import io
import subprocess
import sys

import torch

from examples import softplus as example
from manual_bp.testing import print_table
from tests.helpers import ROOT


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


def test_the_example_layer_works_with_jacrev_like_the_built_in_ones():
    x = torch.randn(4, dtype=torch.float64)
    jacobian = torch.func.jacrev(example.Softplus())(x)
    torch.testing.assert_close(jacobian, torch.diag(torch.sigmoid(x)))
