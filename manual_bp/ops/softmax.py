"""The softmax family along a dimension: softmax S = e^Z / Σ e^Z and log_softmax A = log S."""
import warnings

import torch

from manual_bp import _checks
from manual_bp.autograd import Function


class SoftmaxFunction(Function):
    """S = softmax(Z) along dim: s_i = e^(z_i)/Σ_j e^(z_j);   ∂L/∂Z = S ⊙ (∂L/∂S − Σ_dim(∂L/∂S ⊙ S)).

    (The Jacobian ∂s_i/∂z_j = s_i(δ_ij − s_j) times the upstream gradient, without building the (C, C) matrix.)
    """

    @staticmethod
    def forward(input, dim):
        if input.dim() and input.shape[dim] == 0:
            return input.clone()  # NOTE: nothing to normalise, and amax over an empty dim raises; as torch
        # NOTE: shifting by the max along dim keeps e^(·) ≤ 1 (no overflow at logits of 1e4); softmax is unchanged.
        exp = (input - input.amax(dim=dim, keepdim=True)).exp()
        return exp / exp.sum(dim=dim, keepdim=True)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, ctx.dim = inputs
        # NOTE: the derivative is written in the output S alone; a saved output stays connected to the graph (it is
        # this Function's own result), so double backward works.
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad_output):
        (output,) = ctx.saved_tensors
        grad_input = None
        if ctx.needs_input_grad[0]:
            weighted_sum = (grad_output * output).sum(dim=ctx.dim, keepdim=True)  # Σ_dim ∂L/∂S ⊙ S
            grad_input = output * (grad_output - weighted_sum)  # ∂L/∂Z = S ⊙ (∂L/∂S − Σ ∂L/∂S ⊙ S)
        return grad_input, None


class LogSoftmaxFunction(Function):
    """A = log softmax(Z) = Z − log Σ_dim e^Z;   ∂L/∂Z = ∂L/∂A − e^A ⊙ Σ_dim ∂L/∂A   (e^A = softmax(Z))."""

    @staticmethod
    def forward(input, dim):
        if input.dim() and input.shape[dim] == 0:
            return input.clone()  # NOTE: as in SoftmaxFunction
        # NOTE: (z − max z) − log Σ e^(z − max z): the shift keeps e^(·) ≤ 1, and subtracting the max before the
        # log-sum keeps float32 digits that z − logsumexp(z) loses. (cross_entropy.py says why the loss uses
        # torch's fused kernel for the same values instead.)
        shifted = input - input.amax(dim=dim, keepdim=True)
        return shifted - shifted.exp().sum(dim=dim, keepdim=True).log()

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, ctx.dim = inputs
        ctx.save_for_backward(output)  # NOTE: softmax is e^A of the saved output: no second max/sum pass

    @staticmethod
    def backward(ctx, grad_output):
        (output,) = ctx.saved_tensors
        grad_input = None
        if ctx.needs_input_grad[0]:
            grad_input = log_softmax_grad(grad_output, output, ctx.dim)  # ∂L/∂Z = ∂L/∂A − softmax(Z) ⊙ Σ_dim ∂L/∂A
        return grad_input, None


def log_softmax_grad(grad_output, output, dim):
    """∂L/∂Z = ∂L/∂A − e^A ⊙ Σ_dim ∂L/∂A for A = log softmax(Z) along dim, from the output A (e^A = softmax(Z)):
    LogSoftmaxFunction's backward, and cross_entropy's for its log-probabilities output."""
    return grad_output - output.exp() * grad_output.sum(dim=dim, keepdim=True)


def _softmax_dim(name, input, dim, stacklevel):
    if dim is None:
        # NOTE: torch's deprecated implicit choice (dim 0 for 0-, 1- and 3-D input, else 1), warning included, so
        # a call without dim gives what torch's gives; pass dim explicitly.
        warnings.warn(f"Implicit dimension choice for {name} has been deprecated. "
                      "Change the call to include dim=X as an argument.", stacklevel=stacklevel)
        return 0 if input.dim() in (0, 1, 3) else 1
    rank = max(input.dim(), 1)
    if not -rank <= dim < rank:
        raise IndexError(f"dim must be in [{-rank}, {rank - 1}] for input of shape {tuple(input.shape)}, got {dim}")
    return dim


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    """softmax along dim; dtype: cast input to it first (as torch: e.g. float16 logits, float32 probabilities)."""
    _checks.check_floating("input", input)
    dim = _softmax_dim("softmax", input, dim, _stacklevel)
    return SoftmaxFunction.apply(input if dtype is None else input.to(dtype), dim)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    _checks.check_floating("input", input)
    dim = _softmax_dim("log_softmax", input, dim, _stacklevel)
    return LogSoftmaxFunction.apply(input if dtype is None else input.to(dtype), dim)


class Softmax(torch.nn.Softmax):
    def forward(self, input):
        return softmax(input, self.dim, _stacklevel=5)


class LogSoftmax(torch.nn.LogSoftmax):
    def forward(self, input):
        return log_softmax(input, self.dim, _stacklevel=5)
