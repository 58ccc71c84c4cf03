"""Gradients nobody asked for are not computed: counted in FLOPs with torch's FlopCounterMode."""
import torch
from torch.utils.flop_counter import FlopCounterMode

import manual_bp.nn as mnn
from manual_bp import functional as MF

BATCH, IN, OUT = 32, 50, 20
MATMUL_FLOPS = 2 * BATCH * IN * OUT  # one (B, in) x (in, out) product


def backward_flops(loss):
    with FlopCounterMode(display=False) as counter:
        loss.backward()
    return counter.get_total_flops()


def test_linear_backward_skips_grad_input_when_input_does_not_require_grad():
    x = torch.randn(BATCH, IN)  # data: no grad wanted
    weight = torch.randn(OUT, IN, requires_grad=True)
    assert backward_flops(MF.linear(x, weight).sum()) == MATMUL_FLOPS  # dL/dW only


def test_linear_backward_computes_both_products_when_both_require_grad():
    x = torch.randn(BATCH, IN, requires_grad=True)
    weight = torch.randn(OUT, IN, requires_grad=True)
    assert backward_flops(MF.linear(x, weight).sum()) == 2 * MATMUL_FLOPS  # dL/dX and dL/dW


def test_linear_backward_skips_grad_weight_for_a_frozen_layer():
    x = torch.randn(BATCH, IN, requires_grad=True)
    weight = torch.randn(OUT, IN)
    assert backward_flops(MF.linear(x, weight).sum()) == MATMUL_FLOPS
    assert x.grad is not None


def test_linear_saves_only_what_backward_reads():
    x, weight = torch.randn(BATCH, IN), torch.randn(OUT, IN, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        MF.linear(x, weight)
    assert len(saved) == 1 and saved[0] is x  # W is not needed: nobody wants dL/dX


def test_first_layer_of_an_mlp_does_not_pay_for_grad_of_the_pixels():
    torch.manual_seed(0)
    net = torch.nn.Sequential(mnn.Linear(IN, OUT), mnn.ReLU(), mnn.Linear(OUT, 10))
    loss = MF.cross_entropy(net(torch.randn(BATCH, IN)), torch.randint(10, (BATCH,)))
    # layer 2: dL/dX and dL/dW (2 * 2*B*OUT*10); layer 1: dL/dW only (2*B*IN*OUT)
    assert backward_flops(loss) == 2 * (2 * BATCH * OUT * 10) + MATMUL_FLOPS


def saved_by(fn, *args):
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        output = fn(*args)
    return saved, output


def test_eval_batch_norm_saves_the_input_only_when_the_weight_needs_its_gradient():
    x, stats = torch.randn(BATCH, 4, requires_grad=True), (torch.zeros(4), torch.ones(4))
    frozen_weight, weight = torch.ones(4), torch.ones(4, requires_grad=True)
    saved, _ = saved_by(lambda: MF.batch_norm(x, *stats, frozen_weight))
    assert not any(t is x for t in saved) and any(t is frozen_weight for t in saved)  # ∂L/∂x needs γ, not x
    saved, _ = saved_by(lambda: MF.batch_norm(x.detach(), *stats, weight))
    assert not any(t is weight for t in saved)  # ∂L/∂γ needs x, not γ


def test_leaky_relu_saves_its_output_not_its_input():
    x = torch.randn(BATCH, IN, requires_grad=True)
    saved, output = saved_by(MF.leaky_relu, x)
    assert len(saved) == 1 and saved[0] is not x and torch.equal(saved[0], output)
