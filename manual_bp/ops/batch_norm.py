"""Batch norm of input (N, C) or (N, C, L) per channel C: training (this batch's statistics) and eval (running ones).

The notation and the shared arithmetic (normalize, normalized_grad_input) are layer_norm.py's. The running
statistics are not part of the Functions: `batch_norm` updates them under no_grad (they receive no gradient), and
in eval mode they are constants for BatchNormEvalFunction.
"""
import torch

from manual_bp import _checks
from manual_bp.autograd import Function
from manual_bp.ops.layer_norm import affine, cast_like, normalize, normalized_grad_input, upcast_all


def channel_shape(input):
    """(1, C) or (1, C, 1): γ, β and per-channel statistics of shape (C,) broadcast over an (N, C[, L]) input."""
    return (1, -1) + (1,) * (input.dim() - 2)


def batch_dims(input):
    """The dims batch norm averages over: all but the channel dim 1, i.e. N (and L)."""
    return (0, *range(2, input.dim()))


class BatchNormFunction(Function):
    """Training-mode batch norm of input (N, C) or (N, C, L) with the statistics of this batch, per channel.

    ∂L/∂x = (1/N)·γ/√(σ² + ε)·(N·∂L/∂y − Σ∂L/∂y − x̂·Σ(∂L/∂y ⊙ x̂)),   ∂L/∂γ = Σ ∂L/∂y ⊙ x̂,   ∂L/∂β = Σ ∂L/∂y
    (sums over the N·L values of a channel).
    """

    @staticmethod
    def forward(input, weight, bias, eps):
        x, weight, bias = upcast_all(input, weight, bias)
        x_hat, _ = normalize(x, batch_dims(x), eps)  # (N, C[, L])
        shape = channel_shape(x)
        weight, bias = (None if t is None else t.view(shape) for t in (weight, bias))  # (C,) -> (1, C[, 1])
        return affine(x_hat, weight, bias).to(input.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, weight, _, ctx.eps = inputs
        ctx.save_for_backward(input, weight)  # NOTE: x̂ recomputed in backward, as in LayerNormFunction

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        grad_input = grad_weight = grad_bias = None
        x, gamma, grad_y = upcast_all(input, weight, grad_output)
        dims, shape = batch_dims(x), channel_shape(x)
        x_hat, inv_std = normalize(x, dims, ctx.eps)  # (N, C[, L]), (1, C[, 1])
        if ctx.needs_input_grad[0]:
            grad_x_hat = grad_y if gamma is None else grad_y * gamma.view(shape)  # ∂L/∂x̂ = ∂L/∂y ⊙ γ
            grad_input = cast_like(normalized_grad_input(grad_x_hat, x_hat, inv_std, dims), input)
        if ctx.needs_input_grad[1]:
            grad_weight = cast_like((grad_y * x_hat).sum(dim=dims), weight)  # ∂L/∂γ = Σ ∂L/∂y ⊙ x̂: -> (C,)
        if ctx.needs_input_grad[2]:
            grad_bias = cast_like(grad_y.sum(dim=dims), grad_output)  # ∂L/∂β = Σ ∂L/∂y: (N, C[, L]) -> (C,)
        return grad_input, grad_weight, grad_bias, None


class BatchNormEvalFunction(Function):
    """Eval-mode batch norm: x̂ = (x − μ_run)/√(σ²_run + ε) with the running statistics as constants.

    ∂L/∂x = ∂L/∂y ⊙ γ/√(σ²_run + ε),   ∂L/∂γ = Σ ∂L/∂y ⊙ x̂,   ∂L/∂β = Σ ∂L/∂y.
    μ_run and σ²_run do not depend on x, so there are no paths through the mean and variance: a per-channel affine map.
    """

    @staticmethod
    def forward(input, running_mean, running_var, weight, bias, eps):
        x, running_mean, running_var, weight, bias = upcast_all(input, running_mean, running_var, weight, bias)
        shape = channel_shape(x)
        inv_std = torch.rsqrt(running_var + eps).view(shape)  # (1, C[, 1])
        x_hat = (x - running_mean.view(shape)) * inv_std
        weight, bias = (None if t is None else t.view(shape) for t in (weight, bias))  # (C,) -> (1, C[, 1])
        return affine(x_hat, weight, bias).to(input.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, running_mean, running_var, weight, _, ctx.eps = inputs
        needs_grad_input, needs_grad_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[3]
        # NOTE: x is needed only for ∂L/∂γ (through x̂), γ only for ∂L/∂x; the statistics are buffers, saved by
        # reference (a buffer updated in place before this backward runs makes autograd raise, as it should).
        ctx.save_for_backward(input if needs_grad_weight else None, running_mean, running_var,
                              weight if needs_grad_input else None)

    @staticmethod
    def backward(ctx, grad_output):
        input, running_mean, running_var, weight = ctx.saved_tensors
        grad_input = grad_weight = grad_bias = None
        x, mean, var, gamma, grad_y = upcast_all(input, running_mean, running_var, weight, grad_output)
        dims, shape = batch_dims(grad_y), channel_shape(grad_y)
        inv_std = torch.rsqrt(var + ctx.eps).view(shape)  # (1, C[, 1])
        if ctx.needs_input_grad[0]:
            scale = inv_std if gamma is None else inv_std * gamma.view(shape)
            grad_input = cast_like(grad_y * scale, grad_output)  # ∂L/∂x = ∂L/∂y ⊙ γ/√(σ²_run + ε)
        if ctx.needs_input_grad[3]:
            x_hat = (x - mean.view(shape)) * inv_std
            grad_weight = cast_like((grad_y * x_hat).sum(dim=dims), weight)  # ∂L/∂γ = Σ ∂L/∂y ⊙ x̂: -> (C,)
        if ctx.needs_input_grad[4]:
            grad_bias = cast_like(grad_y.sum(dim=dims), grad_output)  # ∂L/∂β = Σ ∂L/∂y: (N, C[, L]) -> (C,)
        return grad_input, None, None, grad_weight, grad_bias, None


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-05):
    """Batch norm of input (N, C, *) per channel C: with this batch's μ, σ² when training (or when there are no
    running statistics), else with running_mean, running_var. Training with running statistics updates them in
    place, as torch: r ← (1 − momentum)·r + momentum·s, with the unbiased batch variance in running_var.

    momentum may also be a 0-d tensor (BatchNorm1d(momentum=None) passes 1/num_batches_tracked that way, so the
    cumulative average needs no Python float of a tensor and compiles with fullgraph=True).
    """
    _checks.check_floating("input", input)
    if input.dim() < 2:
        raise ValueError(f"input must have shape (N, C) or (N, C, L), got shape {tuple(input.shape)}")
    channels = input.shape[1]
    for name, tensor in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                         ("bias", bias)):
        _checks.check_per_channel(name, tensor, channels, input)
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var must both be tensors or both be None, got "
                         f"{type(running_mean).__name__} and {type(running_var).__name__}")
    if not training and running_mean is None:
        raise ValueError("running_mean and running_var must be given when training=False (eval mode normalises "
                         "with them); pass training=True to use the batch statistics")
    if not (isinstance(momentum, (int, float)) or isinstance(momentum, torch.Tensor) and momentum.dim() == 0):
        raise TypeError(f"momentum must be a number (or a 0-d tensor), got {momentum!r}; for the "
                        "cumulative average of the batch statistics use BatchNorm1d(momentum=None)")
    if not training:
        return BatchNormEvalFunction.apply(input, running_mean, running_var, weight, bias, eps)
    if eps <= 0:
        raise ValueError(f"eps must be > 0 when training (a channel whose values are all equal has σ² = 0, and "
                         f"1/√(σ² + eps) would be inf), got {eps}")
    values_per_channel = input.numel() // channels if channels else 0
    if values_per_channel == 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {input.shape}")
    if running_mean is not None:
        _update_running_stats(input, running_mean, running_var, momentum, values_per_channel)
    return BatchNormFunction.apply(input, weight, bias, eps)


def _update_running_stats(input, running_mean, running_var, momentum, count):
    if _checks.is_vmapped(input):
        raise RuntimeError(
            "batch_norm: cannot update running_mean / running_var under torch.func.vmap: each vmapped call has its "
            "own batch statistics but there is one buffer to write them into. Pass running_mean=None and "
            "running_var=None (BatchNorm1d(track_running_stats=False), or torch.func.replace_all_batch_norm_modules_"
            "(model)), or use training=False."
        )
    with torch.no_grad(), _checks.outside_func_transforms(input) as values:
        var, mean = torch.var_mean(values, dim=batch_dims(values), correction=0)
        # NOTE: the running variance is the unbiased one (× N/(N − 1)), the normalisation uses the biased one
        unbiased_var = var * (count / (count - 1))
        # NOTE: computed out of place, then copied: the buffer is either fully updated or untouched
        running_mean.copy_(running_mean * (1 - momentum) + mean * momentum)
        running_var.copy_(running_var * (1 - momentum) + unbiased_var * momentum)


class BatchNorm1d(torch.nn.BatchNorm1d):
    """torch.nn.BatchNorm1d with the handwritten backward: input (N, C) or (N, C, L).

    Training: normalise with the batch's μ and biased σ², and (track_running_stats) update running_mean and
    running_var (unbiased σ²) with momentum, or with the cumulative average 1/num_batches_tracked for momentum=None.
    Eval: normalise with the running statistics (or, without them, with the batch's, as torch).
    """

    def forward(self, input):
        _checks.check_tensor("input", input)
        if input.dim() not in (2, 3):
            raise ValueError(f"expected 2D or 3D input (got {input.dim()}D input)")
        if input.shape[1] != self.num_features:
            raise ValueError(f"input must have num_features={self.num_features} channels in dim 1, "
                             f"got shape {tuple(input.shape)}")
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                # NOTE: a 0-d tensor, not float(1 / n) as torch: no read of a tensor into Python, so
                # torch.compile(fullgraph=True) works with momentum=None (torch's own module breaks the graph here);
                # in the buffers' dtype, so float64 statistics get 1/n in float64 as torch's
                momentum = 1.0 / self.num_batches_tracked.to(self.running_mean.dtype)
        use_batch_stats = self.training or self.running_mean is None
        update = not self.training or self.track_running_stats  # buffers passed only when used or updated
        return batch_norm(input, self.running_mean if update else None, self.running_var if update else None,
                          self.weight, self.bias, use_batch_stats, momentum, self.eps)
