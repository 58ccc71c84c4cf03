"""The losses as autograd Functions whose backward is the derivative of the loss, written by hand.

Ŷ = input, Y = target, ℓ the per-element loss; reduction "sum" gives L = Σℓ, "mean" L = Σℓ / N (N elements,
or N samples for cross-entropy), "none" returns ℓ itself. The backward scales ∂ℓ/∂Ŷ by the upstream gradient:
1 for "sum", 1/N for "mean", elementwise for "none".
"""
import torch

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


class MSELossFunction(torch.autograd.Function):
    """ℓ = (ŷ − y)²;   ∂ℓ/∂ŷ = 2(ŷ − y), so for "mean" ∂L/∂ŷ = 2(ŷ − y)/N;   ∂ℓ/∂y = −∂ℓ/∂ŷ.

    The lecture's E = ½ Σ (ŷ − y)² is ½ · mse_loss(ŷ, y, reduction="sum"); the ½ is there so that ∂E/∂ŷ = ŷ − y.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input, target, reduction):
        return reduce_loss((input - target).square(), reduction)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, target, ctx.reduction = inputs
        # NOTE: ŷ and y are saved, not ŷ − y: a tensor made inside forward would cut double backward from ŷ.
        ctx.save_for_backward(input, target)

    @staticmethod
    def backward(ctx, grad_output):
        input, target = ctx.saved_tensors
        grad = 2 * (input - target) * upstream_scale(grad_output, ctx.reduction, input.numel())  # 2(ŷ − y)/N
        grad_input = grad if ctx.needs_input_grad[0] else None
        grad_target = -grad if ctx.needs_input_grad[1] else None
        return grad_input, grad_target, None


class BCELossFunction(torch.autograd.Function):
    """ℓ = −[y·log ŷ + (1 − y)·log(1 − ŷ)];   ∂ℓ/∂ŷ = (ŷ − y) / (ŷ(1 − ŷ));   ∂ℓ/∂y = log(1 − ŷ) − log ŷ."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input, target, reduction):
        log_p = torch.log(input).clamp(min=LOG_CLAMP)  # NOTE: log 0 = −inf clamped to −100, as torch
        log_one_minus_p = torch.log1p(-input).clamp(min=LOG_CLAMP)
        return reduce_loss(-(target * log_p + (1 - target) * log_one_minus_p), reduction)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, target, ctx.reduction = inputs
        ctx.save_for_backward(input, target)

    @staticmethod
    def backward(ctx, grad_output):
        input, target = ctx.saved_tensors
        scale = upstream_scale(grad_output, ctx.reduction, input.numel())
        grad_input = grad_target = None
        if ctx.needs_input_grad[0]:
            # NOTE: the denominator is clamped at 1e-12 (torch's EPSILON) so ŷ = 0 or 1 gives a finite gradient.
            grad_input = (input - target) / (input * (1 - input)).clamp(min=BCE_GRAD_EPS) * scale  # (ŷ − y)/(ŷ(1 − ŷ))
        if ctx.needs_input_grad[1]:
            # NOTE: the derivative of the clamped forward, so ±100 at ŷ = 0 or 1 (torch returns ±inf there).
            log_ratio = torch.log1p(-input).clamp(min=LOG_CLAMP) - torch.log(input).clamp(min=LOG_CLAMP)
            grad_target = log_ratio * scale  # ∂ℓ/∂y = log(1 − ŷ) − log ŷ
        return grad_input, grad_target, None


class BCEWithLogitsLossFunction(torch.autograd.Function):
    """ℓ = BCE(σ(z), y) = (1 − y)·z + log(1 + e^(−z));   ∂ℓ/∂z = σ(z) − y (so (σ(z) − y)/N for "mean");   ∂ℓ/∂y = −z."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input, target, reduction):
        # NOTE: stable form max(z, 0) − z·y + log(1 + e^(−|z|)): e^(−|z|) ≤ 1 never overflows, and log σ(z) is never
        # log 0, which is why fusing the sigmoid into the loss is better than BCE(σ(z)) for large |z|.
        loss = input.clamp(min=0) - input * target + torch.log1p(torch.exp(-input.abs()))
        return reduce_loss(loss, reduction)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, target, ctx.reduction = inputs
        ctx.save_for_backward(input, target)

    @staticmethod
    def backward(ctx, grad_output):
        input, target = ctx.saved_tensors
        scale = upstream_scale(grad_output, ctx.reduction, input.numel())
        grad_input = (torch.sigmoid(input) - target) * scale if ctx.needs_input_grad[0] else None  # σ(z) − y
        grad_target = -input * scale if ctx.needs_input_grad[1] else None  # ∂ℓ/∂y = −z
        return grad_input, grad_target, None


class CrossEntropyLossFunction(torch.autograd.Function):
    """ℓ_i = −log softmax(z_i)[y_i] for logits z_i (C,) and a class index y_i;   ∂ℓ_i/∂z_i = softmax(z_i) − onehot(y_i).

    For "mean" over N samples ∂L/∂Z = (softmax(Z) − onehot(Y)) / N: (N, C).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input, target, reduction):
        # NOTE: log softmax as (z − max z) − log Σ e^(z − max z): shifting by the max keeps e^(·) ≤ 1 (no overflow at
        # logits of 1e4), and subtracting the max before the log-sum keeps float32 digits that z − logsumexp(z) loses.
        shifted = input - input.amax(dim=-1, keepdim=True)  # (N, C)
        log_probs = shifted - shifted.exp().sum(dim=-1, keepdim=True).log()  # (N, C)
        loss = -log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)  # (N, C) -> (N,)
        return reduce_loss(loss, reduction)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, target, ctx.reduction = inputs
        # NOTE: the logits are saved and softmax recomputed in backward, not saved from forward: a tensor made in
        # forward is not connected to the graph and would make the second derivative wrong.
        ctx.save_for_backward(input, target)

    @staticmethod
    def backward(ctx, grad_output):
        input, target = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None
        scale = upstream_scale(grad_output, ctx.reduction, target.numel())
        classes = torch.arange(input.shape[-1], device=input.device)
        onehot = (target.unsqueeze(-1) == classes).to(input.dtype)  # (N, 1) == (C,) -> (N, C)
        probs = torch.softmax(input, dim=-1)  # (N, C)
        return (probs - onehot) * scale.unsqueeze(-1), None, None  # ∂L/∂Z = (softmax(Z) − onehot(Y)) ⊙ ∂L/∂ℓ


# ------------------------------------------------------------------------------ the next lecture's losses


def nll_sample_weights(target, weight, ignore_index, dtype):
    """w_{y_i} for each counted target, 0 for a target equal to ignore_index: (N, d1, ...)."""
    counted = target != ignore_index
    if weight is None:
        return counted.to(dtype)
    return weight[target.where(counted, 0)] * counted  # NOTE: an ignored index is read as class 0, then zeroed


class NLLLossFunction(torch.autograd.Function):
    """ℓ_i = −w_{y_i}·x_{i, y_i} for log-probabilities x_i (C,), a class index y_i and class weights w (1 if None);
    ℓ_i = 0 where y_i = ignore_index. "mean" divides Σℓ by Σ_i w_{y_i} over the counted targets (not by N).

    ∂ℓ_i/∂x_{i,c} = −w_{y_i}·1[c = y_i], so for "mean" ∂L/∂X = −onehot(Y) ⊙ w_Y / Σ w_Y.
    Input (N, C), (C,) or (N, C, d1, ...), the classes in dim 1 (dim 0 for (C,)), as torch.nn.functional.nll_loss.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input, target, weight, ignore_index, reduction):
        class_dim = 0 if input.dim() == 1 else 1
        # NOTE: gather needs a valid index, so an ignored target is read at class 0; its weight 0 drops it.
        index = target.where(target != ignore_index, 0).unsqueeze(class_dim)  # (N, 1, d1, ...)
        picked = input.gather(class_dim, index).squeeze(class_dim)  # x_{i, y_i}: (N, C, d1, ...) -> (N, d1, ...)
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
