"""Exercise: the sigmoid's backward.

A = σ(Z) = 1 / (1 + e^(−Z)), elementwise. Its derivative is σ'(z) = σ(z)(1 − σ(z)), so

    ∂L/∂Z = ∂L/∂A ⊙ A(1 − A)

with A the output saved in forward. Write it in `backward`, then check it:

    python -m manual_bp.exercises check sigmoid
"""
import torch


class Sigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input):
        output = torch.sigmoid(input)
        ctx.save_for_backward(output)
        return output

    @staticmethod
    def backward(ctx, grad_output):
        (output,) = ctx.saved_tensors
        raise NotImplementedError("return ∂L/∂Z = ∂L/∂A ⊙ A(1 − A)")
