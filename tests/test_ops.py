"""Every op against its native twin: output and every input gradient, gradcheck and gradgradcheck (float64)."""
import pytest
import torch

import manual_bp.functional as MF
from manual_bp.case_inputs import unary_inputs
from manual_bp.cases import OP_CASES, OpCase, compare
from manual_bp.testing import compare_fns

SHAPED_CASES = [pytest.param(case, shape, id=f"{case.name}-{'x'.join(map(str, shape))}")
                for case in OP_CASES for shape in case.shapes]


@pytest.mark.parametrize("case,shape", SHAPED_CASES)
def test_float64_gradcheck_gradgradcheck_and_parity(case, shape):
    compare(case, shape, torch.float64).raise_if_failed()


@pytest.mark.parametrize("case,shape", SHAPED_CASES)
def test_float32_parity(case, shape):
    compare(case, shape, torch.float32).raise_if_failed()


@pytest.mark.parametrize("case,shape", SHAPED_CASES)
def test_float32_parity_noncontiguous_inputs_and_upstream_gradient(case, shape):
    compare(case, shape, torch.float32, noncontiguous=True).raise_if_failed()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("case", OP_CASES, ids=lambda case: case.name)
def test_half_precision_parity(case, dtype):
    compare(case, case.shapes[-1], dtype).raise_if_failed()


def test_the_helper_can_fail():
    """A deliberately wrong backward (sigmoid' taken as a instead of a(1 - a)) must be caught by compare."""

    class WrongSigmoid(torch.autograd.Function):
        @staticmethod
        def forward(input):
            return torch.sigmoid(input)

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(output)

        @staticmethod
        def backward(ctx, grad_output):
            (output,) = ctx.saved_tensors
            return grad_output * output

    wrong = OpCase("wrong_sigmoid", lambda F, x: WrongSigmoid.apply(x) if F is MF else F.sigmoid(x), ("input",),
                   unary_inputs, ((4, 3),))
    result = compare(wrong, (4, 3), torch.float64)
    assert not result.ok
    assert result.gradcheck is False
    assert any(f.startswith("grad input differs") for f in result.failures)
    with pytest.raises(AssertionError, match="grad input"):
        result.raise_if_failed()


def test_the_helper_says_how_far_off_on_which_shape_and_takes_non_tensor_arguments():
    """The failure names the gradient, the count of elements off and the largest difference; a gradient of the wrong
    shape is named with both shapes; a Python number among the inputs is passed through."""
    scaled = compare_fns(lambda x, s: MF.sigmoid(x) * s, lambda x, s: torch.sigmoid(x) * s,
                         (torch.randn(4, 3, dtype=torch.float64), 2.0), ("input", "scale"), gradchecks=True)
    assert scaled.ok and list(scaled.errors) == ["output", "grad input"]
    off = compare_fns(lambda x: MF.sigmoid(x) * 1.01, torch.sigmoid, (torch.randn(4, 3, dtype=torch.float64),),
                      ("input",))
    assert off.failures[1].startswith("grad input differs from native: 12 / 12 (100.0%) elements off, greatest "
                                      "absolute difference ")

    class WrongShape(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.sum(1)

        @staticmethod
        def backward(ctx, grad_output):
            return grad_output[:, None].expand(4, 3).t()  # a transpose too many: (3, 4)
    with pytest.raises(RuntimeError, match="invalid gradient"):  # autograd itself refuses a gradient of wrong shape
        compare_fns(WrongShape.apply, lambda x: x.sum(1), (torch.randn(4, 3),), ("input",))
    summed = compare_fns(lambda x: x.sum(0), lambda x: x.sum(1), (torch.randn(4, 3),), ("input",))
    assert summed.failures[0] == "output has shape (3,), expected (4,)"
