"""Exercise: the linear layer's backward.

Z = X·Wᵀ + b with X (B, in), W = weight (out, in), b (out,), Z (B, out). From Z_ij = Σ_k X_ik·W_jk + b_j:

    ∂L/∂X = ∂L/∂Z·W            (B, out) @ (out, in) -> (B, in)
    ∂L/∂W = ∂L/∂Zᵀ·X           (out, B) @ (B, in) -> (out, in)
    ∂L/∂b = Σ_batch ∂L/∂Z      (B, out) -> (out,)

Write the three in `backward` (each gradient must have its tensor's shape), then check them:

    python -m manual_bp.exercises check linear
"""
import torch


class Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, weight, bias):
        ctx.save_for_backward(input, weight)
        return input @ weight.t() + bias  # (B, in) @ (in, out) + (out,) -> (B, out)

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        raise NotImplementedError("return ∂L/∂X, ∂L/∂W, ∂L/∂b")
