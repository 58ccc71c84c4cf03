"""The losses as autograd Functions whose backward is the derivative of the loss, written by hand.

Ŷ = input, Y = target, ℓ the per-element loss; reduction "sum" gives L = Σℓ, "mean" L = Σℓ / N (N elements,
or N samples for cross-entropy), "none" returns ℓ itself. The backward scales ∂ℓ/∂Ŷ by the upstream gradient:
1 for "sum", 1/N for "mean", elementwise for "none".
"""
import torch

from manual_bp.autograd import Function

# NOTE: torch.nn.functional.binary_cross_entropy clamps each log at −100 (so ŷ = 0 or 1 costs 100, not inf) and
# divides its gradient by max(ŷ(1 − ŷ), 1e-12); the same constants here make the edge values match torch exactly.
LOG_CLAMP = -100.0
BCE_GRAD_EPS = 1e-12


def reduce_loss(loss, reduction):
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()


def upstream_scale(grad_output, reduction, count):
    """∂L/∂ℓ for each element: the upstream gradient, divided by N for "mean"."""
    return grad_output / count if reduction == "mean" else grad_output


def weighted_upstream(derivative, grad_output, weight, reduction, count):
    """∂L/∂x = ∂ℓ₀/∂x · g · w (w = weight, or 1), then / N for "mean": the BCE losses' backward (ℓ = w·ℓ₀).

    NOTE: with a weight, multiplied in the order of torch's backward for these losses, which runs as separate
    half-precision ops: in float16 / bfloat16 each product rounds, and the same order rounds the same way (another
    order differs from torch by several ulp where a product is small). Without one, ∂ℓ₀ · (g/N): one full-size
    product fewer.
    """
    if weight is None:
        return derivative * upstream_scale(grad_output, reduction, count)
    grad = derivative * grad_output * weight
    return grad / count if reduction == "mean" else grad


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
        # N, or Σw when weighted (NOTE: an empty input has nothing to scale; max(·, 1) keeps Python from 2/0)
        count = max(input.numel(), 1) if weight is None else weight.sum()
        # NOTE: (ŷ − y)·(g·2/N): the 2 and 1/N join the upstream scalar, so the full-size work is one subtraction
        # and one product (torch's kernel makes three full-size passes, ((ŷ − y)·2/N)·g, and rounds once more)
        twice_scale = grad_output * (2 / count) if ctx.reduction == "mean" else 2 * grad_output
        difference = input - target
        grad = difference * twice_scale  # 2(ŷ − y)/N
        if weight is not None:
            grad = grad * weight  # 2w(ŷ − y)/Σw
        grad_input = grad if ctx.needs_input_grad[0] else None
        grad_target = -grad if ctx.needs_input_grad[1] else None
        grad_weight = None
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


def class_dim(input):
    """The class dimension of logits (C,), (N, C) or (N, C, d1, ..., dK): 0 for (C,), else 1."""
    return 0 if input.dim() == 1 else 1


def class_view(per_class, input, dim):
    """A per-class tensor (C,) viewed to broadcast along the class dimension of input: (1, C, 1, ..., 1)."""
    return per_class.reshape([-1 if d == dim else 1 for d in range(input.dim())])


def sample_view(per_sample, dim):
    """A per-sample tensor (N, d1, ..., dK) viewed to broadcast against input: (N, 1, d1, ..., dK); () stays ()."""
    return per_sample.unsqueeze(dim) if per_sample.dim() > 0 else per_sample


def log_softmax(input, dim):
    # NOTE: torch's fused kernel (one pass instead of six small ops), which computes the stable form
    # (z − max z) − log Σ e^(z − max z): shifting by the max keeps e^(·) ≤ 1 (no overflow at logits of 1e4), and
    # subtracting it before the log-sum keeps float32 digits that z − logsumexp(z) loses. The form written out in
    # small ops, with its own handwritten backward, is LogSoftmaxFunction (functions.py).
    return torch.log_softmax(input, dim)


def counted_targets(target, weight, ignore_index):
    """(counted, safe target, weight of each target): the class-index bookkeeping forward and backward share.

    NOTE: an ignored target (= ignore_index, which may lie outside [0, C)) is replaced by class 0 before any
    indexing and masked out afterwards with `where`, never multiplied by 0: 0·inf would be NaN. ignore_index=None
    says the caller has seen every target and none is ignored (functional.cross_entropy's value check): then
    counted is None and no mask is built, which keeps the plain loss as cheap as before the argument existed.
    """
    counted = None if ignore_index is None else target != ignore_index  # (N, d1, ..., dK) bool
    safe_target = target if counted is None else torch.where(counted, target, 0)
    target_weight = None if weight is None else weight[safe_target]  # w_{y_i}: (N, d1, ..., dK)
    return counted, safe_target, target_weight


def only_counted(counted, per_sample):
    """per_sample with 0 where the target is ignored."""
    return per_sample if counted is None else torch.where(counted, per_sample, 0)


def counted_total(counted, target, target_weight):
    """The "mean" denominator of class-index cross-entropy: Σ_i w_{y_i} over counted targets (their number if no w)."""
    if target_weight is None:
        return target.numel() if counted is None else counted.sum()
    return only_counted(counted, target_weight).sum()


class CrossEntropyLossFunction(Function):
    """ℓ_i = −log softmax(z_i)[y_i] for logits z_i (C,) and a class index y_i;   ∂ℓ_i/∂z_i = softmax(z_i) − onehot(y_i).

    For "mean" over N samples ∂L/∂Z = (softmax(Z) − onehot(Y)) / N: (N, C). Logits may also be (C,) or
    (N, C, d1, ..., dK) with targets () or (N, d1, ..., dK): the class dimension is 1 (0 for (C,)).
    With class weights w, ignore_index and label smoothing ε over K = C classes (torch's arguments):
        ℓ_i = [y_i counted]·((1 − ε)·w_{y_i}·(−log p_i[y_i]) + (ε/K)·Σ_c w_c·(−log p_i[c])),   p_i = softmax(z_i),
        ∂ℓ_i/∂z_i = [y_i counted]·((1 − ε)·w_{y_i}·(p_i − onehot(y_i)) + (ε/K)·((Σ_c w_c)·p_i − w)),
    which for w = 1 is softmax(z_i) − ((1 − ε)·onehot(y_i) + ε/K). "mean" divides by Σ_i [y_i counted]·w_{y_i}
    (the count of counted targets when w is None), for both terms, as torch. Class weights get no gradient
    (torch's nll_loss is not differentiable in them).
    """

    @staticmethod
    def forward(input, target, reduction, weight=None, ignore_index=-100, label_smoothing=0.0):
        dim = class_dim(input)
        log_probs = log_softmax(input, dim)  # (N, C, d1, ..., dK)
        counted, safe_target, target_weight = counted_targets(target, weight, ignore_index)
        nll = -log_probs.gather(dim, safe_target.unsqueeze(dim)).squeeze(dim)  # (N, C, ...) -> (N, ...)
        nll = only_counted(counted, nll if weight is None else nll * target_weight)  # an ignored target costs 0
        if label_smoothing > 0:
            weighted = log_probs if weight is None else log_probs * class_view(weight, input, dim)
            smooth = only_counted(counted, -weighted.sum(dim))  # −Σ_c w_c·log p_c: (N, ...)
        if reduction == "mean" and (counted is not None or weight is not None):
            # NOTE: each term is divided by Σ w_{y_i} on its own, as torch: all targets ignored (or their weights
            # summing to 0) then gives 0/0 = NaN even when the smoothing term alone would be x/0 = inf.
            total = counted_total(counted, target, target_weight)
            if label_smoothing == 0:
                return nll.sum() / total
            return (1 - label_smoothing) * (nll.sum() / total) + label_smoothing / input.shape[dim] * (smooth.sum() / total)
        loss = nll if label_smoothing == 0 else (1 - label_smoothing) * nll + label_smoothing / input.shape[dim] * smooth
        return reduce_loss(loss, reduction)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, target, ctx.reduction, weight, ctx.ignore_index, ctx.label_smoothing = inputs
        # NOTE: the logits are saved and softmax recomputed in backward, not saved from forward: a tensor made in
        # forward is not connected to the graph and would make the second derivative wrong.
        ctx.save_for_backward(input, target, weight)

    @staticmethod
    def backward(ctx, grad_output):
        input, target, weight = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None, None
        dim, smoothing = class_dim(input), ctx.label_smoothing
        counted, safe_target, target_weight = counted_targets(target, weight, ignore_index=ctx.ignore_index)
        count = counted_total(counted, target, target_weight) if ctx.reduction == "mean" else 1
        scale = only_counted(counted, upstream_scale(grad_output, ctx.reduction, count))  # ∂L/∂ℓ_i: (N, ...)
        probs = torch.softmax(input, dim=dim)  # (N, C, d1, ..., dK)
        nll_scale = sample_view(scale if weight is None else scale * target_weight, dim)  # w_{y_i}·∂L/∂ℓ_i
        # ∂L/∂Z = (softmax(Z) − onehot(Y)) ⊙ ∂L/∂ℓ: the softmax term everywhere, then −∂L/∂ℓ_i added at class y_i
        # NOTE: scatter_add_ subtracts at the target class in place of building onehot(Y) (arange, compare, cast,
        # subtract: four full-size passes); mathematically the same (p·s − s at the target, rounded as torch's
        # log-softmax backward rounds it). In place on a product, which autograd does not save.
        grad_input = probs * nll_scale  # (N, C, d1, ..., dK) ⊙ (N, 1, d1, ..., dK) or () -> (N, C, d1, ..., dK)
        target_index = safe_target.unsqueeze(dim)  # (N, 1, d1, ..., dK)
        grad_input.scatter_add_(dim, target_index, (-nll_scale).expand(target_index.shape))
        if smoothing > 0:
            if weight is None:
                uniform = probs * input.shape[dim] - 1  # (Σ_c 1)·p − 1
            else:
                uniform = probs * weight.sum() - class_view(weight, input, dim)  # (Σ_c w_c)·p − w
            smooth = uniform * sample_view(scale, dim)
            grad_input = (1 - smoothing) * grad_input + smoothing / input.shape[dim] * smooth
        return grad_input, None, None, None, None, None


class CrossEntropyProbsLossFunction(Function):
    """Cross-entropy against class probabilities t_i (a float target of the input's shape), torch's soft targets:

        q_i = ((1 − ε)·t_i + ε/K)·w (smoothing ε over K = C classes, class weights w; 1 when None),
        ℓ_i = −Σ_c q_ic·log p_ic,   ∂ℓ_i/∂z_i = (Σ_c q_ic)·p_i − q_i,   p_i = softmax(z_i),
        ∂ℓ_i/∂t_ic = −(1 − ε)·w_c·log p_ic,   ∂ℓ_i/∂w_c = −((1 − ε)·t_ic + ε/K)·log p_ic.

    "mean" divides by the number of samples N·d1···dK, not by Σw (unlike class-index targets), as torch.
    """

    @staticmethod
    def forward(input, target, reduction, weight=None, label_smoothing=0.0):
        dim, classes = class_dim(input), input.shape[class_dim(input)]
        log_probs = log_softmax(input, dim)  # (N, C, d1, ..., dK)
        mixed = target if label_smoothing == 0 else target * (1 - label_smoothing) + label_smoothing / classes
        weighted = log_probs * mixed if weight is None else log_probs * mixed * class_view(weight, input, dim)
        loss = -weighted.sum(dim)  # (N, d1, ..., dK)
        if reduction == "mean":
            return loss.sum() / (input.numel() // classes if classes else 0)  # NOTE: no samples: 0/0 = NaN, as torch
        return reduce_loss(loss, reduction)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, target, ctx.reduction, weight, ctx.label_smoothing = inputs
        ctx.save_for_backward(input, target, weight)

    @staticmethod
    def backward(ctx, grad_output):
        input, target, weight = ctx.saved_tensors
        dim, smoothing = class_dim(input), ctx.label_smoothing
        classes = input.shape[dim]
        samples = input.numel() // classes if classes else 0
        scale = sample_view(upstream_scale(grad_output, ctx.reduction, samples), dim)  # ∂L/∂ℓ_i
        per_class = 1 if weight is None else class_view(weight, input, dim)  # w: (1, C, 1, ..., 1)
        mixed = target if smoothing == 0 else target * (1 - smoothing) + smoothing / classes  # (1 − ε)t + ε/K
        grad_input = grad_target = grad_weight = None
        if ctx.needs_input_grad[0]:
            q = mixed * per_class
            # ∂ℓ/∂z = (Σ_c q_c)·softmax(z) − q
            grad_input = (q.sum(dim, keepdim=True) * torch.softmax(input, dim=dim) - q) * scale
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[3]:
            log_probs = log_softmax(input, dim)
            if ctx.needs_input_grad[1]:
                grad_target = -(1 - smoothing) * per_class * log_probs * scale  # ∂ℓ/∂t_c = −(1 − ε)·w_c·log p_c
            if ctx.needs_input_grad[3]:
                per_element = -(mixed * log_probs * scale)  # ∂ℓ/∂w_c = −((1 − ε)t_c + ε/K)·log p_c
                grad_weight = per_element.sum_to_size(per_class.shape).reshape(weight.shape)  # Σ over samples: (C,)
        return grad_input, grad_target, None, grad_weight, None


# ------------------------------------------------------------------------------ the next lecture's losses


def nll_sample_weights(target, weight, ignore_index, dtype):
    """w_{y_i} for each counted target, 0 for a target equal to ignore_index: (N, d1, ...)."""
    counted = target != ignore_index
    if weight is None:
        return counted.to(dtype)
    return weight[target.where(counted, 0)] * counted  # NOTE: an ignored index is read as class 0, then zeroed


class NLLLossFunction(Function):
    """ℓ_i = −w_{y_i}·x_{i, y_i} for log-probabilities x_i (C,), a class index y_i and class weights w (1 if None);
    ℓ_i = 0 where y_i = ignore_index. "mean" divides Σℓ by Σ_i w_{y_i} over the counted targets (not by N).

    ∂ℓ_i/∂x_{i,c} = −w_{y_i}·1[c = y_i], so for "mean" ∂L/∂X = −onehot(Y) ⊙ w_Y / Σ w_Y.
    Input (N, C), (C,) or (N, C, d1, ...), the classes in dim 1 (dim 0 for (C,)), as torch.nn.functional.nll_loss.
    """

    @staticmethod
    def forward(input, target, weight, ignore_index, reduction):
        dim = class_dim(input)
        # NOTE: gather needs a valid index, so an ignored target is read at class 0; its weight 0 drops it.
        index = target.where(target != ignore_index, 0).unsqueeze(dim)  # (N, 1, d1, ...)
        picked = input.gather(dim, index).squeeze(dim)  # x_{i, y_i}: (N, C, d1, ...) -> (N, d1, ...)
        sample_weights = nll_sample_weights(target, weight, ignore_index, input.dtype)
        loss = -picked * sample_weights
        if reduction == "none":
            return loss
        # NOTE: every target ignored gives 0/0 = nan for "mean", as torch
        return loss.sum() if reduction == "sum" else loss.sum() / sample_weights.sum()

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, target, weight, ctx.ignore_index, ctx.reduction = inputs
        ctx.input_shape = input.shape  # NOTE: the derivative does not depend on x's values, only on where it lies
        ctx.save_for_backward(target, weight)

    @staticmethod
    def backward(ctx, grad_output):
        target, weight = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        class_dim = 0 if len(ctx.input_shape) == 1 else 1
        sample_weights = nll_sample_weights(target, weight, ctx.ignore_index, grad_output.dtype)
        grad_loss = grad_output
        if ctx.reduction == "mean":
            total = sample_weights.sum()
            # NOTE: with every weight 0 the loss is nan but torch's gradient is 0; every numerator is 0 then, so
            # dividing by 1 instead of 0 gives exactly that.
            grad_loss = grad_output / torch.where(total == 0, torch.ones_like(total), total)
        grad_picked = -sample_weights * grad_loss  # ∂L/∂x_{i, y_i} = −w_{y_i} ⊙ ∂L/∂ℓ_i: (N, d1, ...)
        index = target.where(target != ctx.ignore_index, 0).unsqueeze(class_dim)
        # ∂L/∂X = −onehot(Y) ⊙ w_Y ⊙ ∂L/∂ℓ: the gradient lands on the target class only
        grad_input = grad_output.new_zeros(ctx.input_shape).scatter(class_dim, index, grad_picked.unsqueeze(class_dim))
        return grad_input, None, None, None, None
