"""Exercise: softmax cross-entropy's backward.

Logits Z (N, C), class indices y (N,): ℓ_i = −log softmax(z_i)[y_i] and L = (1/N)·Σ_i ℓ_i, so

    ∂L/∂Z = (softmax(Z) − onehot(Y)) / N          (N, C)

times the upstream gradient (the class indices get no gradient). Write it, then check it:

    python -m manual_bp.exercises check softmax_cross_entropy
"""
import torch


class SoftmaxCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, target):
        ctx.save_for_backward(logits, target)
        return -torch.log_softmax(logits, dim=1).gather(1, target[:, None]).mean()

    @staticmethod
    def backward(ctx, grad_output):
        logits, target = ctx.saved_tensors
        raise NotImplementedError("return ∂L/∂Z = (softmax(Z) − onehot(Y))/N times grad_output, and None")
