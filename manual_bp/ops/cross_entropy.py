"""Softmax cross-entropy of logits Z against class indices (or class probabilities): the MLP classifier's loss.

It is nll_loss (nll_loss.py, whose class-index rules it shares) of log_softmax (softmax.py), fused: the backward
softmax(Z) − onehot(Y) needs neither the (C, C) Jacobian of the softmax nor the one-hot matrix.

NOTE: the forward takes log softmax from torch's fused kernel (torch.log_softmax), not from LogSoftmaxFunction's
handwritten small ops: the two round differently in about one element in seven (one ulp, float32 and float64), and
the loss is kept bit for bit equal to torch's own cross_entropy. The values are the same stable
(z − max z) − log Σ e^(z − max z) either way. Without label smoothing the picking of −log p_i[y_i] is torch's
nll_loss kernel too (nll_loss.py writes it out): one kernel where the indexing and masking take eleven small ones,
which at 128 x 10 cost more than the arithmetic. Only the backward is handwritten here.

NOTE: each Function's forward returns A = log softmax(Z) beside the loss (`cross_entropy` returns only the loss), the
way torch's docs save an intermediate with setup_context: backward reads softmax(Z) = e^A, as torch's own backward
does, instead of computing softmax again, which at 10 classes takes a slow path on the CPU. A saved output stays
connected to the graph through its Function, so a second derivative through backward's e^A comes back to backward as a
gradient of A (through `cross_entropy`, A's only one), which add_log_probs_grad turns into ∂L/∂Z. With
ctx.set_materialize_grads(False) the gradient of an output nothing used, the loss's included, arrives as None. (On
the Intel Xeon VM of docs/benchmarks.md: torch.softmax 13–25 µs at 128 x 10, 3.2 µs at 128 x 16; e^A 0.9 µs.)
"""
import torch

from manual_bp import _checks
from manual_bp.autograd import Function
from manual_bp.ops.nll_loss import (
    ClassIndicesCheckedByTorch,
    check_class_indices,
    check_class_loss,
    check_class_weight,
    check_ignore_index,
    check_index_target,
    class_dim,
    counted_targets,
    counted_total,
    index_shape,
    is_index_dtype,
    only_counted,
    pick_targets,
)
from manual_bp.ops.reduction import ReductionRepr, reduce_loss, upstream_scale
from manual_bp.ops.softmax import log_softmax_grad


def class_view(per_class, input, dim):
    """A per-class tensor (C,) viewed to broadcast along the class dimension of input: (1, C, 1, ..., 1)."""
    return per_class.reshape([-1 if d == dim else 1 for d in range(input.dim())])


def sample_view(per_sample, dim):
    """A per-sample tensor (N, d1, ..., dK) viewed to broadcast against input: (N, 1, d1, ..., dK); () stays ()."""
    return per_sample.unsqueeze(dim) if per_sample.dim() > 0 else per_sample


def add_log_probs_grad(grad_input, grad_log_probs, log_probs, dim):
    """∂L/∂Z plus what reaches Z through the output A = log softmax(Z): ∂L/∂A − softmax(Z)·Σ_c ∂L/∂A (log_softmax's
    derivative, softmax.py). Either may be None (no gradient)."""
    if grad_log_probs is None:
        return grad_input
    through_log_probs = log_softmax_grad(grad_log_probs, log_probs, dim)
    return through_log_probs if grad_input is None else grad_input + through_log_probs


def sample_count(input, classes):
    """The number of samples N·d1···dK of logits (N, C, d1, ..., dK): "mean"'s divisor for probability targets
    (0 when C = 0, so that "mean" of nothing is 0/0 = NaN, as torch)."""
    return input.numel() // classes if classes else 0


class CrossEntropyLossFunction(Function):
    """ℓ_i = −log softmax(z_i)[y_i] for logits z_i (C,) and a class index y_i;   ∂ℓ_i/∂z_i = softmax(z_i) − onehot(y_i).

    For "mean" over N samples ∂L/∂Z = (softmax(Z) − onehot(Y)) / N: (N, C). Logits may also be (C,) or
    (N, C, d1, ..., dK) with targets () or (N, d1, ..., dK): the class dimension is 1 (0 for (C,)).
    With class weights w, ignore_index and label smoothing ε over K = C classes (torch's arguments):
        ℓ_i = [y_i counted]·((1 − ε)·w_{y_i}·(−log p_i[y_i]) + (ε/K)·Σ_c w_c·(−log p_i[c])),   p_i = softmax(z_i),
        ∂ℓ_i/∂z_i = [y_i counted]·((1 − ε)·w_{y_i}·(p_i − onehot(y_i)) + (ε/K)·((Σ_c w_c)·p_i − w)),
    which for w = 1 is softmax(z_i) − ((1 − ε)·onehot(y_i) + ε/K). "mean" divides by Σ_i [y_i counted]·w_{y_i}
    (the count of counted targets when w is None), for both terms, as torch. Class weights get no gradient
    (torch's nll_loss is not differentiable in them). forward returns (L, log softmax(Z)) (module docstring).
    """

    @staticmethod
    def forward(input, target, reduction, weight=None, ignore_index=-100, label_smoothing=0.0):
        dim = class_dim(input.dim())
        classes = input.shape[dim]
        log_probs = torch.log_softmax(input, dim)  # (N, C, d1, ..., dK); NOTE: torch's kernel (module docstring)
        if label_smoothing == 0:
            with ClassIndicesCheckedByTorch(target, classes, ignore_index):  # NOTE: torch's kernel (docstring)
                # L = Σ_i −w_{y_i}·log p_i[y_i] (/ Σ_i w_{y_i} for "mean"), ignored targets left out:
                # (N, C, d1, ..., dK) and (N, d1, ..., dK) -> () or, for "none", (N, d1, ..., dK)
                loss = torch.nn.functional.nll_loss(log_probs, target, weight, ignore_index=ignore_index,
                                                    reduction=reduction)
            return loss, log_probs
        counted, target_weight, picked = pick_targets(log_probs, target, weight, ignore_index)  # (N, ...)
        nll = -picked  # −log p_i[y_i]
        nll = only_counted(counted, nll if weight is None else nll * target_weight)  # an ignored target costs 0
        weighted = log_probs if weight is None else log_probs * class_view(weight, input, dim)
        smooth = only_counted(counted, -weighted.sum(dim))  # −Σ_c w_c·log p_c: (N, ...)
        if reduction == "mean":
            # NOTE: each term is divided by Σ w_{y_i} on its own, as torch: all targets ignored (or their weights
            # summing to 0) then gives 0/0 = NaN even when the smoothing term alone would be x/0 = inf.
            total = counted_total(counted, target_weight)
            loss = (1 - label_smoothing) * (nll.sum() / total) + label_smoothing / classes * (smooth.sum() / total)
        else:
            loss = reduce_loss((1 - label_smoothing) * nll + label_smoothing / classes * smooth, reduction)
        return loss, log_probs

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, target, ctx.reduction, weight, ctx.ignore_index, ctx.label_smoothing = inputs
        ctx.set_materialize_grads(False)  # NOTE: no zeros for an unused output's gradient (module docstring)
        ctx.save_for_backward(target, weight, output[1])  # output[1] = log softmax(Z)

    @staticmethod
    def backward(ctx, grad_output, grad_log_probs):
        target, weight, log_probs = ctx.saved_tensors
        grad_input = None
        dim = class_dim(log_probs.dim())
        if ctx.needs_input_grad[0] and grad_output is not None:
            smoothing, classes = ctx.label_smoothing, log_probs.shape[dim]
            # NOTE: every per-sample tensor is taken as (N, 1, d1, ..., dK), which broadcasts along the classes and is
            # the shape scatter_add_ wants: one view of the targets instead of one of each per-sample result
            counted, target_index, target_weight = counted_targets(target.unsqueeze(dim), weight, ctx.ignore_index)
            # NOTE: divided by Σ w_{y_i} as it is, as in nll_loss.py (every weight 0: NaN; every target ignored: 0)
            count = counted_total(counted, target_weight) if ctx.reduction == "mean" else 1
            upstream = upstream_scale(sample_view(grad_output, dim), ctx.reduction, count)
            scale = only_counted(counted, upstream)  # ∂L/∂ℓ_i: (N, 1, d1, ..., dK)
            probs = log_probs.exp()  # softmax(Z) = e^(log softmax Z): (N, C, d1, ..., dK)
            nll_scale = scale if weight is None else scale * target_weight  # w_{y_i}·∂L/∂ℓ_i
            # ∂L/∂Z = (softmax(Z) − onehot(Y)) ⊙ ∂L/∂ℓ: the softmax term everywhere, then −∂L/∂ℓ_i added at class y_i
            # NOTE: scatter_add_ subtracts at the target class in place of building onehot(Y) (arange, compare, cast,
            # subtract: four full-size passes); mathematically the same (p·s − s at the target, rounded as torch's
            # log-softmax backward rounds it). In place on a product, which autograd does not save.
            grad_input = probs * nll_scale  # (N, C, d1, ..., dK) ⊙ (N, 1, d1, ..., dK) -> (N, C, d1, ..., dK)
            grad_input.scatter_add_(dim, target_index, -nll_scale)
            if smoothing > 0:
                if weight is None:
                    uniform = probs * classes - 1  # (Σ_c 1)·p − 1
                else:
                    uniform = probs * weight.sum() - class_view(weight, log_probs, dim)  # (Σ_c w_c)·p − w
                smooth = uniform * scale
                grad_input = (1 - smoothing) * grad_input + smoothing / classes * smooth
        if ctx.needs_input_grad[0]:
            grad_input = add_log_probs_grad(grad_input, grad_log_probs, log_probs, dim)
        return grad_input, None, None, None, None, None


class CrossEntropyProbsLossFunction(Function):
    """Cross-entropy against class probabilities t_i (a float target of the input's shape), torch's soft targets:

        q_i = ((1 − ε)·t_i + ε/K)·w (smoothing ε over K = C classes, class weights w; 1 when None),
        ℓ_i = −Σ_c q_ic·log p_ic,   ∂ℓ_i/∂z_i = (Σ_c q_ic)·p_i − q_i,   p_i = softmax(z_i),
        ∂ℓ_i/∂t_ic = −(1 − ε)·w_c·log p_ic,   ∂ℓ_i/∂w_c = −((1 − ε)·t_ic + ε/K)·log p_ic.

    "mean" divides by the number of samples N·d1···dK, not by Σw (unlike class-index targets), as torch.
    forward returns (L, log softmax(Z)) (module docstring).
    """

    @staticmethod
    def forward(input, target, reduction, weight=None, label_smoothing=0.0):
        dim = class_dim(input.dim())
        classes = input.shape[dim]
        log_probs = torch.log_softmax(input, dim)  # (N, C, d1, ..., dK); NOTE: torch's kernel (module docstring)
        mixed = target if label_smoothing == 0 else target * (1 - label_smoothing) + label_smoothing / classes
        weighted = log_probs * mixed if weight is None else log_probs * mixed * class_view(weight, input, dim)
        loss = -weighted.sum(dim)  # (N, d1, ..., dK)
        if reduction == "mean":
            return loss.sum() / sample_count(input, classes), log_probs  # NOTE: no samples: 0/0 = NaN, as torch
        return reduce_loss(loss, reduction), log_probs

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, target, ctx.reduction, weight, ctx.label_smoothing = inputs
        ctx.set_materialize_grads(False)  # NOTE: no zeros for an unused output's gradient (module docstring)
        ctx.save_for_backward(target, weight, output[1])  # output[1] = log softmax(Z)

    @staticmethod
    def backward(ctx, grad_output, grad_log_probs):
        target, weight, log_probs = ctx.saved_tensors  # log_probs = log softmax(Z): (N, C, d1, ..., dK)
        grad_input = grad_target = grad_weight = None
        dim, smoothing = class_dim(log_probs.dim()), ctx.label_smoothing
        if grad_output is not None:
            classes = log_probs.shape[dim]
            count = sample_count(log_probs, classes)
            scale = sample_view(upstream_scale(grad_output, ctx.reduction, count), dim)  # ∂L/∂ℓ_i
            per_class = 1 if weight is None else class_view(weight, log_probs, dim)  # w: (1, C, 1, ..., 1)
            mixed = target if smoothing == 0 else target * (1 - smoothing) + smoothing / classes  # (1 − ε)t + ε/K
            if ctx.needs_input_grad[0]:
                q = mixed * per_class
                # ∂ℓ/∂z = (Σ_c q_c)·softmax(z) − q, softmax(z) = e^(log softmax z)
                grad_input = (q.sum(dim, keepdim=True) * log_probs.exp() - q) * scale
            if ctx.needs_input_grad[1]:
                grad_target = -(1 - smoothing) * per_class * log_probs * scale  # ∂ℓ/∂t_c = −(1 − ε)·w_c·log p_c
            if ctx.needs_input_grad[3]:
                per_element = -(mixed * log_probs * scale)  # ∂ℓ/∂w_c = −((1 − ε)t_c + ε/K)·log p_c
                grad_weight = per_element.sum_to_size(per_class.shape).reshape(weight.shape)  # Σ over samples: (C,)
        if ctx.needs_input_grad[0]:
            grad_input = add_log_probs_grad(grad_input, grad_log_probs, log_probs, dim)
        return grad_input, grad_target, None, grad_weight, None


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean",
                  label_smoothing=0.0):
    """Softmax cross-entropy over the class dimension of logits (C,), (N, C) or (N, C, d1, ..., dK).

    target: class indices of shape (), (N,) or (N, d1, ..., dK) in [0, C) or = ignore_index, or class
    probabilities (a float tensor of the input's shape). weight: (C,) per-class weights. label_smoothing in [0, 1].
    """
    check_class_loss(input, target, size_average, reduce, reduction)
    ignore_index = check_ignore_index(ignore_index)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    check_class_weight(weight, input)
    if target.is_floating_point() and target.shape == input.shape:
        return _cross_entropy_probs(input, target, weight, ignore_index, reduction, label_smoothing)
    if not is_index_dtype(target):
        raise TypeError(
            f"target must hold class indices (an integer tensor of shape {tuple(index_shape(input))}) or class "
            f"probabilities (a floating-point tensor of the input's shape {tuple(input.shape)}), got dtype "
            f"{target.dtype} and shape {tuple(target.shape)}"
        )
    check_index_target(input, target)
    if weight is not None:
        _checks.check_constant("weight", weight)
    check_class_indices(target, input.shape[class_dim(input.dim())], ignore_index)
    return CrossEntropyLossFunction.apply(input, target.long(), reduction, weight, ignore_index, label_smoothing)[0]


def _cross_entropy_probs(input, target, weight, ignore_index, reduction, label_smoothing):
    _checks.check_same_dtype_and_device("target", target, "input", input)
    if ignore_index >= 0:
        # NOTE: as torch: a class ignore_index (>= 0) is refused with probabilities, a negative one has no effect.
        raise ValueError(f"ignore_index is not supported with class-probability targets (a float target of the "
                         f"input's shape), got ignore_index={ignore_index}")
    _checks.check_in_unit_interval("target", target)
    return CrossEntropyProbsLossFunction.apply(input, target, reduction, weight, label_smoothing)[0]


class CrossEntropyLoss(ReductionRepr, torch.nn.CrossEntropyLoss):
    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean",
                 label_smoothing=0.0):
        super().__init__(weight, size_average, ignore_index, reduce, reduction, label_smoothing)
        self._check_reduction()

    def forward(self, input, target):
        return cross_entropy(input, target, self.weight, ignore_index=self.ignore_index, reduction=self.reduction,
                             label_smoothing=self.label_smoothing)
