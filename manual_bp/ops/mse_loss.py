"""The regression loss: mean squared error ℓ = (ŷ − y)², optionally weighted."""
import torch

from manual_bp import _checks
from manual_bp.autograd import Function
from manual_bp.ops.reduction import ReductionRepr, reduce_loss, upstream_scale


class MSELossFunction(Function):
    """ℓ = (ŷ − y)²;   ∂ℓ/∂ŷ = 2(ŷ − y), so for "mean" ∂L/∂ŷ = 2(ŷ − y)/N;   ∂ℓ/∂y = −∂ℓ/∂ŷ.

    With a weight w of the input's shape (torch's `weight`): ℓ = w(ŷ − y)², "mean" is L = Σ w(ŷ − y)² / Σ w, so
    ∂L/∂ŷ = 2w(ŷ − y)/Σw and ∂L/∂w = ((ŷ − y)² − L)/Σw ("sum", "none": ∂ℓ/∂w = (ŷ − y)²).

    The lecture's E = ½ Σ (ŷ − y)² is ½ · mse_loss(ŷ, y, reduction="sum"); the ½ is there so that ∂E/∂ŷ = ŷ − y.
    """

    @staticmethod
    def forward(input, target, reduction, weight=None):
        squared = (input - target).square()
        if weight is None:
            return reduce_loss(squared, reduction)
        weighted = squared * weight
        # NOTE: torch's weighted "mean" divides by Σw, not by N (so weights summing to 0 give NaN, as torch)
        return weighted.sum() / weight.sum() if reduction == "mean" else reduce_loss(weighted, reduction)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, target, ctx.reduction, weight = inputs
        # NOTE: ŷ and y are saved, not ŷ − y: a tensor made inside forward would cut double backward from ŷ.
        ctx.save_for_backward(input, target, weight)

    @staticmethod
    def backward(ctx, grad_output):
        input, target, weight = ctx.saved_tensors
        grad_input = grad_target = grad_weight = None
        # N, or Σw when weighted (NOTE: an empty input has nothing to scale; max(·, 1) keeps Python from 2/0)
        count = max(input.numel(), 1) if weight is None else weight.sum()
        difference = input - target
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            # NOTE: (ŷ − y)·(g·2/N): the 2 and 1/N join the upstream scalar, so the full-size work is one subtraction
            # and one product (torch's kernel makes three full-size passes, ((ŷ − y)·2/N)·g, and rounds once more)
            twice_scale = grad_output * (2 / count) if ctx.reduction == "mean" else 2 * grad_output
            grad = difference * twice_scale  # 2(ŷ − y)/N
            if weight is not None:
                grad = grad * weight  # 2w(ŷ − y)/Σw
            grad_input = grad if ctx.needs_input_grad[0] else None
            grad_target = -grad if ctx.needs_input_grad[1] else None  # ∂ℓ/∂y = −∂ℓ/∂ŷ
        if ctx.needs_input_grad[3]:
            squared = difference.square()
            # ∂L/∂w = (ŷ − y)²·g (/Σw for "mean")
            grad_weight = squared * upstream_scale(grad_output, ctx.reduction, count)
            if ctx.reduction == "mean":
                # ∂L/∂w = (ŷ − y)²/Σw − (Σw(ŷ − y)²/Σw)/Σw, the quotient rule's two terms
                # NOTE: the same value as ((ŷ − y)² − L)/Σw, but formed as torch's autograd forms it: where
                # (ŷ − y)² ≈ L (one element, say) the true value is 0 and other forms round to other noise.
                grad_weight = grad_weight - grad_output * ((weight * squared).sum() / count / count)
        return grad_input, grad_target, None, grad_weight


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """weight (optional, the input's shape) weighs each element; "mean" is then Σ w(ŷ − y)² / Σ w, as torch."""
    _checks.check_pointwise_loss(input, target, size_average, reduce, reduction)
    if weight is not None:
        _checks.check_floating("weight", weight)
        _checks.check_same_shape(input, weight, "weight")
        _checks.check_same_dtype_and_device("weight", weight, "input", input)
    return MSELossFunction.apply(input, target, reduction, weight)


class MSELoss(ReductionRepr, torch.nn.MSELoss):
    def __init__(self, size_average=None, reduce=None, reduction="mean"):
        super().__init__(size_average, reduce, reduction)
        self._check_reduction()

    def forward(self, input, target):
        return mse_loss(input, target, reduction=self.reduction)
