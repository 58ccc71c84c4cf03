"""Inverted dropout: A = Z ⊙ M / (1 − p) with a random 0/1 mask M, drawn outside the Function."""
import torch

from manual_bp import _checks
from manual_bp.autograd import Function


class DropoutFunction(Function):
    """A = Z ⊙ M / (1 − p) for a fixed 0/1 mask M (inverted dropout);   ∂L/∂Z = ∂L/∂A ⊙ M / (1 − p).

    The mask is drawn outside the Function (see `dropout` below), so the Function itself is deterministic and
    vmap-able; here it is just an input that receives no gradient. inplace=True overwrites Z with A.
    p = 1 is scale 0 with an all-zero mask: A = Z·0 and ∂L/∂Z = 0, as torch (a NaN in Z stays NaN there too).
    """

    @staticmethod
    def forward(input, mask, scale, inplace=False):
        if not inplace:
            return input * mask * scale
        input.mul_(mask).mul_(scale)
        return input  # NOTE: the input object itself, which torch.compile needs to see for a dirty input

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, mask, scale, inplace = inputs
        if inplace:
            ctx.mark_dirty(input)
        ctx.save_for_backward(mask)  # NOTE: a bool mask, one byte per element, as torch's own dropout saves
        ctx.scale = scale

    @staticmethod
    def backward(ctx, grad_output):
        (mask,) = ctx.saved_tensors
        grad_input = None
        if ctx.needs_input_grad[0]:
            grad_input = grad_output * mask * ctx.scale  # ∂L/∂Z = ∂L/∂A ⊙ M / (1 − p)
        return grad_input, None, None, None


def dropout(input, p=0.5, training=True, inplace=False):
    """Zero each element with probability p and scale the rest by 1/(1 − p) (identity when not training)."""
    _checks.check_floating("input", input)
    _check_probability(p)
    if not training or p == 0.0:
        return input
    if p == 1.0:
        # NOTE: p = 1 keeps nothing: an all-zero mask and scale 0 instead of 1/0, so the output is input·0 (zeros;
        # NaN stays NaN), as torch. Nothing random is drawn, so this also runs under vmap.
        mask, scale = torch.zeros_like(input, dtype=torch.bool), 0.0
    else:
        mask, scale = torch.empty_like(input).bernoulli_(1.0 - p).bool(), 1.0 / (1.0 - p)
    return masked_dropout(input, mask, scale, inplace)


def masked_dropout(input, mask, scale, inplace=False):
    """Dropout with a given mask M and scale 1/(1 − p): the deterministic step of `dropout`, after the draw."""
    if inplace and _checks.is_transformed(input):
        # NOTE: under torch.func a Function cannot both return its input and save for backward (as in relu)
        return input.copy_(DropoutFunction.apply(input, mask, scale))
    return DropoutFunction.apply(input, mask, scale, inplace)


def _check_probability(p):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1], got {p}")


class Dropout(torch.nn.Module):
    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        _check_probability(p)
        self.p, self.inplace = p, inplace

    def forward(self, input):
        return dropout(input, self.p, self.training, self.inplace)

    def extra_repr(self):
        return f"p={self.p}" + (", inplace=True" if self.inplace else "")
