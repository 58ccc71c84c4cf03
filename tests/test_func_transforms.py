"""torch.func: jacrev and vmap of each op equal the native op's; the lecture's Jacobian facts for y = Wx."""
import pytest
import torch
from torch.func import jacrev, vmap

from manual_bp import functional as MF
from manual_bp.cases import OP_CASES
from manual_bp.testing import differentiable_positions as differentiable_positions_of

CASES = [pytest.param(case, id=case.name) for case in OP_CASES]


def differentiable_positions(case, inputs):
    return tuple(differentiable_positions_of(inputs, case.input_names, case.constants))


@pytest.mark.parametrize("case", CASES)
def test_jacrev_matches_native(case):
    inputs = case.make_inputs(case.shapes[1], torch.float64, "cpu", torch.Generator().manual_seed(0), False)
    argnums = differentiable_positions(case, inputs)
    manual = jacrev(case.manual, argnums=argnums)(*inputs)
    native = jacrev(case.native, argnums=argnums)(*inputs)
    torch.testing.assert_close(manual, native)


@pytest.mark.parametrize("case", CASES)
def test_vmap_matches_native(case):
    generator = torch.Generator().manual_seed(0)
    samples = [case.make_inputs(case.shapes[1], torch.float64, "cpu", generator, False) for _ in range(3)]
    batched = [torch.stack(parts) for parts in zip(*samples)]
    torch.testing.assert_close(vmap(case.manual)(*batched), vmap(case.native)(*batched))


@pytest.mark.parametrize("case", CASES)
def test_vmap_of_grad_gives_per_sample_gradients(case):
    generator = torch.Generator().manual_seed(1)
    samples = [case.make_inputs(case.shapes[1], torch.float64, "cpu", generator, False) for _ in range(3)]
    batched = [torch.stack(parts) for parts in zip(*samples)]

    def scalar(fn):
        return lambda *inputs: fn(*inputs).sum()

    manual = vmap(torch.func.grad(scalar(case.manual)))(*batched)
    native = vmap(torch.func.grad(scalar(case.native)))(*batched)
    torch.testing.assert_close(manual, native)


def test_jacobian_of_wx_with_respect_to_x_is_w():
    weight, x = torch.randn(3, 5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    jacobian = jacrev(MF.linear, argnums=0)(x, weight)  # dy/dx: (3, 5)
    torch.testing.assert_close(jacobian, weight, rtol=0, atol=0)


def test_jacobian_of_wx_with_respect_to_w_is_x_on_row_i_only():
    weight, x = torch.randn(3, 5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    jacobian = jacrev(MF.linear, argnums=1)(x, weight)  # dy_i/dW_jk: (3, 3, 5)
    for i in range(3):
        for j in range(3):
            expected = x if i == j else torch.zeros_like(x)
            torch.testing.assert_close(jacobian[i, j], expected, rtol=0, atol=0)
