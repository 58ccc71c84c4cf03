"""What every loss shares: the reduction of the per-element loss ℓ, and its derivative.

Ŷ = input, Y = target, ℓ the per-element loss; reduction "sum" gives L = Σℓ, "mean" L = Σℓ / N (N elements,
or N samples for the class losses), "none" returns ℓ itself. The backward scales ∂ℓ/∂Ŷ by the upstream gradient:
1 for "sum", 1/N for "mean", elementwise for "none".
"""
from manual_bp import _checks


def reduce_loss(loss, reduction):
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()


def upstream_scale(grad_output, reduction, count):
    """∂L/∂ℓ for each element: the upstream gradient, divided by N for "mean"."""
    return grad_output / count if reduction == "mean" else grad_output


class ReductionRepr:
    """Mixed into the loss modules, which subclass torch's: the reduction checked at construction, and shown.

    NOTE: each loss module subclasses its torch.nn twin: the same constructor (size_average / reduce translated into
    `reduction` by torch, with its deprecation warning), `weight` / `pos_weight` registered as buffers by torch, so a
    state_dict moves both ways. Only forward is replaced.
    """

    def _check_reduction(self):
        _checks.check_reduction(self.reduction)

    def extra_repr(self):
        return f"reduction={self.reduction!r}"
