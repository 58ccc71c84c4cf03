"""Exercise: the mean squared error's backward.

L = (1/N)·Σ (ŷ − y)² over the N elements of ŷ = input and y = target (reduction "mean"), so

    ∂L/∂ŷ = 2(ŷ − y)/N,   ∂L/∂y = −2(ŷ − y)/N

each times the upstream gradient ∂L_total/∂L (a scalar, 1 when L is the loss). Write both, then check them:

    python -m manual_bp.exercises check mse
"""
import torch


class MSELoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, target):
        ctx.save_for_backward(input, target)
        return (input - target).square().mean()

    @staticmethod
    def backward(ctx, grad_output):
        input, target = ctx.saved_tensors
        raise NotImplementedError("return ∂L/∂ŷ = 2(ŷ − y)/N and ∂L/∂y = −2(ŷ − y)/N, times grad_output")
