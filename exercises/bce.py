"""Exercise: binary cross-entropy's backward, with respect to the predicted probabilities.

L = −(1/N)·Σ [y·log ŷ + (1 − y)·log(1 − ŷ)] over the N elements of ŷ = input in (0, 1) and y = target, so

    ∂L/∂ŷ = (ŷ − y) / (ŷ(1 − ŷ)) / N

times the upstream gradient. (y gets no gradient here.) Write it, then check it:

    python -m manual_bp.exercises check bce
"""
import torch


class BCELoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, target):
        ctx.save_for_backward(input, target)
        return -(target * torch.log(input) + (1 - target) * torch.log1p(-input)).mean()

    @staticmethod
    def backward(ctx, grad_output):
        input, target = ctx.saved_tensors
        raise NotImplementedError("return ∂L/∂ŷ = (ŷ − y)/(ŷ(1 − ŷ))/N times grad_output, and None for the target")
