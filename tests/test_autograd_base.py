"""manual_bp.autograd.Function: the cheap call (every argument given, no torch.func transform) and torch's own apply
(anything else) give the same values, gradients and graph node."""
import inspect

import pytest
import torch

import manual_bp.functional as MF
from manual_bp.functions import ReLUFunction
from manual_bp.losses import MSELossFunction


def test_a_call_with_every_argument_skips_torchs_signature_binding(monkeypatch):
    x = torch.randn(4, 3, requires_grad=True)
    monkeypatch.setattr(inspect.Signature, "bind", lambda *args, **kwargs: pytest.fail("Signature.bind was called"))
    MF.relu(x).sum().backward()  # the functional API passes every argument: no binding
    MF.cross_entropy(torch.randn(4, 3, requires_grad=True), torch.tensor([0, 2, 1, 2])).backward()
    with pytest.raises(pytest.fail.Exception, match="Signature.bind"):
        ReLUFunction.apply(x)  # a default left out: torch's apply binds it


@pytest.mark.parametrize("call,node", [
    (lambda x: ReLUFunction.apply(x, False), "ReLUFunctionBackward"),
    (lambda x: ReLUFunction.apply(x), "ReLUFunctionBackward"),
    (lambda x: ReLUFunction.apply(x, inplace=False), "ReLUFunctionBackward"),
    (lambda x: torch.func.vmap(lambda row: ReLUFunction.apply(row, False))(x), "VmappedReLUFunctionBackward"),
], ids=["every argument", "a default left out", "a keyword", "under vmap"])
def test_every_way_of_calling_gives_the_same_values_gradients_and_node(call, node):
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    output = call(x)
    upstream = torch.randn_like(output)
    (grad,) = torch.autograd.grad(output, x, upstream)
    torch.testing.assert_close(output, x.relu())
    torch.testing.assert_close(grad, upstream * (x > 0))
    assert output.grad_fn.name() == node  # torch's name for the op's node (vmap: torch's own prefix)


def test_trailing_defaults_of_a_loss_are_filled_as_torch_fills_them():
    input = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    target = torch.randn(6, 3, dtype=torch.float64)
    short, full = MSELossFunction.apply(input, target, "mean"), MSELossFunction.apply(input, target, "mean", None)
    torch.testing.assert_close(short, full)
    torch.testing.assert_close(torch.autograd.grad(short, input)[0], torch.autograd.grad(full, input)[0])
    torch.testing.assert_close(full, torch.nn.functional.mse_loss(input, target))


def test_double_backward_runs_through_the_cheap_call():
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda t: MF.sigmoid(t), (x,))
