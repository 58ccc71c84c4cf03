"""manual_bp.autograd.Function: the cheap call (every argument given, no torch.func transform) and torch's own apply
(anything else) give the same values, gradients and graph node."""
import inspect

import pytest
import torch

import manual_bp.functional as MF
from manual_bp import MSELossFunction, ReLUFunction
from manual_bp.autograd import Function
from manual_bp.cases import OP_CASES
from manual_bp.testing import differentiable_positions


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


def op_classes(cls=Function):
    for subclass in cls.__subclasses__():
        yield subclass
        yield from op_classes(subclass)


def output_gradients_and_node(case):
    generator = torch.Generator().manual_seed(0)
    inputs = case.make_inputs(case.shapes[-1], torch.float64, "cpu", generator, False)
    positions = differentiable_positions(inputs, case.input_names, case.constants)
    leaves = [t.detach().clone().requires_grad_() if i in positions else t for i, t in enumerate(inputs)]
    output = case.manual(*leaves)
    upstream = torch.randn(output.shape, generator=generator, dtype=output.dtype)
    grads = torch.autograd.grad(output, [leaves[i] for i in positions], upstream, allow_unused=True)
    return output, grads, output.grad_fn.name()


@pytest.mark.parametrize("case", OP_CASES, ids=lambda case: case.name)
def test_the_twin_and_torchs_apply_agree_bit_for_bit_on_every_op(case, monkeypatch):
    twin = output_gradients_and_node(case)
    for op in op_classes():
        monkeypatch.setattr(op, "_arity", None)  # every call through torch's own apply
    torchs = output_gradients_and_node(case)
    torch.testing.assert_close(twin[0], torchs[0], rtol=0, atol=0)
    for from_twin, from_torch in zip(twin[1], torchs[1]):
        torch.testing.assert_close(from_twin, from_torch, rtol=0, atol=0)
    assert twin[2] == torchs[2]


def test_a_backward_patched_after_the_class_was_made_runs_on_the_cheap_call(monkeypatch):
    calls = []
    backward = ReLUFunction.backward
    monkeypatch.setattr(ReLUFunction, "backward", staticmethod(lambda ctx, grad: calls.append(1) or backward(ctx, grad)))
    MF.relu(torch.randn(3, requires_grad=True)).sum().backward()
    assert calls == [1]


def test_a_subclass_in_the_forward_ctx_style_keeps_torchs_apply():
    class Scale(Function):
        @staticmethod
        def forward(ctx, input, factor):
            ctx.factor = factor
            return input * factor

        @staticmethod
        def backward(ctx, grad_output):
            return grad_output * ctx.factor, None

    x = torch.randn(4, requires_grad=True)
    Scale.apply(x, 3.0).sum().backward()
    torch.testing.assert_close(x.grad, torch.full((4,), 3.0))


@pytest.mark.parametrize("activation", [MF.relu, MF.sigmoid, MF.tanh])
def test_an_activations_backward_writes_its_result_over_its_own_temporary_only_when_nothing_records_it(activation):
    """overwrite: a plain backward returns ∂L/∂Z in the memory of a tensor it made (one allocation fewer); with
    create_graph=True a new tensor (autograd refuses out=); under vmap the per-sample gradients are still right."""
    made = []

    class Allocations(torch.utils._python_dispatch.TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            result = func(*args, **(kwargs or {}))
            inputs = {arg.untyped_storage().data_ptr() for arg in args if isinstance(arg, torch.Tensor)}
            if isinstance(result, torch.Tensor) and result.untyped_storage().data_ptr() not in inputs:
                made.append(result.untyped_storage().data_ptr())  # NOTE: new memory (not a view, not out=)
            return result

    def backward(create_graph):
        x = torch.randn(6, 5, requires_grad=True)
        output = activation(x)
        made.clear()
        with Allocations():
            (grad,) = torch.autograd.grad(output, x, torch.ones_like(output), create_graph=create_graph)
        return grad.untyped_storage().data_ptr(), made[1:]  # the first allocation is the upstream ones_like

    grad, allocations = backward(create_graph=False)
    assert grad in allocations and len(allocations) == 1  # the temporary, then overwritten: one allocation
    grad, allocations = backward(create_graph=True)
    assert len(allocations) == 2 and grad == allocations[-1]  # the temporary and a new result
    x = torch.randn(3, 6, 5, requires_grad=True)
    (grad,) = torch.autograd.grad(torch.func.vmap(activation)(x).sum(), x)
    per_sample = torch.func.vmap(torch.func.grad(lambda row: activation(row).sum()))(x)
    torch.testing.assert_close(grad, per_sample)
