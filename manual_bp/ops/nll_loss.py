"""Negative log-likelihood at class indices, and the class-index rules it shares with cross_entropy.py: where the
class dimension is, the target's shape and range, the class weights, and the masking of ignore_index.

Input (N, C), (C,) or (N, C, d1, ..., dK): the classes in dim 1 (dim 0 for (C,)); class indices (N,), () or
(N, d1, ..., dK), each in [0, C) or equal to ignore_index, which then counts for nothing.
"""
import operator

import torch

from manual_bp import _checks
from manual_bp.autograd import Function
from manual_bp.ops.reduction import reduce_loss, upstream_scale


def class_dim(ndim):
    """The class dimension of an ndim-D input (C,), (N, C) or (N, C, d1, ..., dK): 0 for (C,), else 1."""
    return 0 if ndim == 1 else 1


def index_shape(input):
    """The shape of the class indices for `input`: its shape without the class dimension."""
    dim = class_dim(input.dim())
    return input.shape[:dim] + input.shape[dim + 1:]


def safe_targets(target, ignore_index):
    """(counted, safe target): which targets count, and the targets with each ignored one replaced by class 0.

    NOTE: an ignored target (= ignore_index, which may lie outside [0, C)) is replaced by the target times 0 (an
    integer product, one kernel) before any indexing. What is picked at it is masked out afterwards with `where`,
    not multiplied by 0: a picked −inf times 0 would be NaN.
    """
    counted = target != ignore_index  # (N, d1, ..., dK) bool
    return counted, target * counted


def counted_targets(target, weight, ignore_index):
    """(counted, safe target, weight of each target): the class-index bookkeeping of the backward."""
    counted, safe_target = safe_targets(target, ignore_index)
    target_weight = None if weight is None else weight[safe_target]  # w_{y_i}: (N, d1, ..., dK)
    return counted, safe_target, target_weight


def pick_targets(values, target, weight, ignore_index):
    """The forward's bookkeeping: (counted, weight of each target, values[i, y_i]) for values (N, C, d1, ..., dK).

    NOTE: on the CPU this gather is the class-index check of nll_loss and of label-smoothed cross_entropy
    (check_class_indices leaves the CPU to it): a target outside [0, C) that is not ignore_index fails the gather's
    own bound check, at no cost of a pass of its own, and is reported as check_class_indices reports it
    (ClassIndicesCheckedByTorch). The class weights are indexed after it: weight[-1] would wrap around.
    """
    dim = class_dim(values.dim())
    counted, safe_target = safe_targets(target, ignore_index)
    with ClassIndicesCheckedByTorch(target, values.shape[dim], ignore_index):
        picked = values.gather(dim, safe_target.unsqueeze(dim)).squeeze(dim)  # x_{i, y_i}: (N, C, ...) -> (N, ...)
    target_weight = None if weight is None else weight[safe_target]  # w_{y_i}: (N, d1, ..., dK)
    return counted, target_weight, picked


class ClassIndicesCheckedByTorch:
    """A torch kernel's bound check of the class indices, inside `with ClassIndicesCheckedByTorch(target, classes,
    ignore_index):`, turned into check_class_indices' ValueError.

    NOTE: matched by torch's wording, "out of bounds" ("index 5 is out of bounds for dimension 1 with size 3" from
    gather, "Target 5 is out of bounds." from nll_loss), which tells it from other failures; tests/test_bad_input.py
    would see it change. A class, not a contextlib.contextmanager: it is entered on every forward of the two losses,
    and a generator's context (a generator, its object, StopIteration at the end) costs the host more.
    """

    def __init__(self, target, classes, ignore_index):
        self.target, self.classes, self.ignore_index = target, classes, ignore_index

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if not isinstance(error, (IndexError, RuntimeError)) or "out of bounds" not in str(error):
            return False  # NOTE: no error, or another one: it goes on as it was
        # NOTE: under a torch.func transform the offending value is not looked up (vmap cannot batch a masked read)
        message = (class_index_message(self.classes, self.ignore_index) if _checks.is_transformed(self.target)
                   else class_index_error(self.target, self.classes, self.ignore_index))
        raise ValueError(message) from None


def only_counted(counted, per_sample):
    """per_sample with 0 where the target is ignored."""
    return torch.where(counted, per_sample, 0)


def counted_total(counted, target_weight):
    """The "mean" denominator: Σ_i w_{y_i} over the counted targets (their number if there are no weights)."""
    if target_weight is None:
        return counted.sum()
    return only_counted(counted, target_weight).sum()


class NLLLossFunction(Function):
    """ℓ_i = −w_{y_i}·x_{i, y_i} for log-probabilities x_i (C,), a class index y_i and class weights w (1 if None);
    ℓ_i = 0 where y_i = ignore_index. "mean" divides Σℓ by Σ_i w_{y_i} over the counted targets (not by N).

    ∂ℓ_i/∂x_{i,c} = −w_{y_i}·1[c = y_i], so for "mean" ∂L/∂X = −onehot(Y) ⊙ w_Y / Σ w_Y.
    """

    @staticmethod
    def forward(input, target, weight, ignore_index, reduction):
        counted, target_weight, picked = pick_targets(input, target, weight, ignore_index)  # x_{i, y_i}: (N, ...)
        loss = only_counted(counted, -picked if weight is None else -picked * target_weight)  # ignored: 0
        if reduction != "mean":
            return reduce_loss(loss, reduction)
        return loss.sum() / counted_total(counted, target_weight)  # NOTE: all ignored: 0/0 = NaN, as torch

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, target, weight, ctx.ignore_index, ctx.reduction = inputs
        ctx.input_shape = input.shape  # NOTE: the derivative does not depend on x's values, only on where it lies
        ctx.save_for_backward(target, weight)

    @staticmethod
    def backward(ctx, grad_output):
        target, weight = ctx.saved_tensors
        grad_input = None
        if ctx.needs_input_grad[0]:
            dim = class_dim(len(ctx.input_shape))
            counted, safe_target, target_weight = counted_targets(target, weight, ctx.ignore_index)
            # NOTE: divided by Σ w_{y_i} as it is, as torch: every target ignored gives 0 (the ignored terms are masked
            # after the division), every counted weight 0 gives NaN at the targets (0·(g/0)), both as torch's
            count = counted_total(counted, target_weight) if ctx.reduction == "mean" else 1
            scale = only_counted(counted, upstream_scale(grad_output, ctx.reduction, count))  # ∂L/∂ℓ_i: (N, ...)
            grad_picked = -(scale if weight is None else scale * target_weight)  # −w_{y_i} ⊙ ∂L/∂ℓ_i: (N, ...)
            # ∂L/∂X = −onehot(Y) ⊙ w_Y ⊙ ∂L/∂ℓ: the gradient lands on the target class only
            grad_input = grad_output.new_zeros(ctx.input_shape).scatter(dim, safe_target.unsqueeze(dim),
                                                                         grad_picked.unsqueeze(dim))
        return grad_input, None, None, None, None


def check_class_loss(input, target, size_average, reduce, reduction):
    """The opening checks cross_entropy and nll_loss share: floating input, a target tensor, the reduction."""
    _checks.check_floating("input", input)
    _checks.check_tensor("target", target)
    _checks.check_no_legacy_reduction(size_average, reduce)
    _checks.check_reduction(reduction)
    if input.dim() == 0:
        raise ValueError("input must have shape (C,), (N, C) or (N, C, d1, ..., dK), got shape ()")


def is_index_dtype(target):
    return not (target.is_floating_point() or target.dtype == torch.bool or target.is_complex())


def check_index_target(input, target):
    """Class indices of the shape of input without its class dimension, on input's device."""
    if target.shape != index_shape(input):
        raise ValueError(f"target must have shape {tuple(index_shape(input))} for input of shape "
                         f"{tuple(input.shape)}, got {tuple(target.shape)}")
    _checks.check_same_device("target", target, "input", input)


def check_class_weight(weight, input):
    """Per-class weights (C,) of input's dtype and device (None passes)."""
    if weight is None:
        return
    classes = input.shape[class_dim(input.dim())]
    _checks.check_floating("weight", weight)
    if weight.shape != (classes,):
        raise ValueError(f"weight must have shape ({classes},), one weight per class (C={classes}), "
                         f"got {tuple(weight.shape)}")
    _checks.check_same_dtype_and_device("weight", weight, "input", input)


def check_ignore_index(ignore_index):
    """ignore_index as an int: a Python int, or anything torch takes for one (a 0-dim integer tensor, a NumPy int)."""
    try:
        return operator.index(ignore_index)
    except TypeError:
        raise TypeError(
            f"ignore_index must be an integer, got {type(ignore_index).__name__} {ignore_index!r}") from None


def check_class_indices(target, classes, ignore_index):
    """Every target in [0, C) or equal to ignore_index: on CUDA a device-side check (_checks.assert_values); on the
    CPU the forward's own indexing checks them (pick_targets' gather; torch's nll_loss in cross_entropy)."""
    if target.numel() == 0 or target.device.type == "cpu" or not _checks.values_are_checked(target):
        return
    _checks.assert_values(valid_targets(target, classes, ignore_index).all(),
                          class_index_message(classes, ignore_index),
                          lambda: class_index_error(target, classes, ignore_index))


def valid_targets(target, classes, ignore_index):
    """Where a target is a class index in [0, C) or ignore_index: (N, d1, ..., dK) bool."""
    return ((target >= 0) & (target < classes)) | (target == ignore_index)


def class_index_message(classes, ignore_index):
    return f"target must hold class indices in [0, {classes - 1}] (C={classes}) or ignore_index={ignore_index}"


def class_index_error(target, classes, ignore_index):
    """The message with the first offending target (a read: for the error only)."""
    valid = valid_targets(target, classes, ignore_index)
    return f"{class_index_message(classes, ignore_index)}, got {int(target[~valid][0])}"


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
    """Negative log-likelihood of log-probabilities input (N, C), (C,) or (N, C, d1, ...) at class indices target
    (N,), () or (N, d1, ...); weight (C,) weighs each class; targets equal to ignore_index count for nothing."""
    check_class_loss(input, target, size_average, reduce, reduction)
    ignore_index = check_ignore_index(ignore_index)
    if not is_index_dtype(target):
        raise TypeError(f"target must hold class indices (an integer tensor), got dtype {target.dtype}")
    check_index_target(input, target)
    check_class_weight(weight, input)
    if weight is not None:
        _checks.check_constant("weight", weight)
    check_class_indices(target, input.shape[class_dim(input.dim())], ignore_index)
    return NLLLossFunction.apply(input, target.long(), weight, ignore_index, reduction)


class NLLLoss(torch.nn.NLLLoss):
    """torch.nn.NLLLoss (weight is a buffer, so it follows .to() and the state dict) with the handwritten backward."""

    def forward(self, input, target):
        return nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index, reduction=self.reduction)
