"""No op reads a tensor's values into Python on its default path (value checks included).

On CUDA such a read (`.item()`, `bool(t)`, `.tolist()`, `.cpu()`, ...) makes the host wait for the device, and a
CUDA graph cannot contain it. Here, on the CPU, every Python-level read raises while each op runs forward and
backward: the ops' own code and the value checks the CPU runs. The checks' CUDA branch (class indices computed on
the device, _checks.assert_values' device-side assert) is proven on a GPU: tests/test_cuda.py runs every op and a
training step under torch.cuda.set_sync_debug_mode("error") (scripts/gpu_check.sh).
"""
import contextlib

import pytest
import torch

from manual_bp.cases import OP_CASES
from manual_bp.testing import differentiable_positions
from models.mlp import build_mlp, classification_loss

READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__")


class ValueRead(AssertionError):
    pass


@contextlib.contextmanager
def value_reads_raise():
    """Every Python-level read of a tensor's values raises ValueRead inside the block."""
    saved = {name: getattr(torch.Tensor, name) for name in READS}

    def refuse(name):
        def read(*args, **kwargs):
            raise ValueRead(f"Tensor.{name} read a value into Python")
        return read

    try:
        for name in READS:
            setattr(torch.Tensor, name, refuse(name))
        yield
    finally:
        for name, method in saved.items():
            setattr(torch.Tensor, name, method)


def forward_backward(fn, inputs):
    """fn's forward and backward with every read refused (the upstream gradient made before)."""
    output = fn(*inputs)
    upstream = torch.ones_like(output)
    with value_reads_raise():
        output = fn(*inputs)
        output.backward(upstream)


@pytest.mark.parametrize("case", OP_CASES, ids=lambda case: case.name)
def test_op_reads_no_value(case):
    inputs = case.make_inputs(case.shapes[-1], torch.float32, "cpu", torch.Generator().manual_seed(0), False)
    grad_positions = differentiable_positions(inputs, case.input_names, case.constants)
    inputs = [t.requires_grad_() if i in grad_positions else t for i, t in enumerate(inputs)]
    forward_backward(case.manual, inputs)
    assert all(inputs[i].grad is not None for i in grad_positions)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse", "bce"])
def test_training_step_reads_no_value(loss):
    torch.manual_seed(0)
    net = build_mlp(784, (32,), 10, "relu", "manual", 0.25, "batch", "default")
    images, labels = torch.randn(16, 784), torch.randint(10, (16,))
    with value_reads_raise():
        classification_loss(net(images), labels, loss, "manual").backward()
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.parametrize("read", [lambda t: t.item(), lambda t: bool(t), lambda t: t.tolist(), lambda t: t.cpu(),
                                  lambda t: int(t), lambda t: float(t), lambda t: [0, 1][t]])
def test_a_read_is_caught(read):
    with value_reads_raise(), pytest.raises(ValueRead):
        read(torch.tensor(1))
