"""The affine layer Z = X·Wᵀ + b: its Function, `linear` and `Linear`.

Notation (row convention, one sample per row): X is (B, in), W = weight is (out, in), Z is (B, out).
"""
import math

import torch

from manual_bp import _checks, init
from manual_bp.autograd import Function


class LinearFunction(Function):
    """Z = X·Wᵀ + b with W = weight of shape (out, in), exactly as torch.nn.functional.linear.

    ∂L/∂X = ∂L/∂Z·W,   ∂L/∂W = ∂L/∂Zᵀ·X,   ∂L/∂b = Σ_batch ∂L/∂Z.

    The lecture writes Z = X·W_lec + B with W_lec = Wᵀ of shape (in, out); its ∂L/∂W_lec = Xᵀ·∂L/∂Z is the
    transpose of the ∂L/∂W computed here. Leading dimensions (*, in) are flattened into one batch.
    """

    @staticmethod
    def forward(input, weight, bias):
        if input.dim() == 2 and bias is not None:
            return torch.addmm(bias, input, weight.t())  # (B, in) @ (in, out) + (out,) -> (B, out)
        output = input.matmul(weight.t())  # (*, in) @ (in, out) -> (*, out)
        return output if bias is None else output + bias

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, weight, _ = inputs
        needs_grad_input, needs_grad_weight, _ = ctx.needs_input_grad
        # NOTE: save only what backward will read: W for ∂L/∂X, X for ∂L/∂W.
        ctx.save_for_backward(input if needs_grad_weight else None, weight if needs_grad_input else None)

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        grad_input = grad_weight = grad_bias = None
        out_features = grad_output.shape[-1]
        # NOTE: the batch size is spelled out, not reshape(-1, ·): with in_features or out_features = 0 the tensor
        # has no elements and -1 could be any size (torch: "cannot reshape tensor of 0 elements into shape [-1, 0]").
        batch = math.prod(grad_output.shape[:-1])
        if ctx.needs_input_grad[0]:
            grad_input = grad_output.matmul(weight)  # ∂L/∂X = ∂L/∂Z·W: (*, out) @ (out, in) -> (*, in)
        if ctx.needs_input_grad[1]:
            grad_2d, input_2d = grad_output.reshape(batch, out_features), input.reshape(batch, input.shape[-1])
            grad_weight = grad_2d.t().mm(input_2d)  # ∂L/∂W = ∂L/∂Zᵀ·X: (out, B) @ (B, in) -> (out, in)
        if ctx.needs_input_grad[2]:
            grad_bias = grad_output.reshape(batch, out_features).sum(0)  # ∂L/∂b = Σ_batch ∂L/∂Z: (B, out) -> (out,)
        return grad_input, grad_weight, grad_bias


def linear(input, weight, bias=None):
    """Z = X·Wᵀ + b: input (*, in), weight (out, in), bias (out,) or None -> (*, out)."""
    _checks.check_floating("input", input)
    _checks.check_floating("weight", weight)
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D (out_features, in_features), got shape {tuple(weight.shape)}")
    if input.dim() == 0 or input.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"input must have in_features={weight.shape[1]} in its last dimension, got shape {tuple(input.shape)}"
        )
    _checks.check_same_dtype_and_device("weight", weight, "input", input)
    if bias is not None:
        _checks.check_floating("bias", bias)
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
        _checks.check_same_dtype_and_device("bias", bias, "input", input)
    return LinearFunction.apply(input, weight, bias)


class Linear(torch.nn.Linear):
    """torch.nn.Linear with the handwritten backward: Z = X·Wᵀ + b.

    Subclassing keeps torch's parameters, weight layout (out_features, in_features) and extra_repr, so a state_dict
    moves between the two classes in both directions. The initialisation is manual_bp.init's, drawing what torch's
    does: for the same seed both start from the same weights.
    """

    def reset_parameters(self):
        """W ~ U(−1/√fan_in, 1/√fan_in) as Kaiming-uniform with a = √5 (Var(W) = 1/(3·fan_in)), b ~ the same U."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init.fan_in_and_fan_out(self.weight)
            # NOTE: 1/√fan_in computed as torch does (not the weight's √3·g/√fan_in, which can differ in the last
            # bit); with in_features = 0 the bias is U(0, 0) = 0, as torch
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input):
        return linear(input, self.weight, self.bias)
