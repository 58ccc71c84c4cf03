"""Layer norm, and the normalisation arithmetic batch_norm.py shares.

Notation: x̂ = (x − μ)/√(σ² + ε), y = γ ⊙ x̂ + β, with μ and the biased σ² taken over the N values that share one
γ (layer norm: the trailing `normalized_shape` dims, per sample; batch norm: the batch, and the length L of an
(N, C, L) input, per channel). Because μ and σ² depend on every x, ∂L/∂x is not ∂L/∂y ⊙ γ/√(σ² + ε): the
gradient also flows back through the mean and the variance, which is what the two subtracted terms are.
"""
import torch

from manual_bp import _checks
from manual_bp.autograd import Function, upcast


def normalize(input, dims, eps):
    """x̂ = (x − μ)/√(σ² + ε) and 1/√(σ² + ε), with μ and the biased σ² over `dims` (kept for broadcasting)."""
    # NOTE: the biased variance (divide by N, not N − 1) normalises, as torch; the unbiased one only enters the
    # running estimate. var(correction=0) is one Welford pass, steadier than E[x²] − E[x]² for large means.
    var, mean = torch.var_mean(input, dim=dims, correction=0, keepdim=True)
    # NOTE: in float32, σ² overflows to inf once |x − μ| passes ~1e19, and 1/√σ² would round to 0: x̂ silently 0.
    # NaN instead (torch's layer_norm gives NaN there too, its batch_norm zeros); such inputs need float64.
    inv_std = torch.where(var.isinf(), torch.nan, torch.rsqrt(var + eps))
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
    """upcast (half precision -> float32) each tensor, None passed through. NOTE: see autograd.upcast."""
    return tuple(None if t is None else upcast(t) for t in tensors)


def cast_like(tensor, reference):
    return None if tensor is None else tensor.to(reference.dtype)


def sum_over(tensor, dims):
    """tensor summed over dims; NOTE: an empty dims returns it unchanged (torch's sum(dim=()) sums over all)."""
    return tensor.sum(dim=dims) if dims else tensor


def layer_dims(normalized_shape):
    """The trailing dims layer norm averages over, as negative indices: (−k, ..., −1)."""
    return tuple(range(-len(normalized_shape), 0))


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
        # NOTE: x̂ and 1/√(σ² + ε) are recomputed in backward from the saved input, not saved from forward: tensors
        # made inside forward are cut from the graph, and double backward through them would miss the paths
        # through μ and σ². The price is one more mean/variance pass in backward.
        ctx.save_for_backward(input, weight)

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        grad_input = grad_weight = grad_bias = None
        x, gamma, grad_y = upcast_all(input, weight, grad_output)
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


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-05):
    """Layer norm over the trailing dims normalized_shape (an int or a tuple) of each sample of input."""
    _checks.check_floating("input", input)
    normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if not normalized_shape or tuple(input.shape[input.dim() - len(normalized_shape):]) != normalized_shape:
        raise ValueError(f"input must end in normalized_shape={normalized_shape}, got shape {tuple(input.shape)}")
    for name, tensor in (("weight", weight), ("bias", bias)):
        if tensor is not None:
            _checks.check_floating(name, tensor)
            if tuple(tensor.shape) != normalized_shape:
                raise ValueError(f"{name} must have shape normalized_shape={normalized_shape}, "
                                 f"got {tuple(tensor.shape)}")
            _checks.check_same_dtype_and_device(name, tensor, "input", input)
    return LayerNormFunction.apply(input, normalized_shape, weight, bias, eps)


class LayerNorm(torch.nn.LayerNorm):
    """torch.nn.LayerNorm with the handwritten backward: normalise over the trailing dims normalized_shape."""

    def forward(self, input):
        return layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)
