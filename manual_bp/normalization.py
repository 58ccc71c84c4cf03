"""Batch and layer normalisation as autograd Functions whose backward is the derivative, written by hand.

Notation: x̂ = (x − μ)/√(σ² + ε), y = γ ⊙ x̂ + β, with μ and the biased σ² taken over the N values that share one
γ (batch norm: the batch, and the length L of an (N, C, L) input, per channel; layer norm: the trailing
`normalized_shape` dims, per sample). Because μ and σ² depend on every x, ∂L/∂x is not ∂L/∂y ⊙ γ/√(σ² + ε): the
gradient also flows back through the mean and the variance, which is what the two subtracted terms are.

The running statistics of batch norm are not part of the Function: `functional.batch_norm` updates them under
no_grad (they receive no gradient), and in eval mode they are constants for BatchNormEvalFunction.
"""
import torch

from manual_bp.autograd import Function
from manual_bp.functions import upcast


def normalize(input, dims, eps):
    """x̂ = (x − μ)/√(σ² + ε) and 1/√(σ² + ε), with μ and the biased σ² over `dims` (kept for broadcasting)."""
    # NOTE: the biased variance (divide by N, not N − 1) normalises, as torch; the unbiased one only enters the
    # running estimate. var(correction=0) is one Welford pass, steadier than E[x²] − E[x]² for large means.
    var, mean = torch.var_mean(input, dim=dims, correction=0, keepdim=True)
    inv_std = torch.rsqrt(var + eps)
    return (input - mean) * inv_std, inv_std


def affine(x_hat, weight, bias):
    """y = γ ⊙ x̂ + β with γ, β already shaped to broadcast (None: 1 and 0)."""
    output = x_hat if weight is None else x_hat * weight
    return output if bias is None else output + bias


def normalized_grad_input(grad_x_hat, x_hat, inv_std, dims):
    """∂L/∂x = 1/√(σ² + ε) ⊙ (∂L/∂x̂ − mean(∂L/∂x̂) − x̂ ⊙ mean(∂L/∂x̂ ⊙ x̂)), the means over `dims`.

    This is (1/N)·(1/√(σ² + ε))·(N·∂L/∂x̂ − Σ∂L/∂x̂ − x̂·Σ(∂L/∂x̂ ⊙ x̂)) with the 1/N moved into the sums: the first
    term is the direct path, the second the path through μ, the third the path through σ².
    """
    mean_grad = grad_x_hat.mean(dim=dims, keepdim=True)
    mean_grad_x_hat = (grad_x_hat * x_hat).mean(dim=dims, keepdim=True)
    return inv_std * (grad_x_hat - mean_grad - x_hat * mean_grad_x_hat)


def upcast_all(*tensors):
    """upcast (half precision -> float32) each tensor, None passed through. NOTE: see functions.upcast."""
    return tuple(None if t is None else upcast(t) for t in tensors)


def cast_like(tensor, reference):
    return None if tensor is None else tensor.to(reference.dtype)


def channel_shape(input):
    """(1, C) or (1, C, 1): γ, β and per-channel statistics of shape (C,) broadcast over an (N, C[, L]) input."""
    return (1, -1) + (1,) * (input.dim() - 2)


def batch_dims(input):
    """The dims batch norm averages over: all but the channel dim 1, i.e. N (and L)."""
    return (0, *range(2, input.dim()))


def layer_dims(normalized_shape):
    """The trailing dims layer norm averages over, as negative indices: (−k, ..., −1)."""
    return tuple(range(-len(normalized_shape), 0))


def sum_over(tensor, dims):
    """tensor summed over dims; NOTE: an empty dims returns it unchanged (torch's sum(dim=()) sums over all)."""
    return tensor.sum(dim=dims) if dims else tensor


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
        # NOTE: x̂ and 1/√(σ² + ε) are recomputed in backward from the saved input, not saved from forward: tensors
        # made inside forward are cut from the graph, and double backward through them would miss the paths
        # through μ and σ². The price is one more mean/variance pass in backward.
        ctx.save_for_backward(input, weight)

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        x, gamma, grad_y = upcast_all(input, weight, grad_output)
        grad_input = grad_weight = grad_bias = None
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
        x, mean, var, gamma, grad_y = upcast_all(input, running_mean, running_var, weight, grad_output)
        grad_input = grad_weight = grad_bias = None
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


class LayerNormFunction(Function):
    """Layer norm over the trailing dims `normalized_shape` of each sample; γ, β have shape normalized_shape.

    ∂L/∂x = (1/N)·1/√(σ² + ε)·(N·∂L/∂x̂ − Σ∂L/∂x̂ − x̂·Σ(∂L/∂x̂ ⊙ x̂)) with ∂L/∂x̂ = ∂L/∂y ⊙ γ (sums over the N values
    of one sample's normalized dims),   ∂L/∂γ = Σ_batch ∂L/∂y ⊙ x̂,   ∂L/∂β = Σ_batch ∂L/∂y.
    """

    @staticmethod
    def forward(input, normalized_shape, weight, bias, eps):
        # NOTE: the statistics run over the trailing len(normalized_shape) dims, one μ and σ² per sample (per leading
        # index), unlike batch norm's one per channel: so it behaves the same in training and eval, batch size 1 too.
        x, weight, bias = upcast_all(input, weight, bias)
        x_hat, _ = normalize(x, layer_dims(normalized_shape), eps)  # (*, *normalized_shape)
        return affine(x_hat, weight, bias).to(input.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, normalized_shape, weight, _, ctx.eps = inputs
        ctx.normalized_shape = normalized_shape
        ctx.save_for_backward(input, weight)  # NOTE: x̂ recomputed in backward, as in BatchNormFunction

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        x, gamma, grad_y = upcast_all(input, weight, grad_output)
        grad_input = grad_weight = grad_bias = None
        dims = layer_dims(ctx.normalized_shape)
        leading = tuple(range(x.dim() - len(ctx.normalized_shape)))  # the batch dims γ and β are shared over
        x_hat, inv_std = normalize(x, dims, ctx.eps)  # (*, *normalized_shape), (*, 1, ..., 1)
        if ctx.needs_input_grad[0]:
            grad_x_hat = grad_y if gamma is None else grad_y * gamma  # ∂L/∂x̂ = ∂L/∂y ⊙ γ
            grad_input = cast_like(normalized_grad_input(grad_x_hat, x_hat, inv_std, dims), input)
        if ctx.needs_input_grad[2]:
            grad_weight = cast_like(sum_over(grad_y * x_hat, leading), weight)  # ∂L/∂γ = Σ_batch ∂L/∂y ⊙ x̂
        if ctx.needs_input_grad[3]:
            grad_bias = cast_like(sum_over(grad_y, leading), grad_output)  # ∂L/∂β = Σ_batch ∂L/∂y
        return grad_input, None, grad_weight, grad_bias, None
