"""The binary losses: BCE on probabilities ŷ = σ(z), and BCE with logits z (the sigmoid fused into the loss)."""
import torch

from manual_bp import _checks
from manual_bp.autograd import Function
from manual_bp.ops.reduction import ReductionRepr, reduce_loss, upstream_scale

# NOTE: torch.nn.functional.binary_cross_entropy clamps each log at −100 (so ŷ = 0 or 1 costs 100, not inf) and
# divides its gradient by max(ŷ(1 − ŷ), 1e-12); the same constants here make the edge values match torch exactly.
LOG_CLAMP = -100.0
BCE_GRAD_EPS = 1e-12


def weighted_upstream(derivative, grad_output, weight, reduction, count):
    """∂L/∂x = ∂ℓ₀/∂x · g · w (w = weight, or 1), then / N for "mean": both losses' backward (ℓ = w·ℓ₀).

    NOTE: with a weight, multiplied in the order of torch's backward for these losses, which runs as separate
    half-precision ops: in float16 / bfloat16 each product rounds, and the same order rounds the same way (another
    order differs from torch by several ulp where a product is small). Without one, ∂ℓ₀ · (g/N): one full-size
    product fewer.
    """
    if weight is None:
        return derivative * upstream_scale(grad_output, reduction, count)
    grad = derivative * grad_output * weight
    return grad / count if reduction == "mean" else grad


class BCELossFunction(Function):
    """ℓ = −w[y·log ŷ + (1 − y)·log(1 − ŷ)];   ∂ℓ/∂ŷ = w(ŷ − y) / (ŷ(1 − ŷ));   ∂ℓ/∂y = w(log(1 − ŷ) − log ŷ).

    w = weight, broadcast to the input's shape (1 when None); "mean" divides by N elements, not by Σw, as torch.
    Like torch's kernel the weight is a constant: no gradient flows to it.
    """

    @staticmethod
    def forward(input, target, reduction, weight=None):
        log_p = torch.log(input).clamp(min=LOG_CLAMP)  # NOTE: log 0 = −inf clamped to −100, as torch
        log_one_minus_p = torch.log1p(-input).clamp(min=LOG_CLAMP)
        # NOTE: ℓ = (y − 1)·log(1 − ŷ) − y·log ŷ, torch's kernel's order of operations (so each element rounds as
        # torch's does) in four passes, one fewer than −(y·log ŷ + (1 − y)·log(1 − ŷ))
        loss = (target - 1) * log_one_minus_p - target * log_p
        return reduce_loss(loss if weight is None else loss * weight, reduction)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, target, ctx.reduction, weight = inputs
        ctx.save_for_backward(input, target, weight)

    @staticmethod
    def backward(ctx, grad_output):
        input, target, weight = ctx.saved_tensors
        grad_input = grad_target = None
        if ctx.needs_input_grad[0]:
            # NOTE: the denominator is clamped at 1e-12 (torch's EPSILON) so ŷ = 0 or 1 gives a finite gradient.
            derivative = (input - target) / (input * (1 - input)).clamp(min=BCE_GRAD_EPS)  # (ŷ − y)/(ŷ(1 − ŷ))
            grad_input = weighted_upstream(derivative, grad_output, weight, ctx.reduction, input.numel())
        if ctx.needs_input_grad[1]:
            # NOTE: the derivative of the clamped forward, so ±100 at ŷ = 0 or 1 (torch returns ±inf there).
            # log(1 − ŷ) − log ŷ = −logit(ŷ), taken as one op (as torch does): the difference of two logs cancels
            # near ŷ = ½, which in half precision costs several ulp. Clamping it to ±100 is clamping each log at −100,
            # since both logs are never below −100 at once.
            log_ratio = (-torch.logit(input)).clamp(min=LOG_CLAMP, max=-LOG_CLAMP)  # ∂ℓ/∂y = log(1 − ŷ) − log ŷ
            grad_target = weighted_upstream(log_ratio, grad_output, weight, ctx.reduction, input.numel())
        return grad_input, grad_target, None, None


class BCEWithLogitsLossFunction(Function):
    """ℓ = BCE(σ(z), y) = (1 − y)·z + log(1 + e^(−z));   ∂ℓ/∂z = σ(z) − y (so (σ(z) − y)/N for "mean");   ∂ℓ/∂y = −z.

    With pos_weight p (broadcast over the input, e.g. (C,) over (N, C)) the positive term is weighted:
    ℓ = −[p·y·log σ(z) + (1 − y)·log(1 − σ(z))] = (1 − y)·z + (1 + (p − 1)y)·log(1 + e^(−z)), so
    ∂ℓ/∂z = (1 + (p − 1)y)·σ(z) − p·y and ∂ℓ/∂y = (p − 1)·log(1 + e^(−z)) − z.
    With weight w every ℓ and both derivatives are multiplied by w; "mean" divides by N, not by Σw, as torch.
    Like torch's kernel, weight and pos_weight are constants: no gradient flows to them.
    """

    @staticmethod
    def forward(input, target, reduction, weight=None, pos_weight=None):
        # NOTE: (1 − y)·z − log σ(z), with log σ(z) = −max(−z, 0) − log(1 + e^(−|z|)) from torch's logsigmoid: never
        # log 0 and no overflow, which is why fusing the sigmoid into the loss is better than BCE(σ(z)) for large |z|.
        # The same ops in the same order as torch's own loss, so that half precision rounds as torch does.
        log_sigmoid = torch.nn.functional.logsigmoid(input)
        if pos_weight is not None:
            log_sigmoid = log_sigmoid * ((pos_weight - 1) * target + 1)  # (1 + (p − 1)y)·log σ(z)
        loss = (1 - target) * input - log_sigmoid
        return reduce_loss(loss if weight is None else loss * weight, reduction)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, target, ctx.reduction, weight, pos_weight = inputs
        ctx.save_for_backward(input, target, weight, pos_weight)

    @staticmethod
    def backward(ctx, grad_output):
        input, target, weight, pos_weight = ctx.saved_tensors
        grad_input = grad_target = None
        if ctx.needs_input_grad[0]:
            if pos_weight is None:
                derivative = torch.sigmoid(input) - target  # σ(z) − y
            else:
                positive = pos_weight * target  # p·y
                derivative = (positive + 1 - target) * torch.sigmoid(input) - positive  # (1 + (p − 1)y)σ(z) − p·y
            grad_input = weighted_upstream(derivative, grad_output, weight, ctx.reduction, input.numel())
        if ctx.needs_input_grad[1]:
            if pos_weight is None:
                derivative = -input  # ∂ℓ/∂y = −z
            else:
                # (p − 1)·log(1 + e^(−z)) − z, written as log σ(−z) − p·log σ(z) (the same value): torch's form,
                # without the cancellation against z
                derivative = torch.nn.functional.logsigmoid(-input) - torch.nn.functional.logsigmoid(input) * pos_weight
            grad_target = weighted_upstream(derivative, grad_output, weight, ctx.reduction, input.numel())
        return grad_input, grad_target, None, None, None


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    """input holds probabilities ŷ in [0, 1] (e.g. after sigmoid), target y in [0, 1]; weight broadcasts to input."""
    _checks.check_pointwise_loss(input, target, size_average, reduce, reduction)
    _checks.check_loss_weight("weight", weight, input)
    _checks.check_in_unit_interval("input", input)
    _checks.check_in_unit_interval("target", target)
    return BCELossFunction.apply(input, target, reduction, weight)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None, reduction="mean",
                                     pos_weight=None):
    """input holds logits z (any real number), target y in [0, 1]; weight and pos_weight broadcast to input
    (pos_weight (C,) weighs the positive term of each of C classes in the last dimension)."""
    _checks.check_pointwise_loss(input, target, size_average, reduce, reduction)
    _checks.check_loss_weight("weight", weight, input)
    _checks.check_loss_weight("pos_weight", pos_weight, input)
    _checks.check_in_unit_interval("target", target)
    return BCEWithLogitsLossFunction.apply(input, target, reduction, weight, pos_weight)


class BCELoss(ReductionRepr, torch.nn.BCELoss):
    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean"):
        super().__init__(weight, size_average, reduce, reduction)
        self._check_reduction()

    def forward(self, input, target):
        return binary_cross_entropy(input, target, self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(ReductionRepr, torch.nn.BCEWithLogitsLoss):
    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean", pos_weight=None):
        super().__init__(weight, size_average, reduce, reduction, pos_weight)
        self._check_reduction()

    def forward(self, input, target):
        return binary_cross_entropy_with_logits(input, target, self.weight, reduction=self.reduction,
                                                pos_weight=self.pos_weight)
