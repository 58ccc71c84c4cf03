"""Exercise: batch norm's backward (training mode), with respect to its input.

x (N, C); per channel c, over the N values of the batch: μ = mean(x), σ² = mean((x − μ)²) (biased),
x̂ = (x − μ)/√(σ² + ε), y = γ ⊙ x̂ + β. Because μ and σ² depend on every x, the gradient flows three ways:

    ∂L/∂x = (1/N)·γ/√(σ² + ε)·(N·∂L/∂y − Σ ∂L/∂y − x̂·Σ(∂L/∂y ⊙ x̂))      (sums over the batch, per channel)
    ∂L/∂γ = Σ ∂L/∂y ⊙ x̂,   ∂L/∂β = Σ ∂L/∂y

Write the three, then check them:

    python -m manual_bp.exercises check batch_norm
"""
import torch

EPS = 1e-5


class BatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, weight, bias):
        mean = input.mean(0, keepdim=True)  # (1, C)
        inv_std = ((input - mean).square().mean(0, keepdim=True) + EPS).rsqrt()  # 1/√(σ² + ε): (1, C)
        x_hat = (input - mean) * inv_std  # (N, C)
        ctx.save_for_backward(x_hat, inv_std, weight)
        return x_hat * weight + bias

    @staticmethod
    def backward(ctx, grad_output):
        x_hat, inv_std, weight = ctx.saved_tensors
        raise NotImplementedError("return ∂L/∂x, ∂L/∂γ, ∂L/∂β")
