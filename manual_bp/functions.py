"""The layers of an MLP as autograd Functions whose backward is the matrix derivative, written by hand.

Notation (row convention, one sample per row): X is (B, in), Z = X·Wᵀ + b is (B, out), A = f(Z).
Every backward is built from differentiable tensor ops, so double backward (gradgradcheck) works, and every
Function is a `manual_bp.autograd.Function` (forward without ctx, setup_context, `generate_vmap_rule`), so
torch.func.vmap / jacrev / grad and torch.compile work on it.
"""
import math

import torch

from manual_bp.autograd import Function


# ----------------------------------------------------------------------------------------------- affine layer


class LinearFunction(Function):
    """Z = X·Wᵀ + b with W = weight of shape (out, in), exactly as torch.nn.functional.linear.

    ∂L/∂X = ∂L/∂Z·W,   ∂L/∂W = ∂L/∂Zᵀ·X,   ∂L/∂b = Σ_batch ∂L/∂Z.

    The lecture writes Z = X·W_lec + B with W_lec = Wᵀ of shape (in, out); its ∂L/∂W_lec = Xᵀ·∂L/∂Z is the
    transpose of the ∂L/∂W computed here. Leading dimensions (*, in) are flattened into one batch.
    """

    @staticmethod
    def forward(input, weight, bias):
        if input.dim() == 2 and bias is not None:
            return torch.addmm(bias, input, weight.t())  # (B, in) @ (in, out) + (out,) -> (B, out)
        output = input.matmul(weight.t())  # (*, in) @ (in, out) -> (*, out)
        return output if bias is None else output + bias

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, weight, _ = inputs
        needs_grad_input, needs_grad_weight, _ = ctx.needs_input_grad
        # NOTE: save only what backward will read: W for ∂L/∂X, X for ∂L/∂W.
        ctx.save_for_backward(input if needs_grad_weight else None, weight if needs_grad_input else None)

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        grad_input = grad_weight = grad_bias = None
        out_features = grad_output.shape[-1]
        if ctx.needs_input_grad[0]:
            grad_input = grad_output.matmul(weight)  # ∂L/∂X = ∂L/∂Z·W: (*, out) @ (out, in) -> (*, in)
        # NOTE: the batch size is spelled out, not reshape(-1, ·): with in_features or out_features = 0 the tensor
        # has no elements and -1 could be any size (torch: "cannot reshape tensor of 0 elements into shape [-1, 0]").
        batch = math.prod(grad_output.shape[:-1])
        if ctx.needs_input_grad[1]:
            grad_2d, input_2d = grad_output.reshape(batch, out_features), input.reshape(batch, input.shape[-1])
            grad_weight = grad_2d.t().mm(input_2d)  # ∂L/∂W = ∂L/∂Zᵀ·X: (out, B) @ (B, in) -> (out, in)
        if ctx.needs_input_grad[2]:
            grad_bias = grad_output.reshape(batch, out_features).sum(0)  # ∂L/∂b = Σ_batch ∂L/∂Z: (B, out) -> (out,)
        return grad_input, grad_weight, grad_bias


# ------------------------------------------------------------------------------------------------ activations


class SigmoidFunction(Function):
    """A = σ(Z) = 1 / (1 + e^(−Z));   ∂L/∂Z = ∂L/∂A ⊙ A(1 − A)."""

    @staticmethod
    def forward(input):
        # NOTE: torch.sigmoid never evaluates e^(−z) for large −z, so σ(±100) is 0 or 1 with no overflow.
        return torch.sigmoid(input)

    @staticmethod
    def setup_context(ctx, inputs, output):
        # NOTE: σ' is written in the saved output a, not in z: no second exp, and a is kept alive anyway.
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad_output):
        (output,) = ctx.saved_tensors
        # ∂L/∂Z = ∂L/∂A ⊙ a(1 − a), evaluated as t − t ⊙ a with t = ∂L/∂A ⊙ a
        # NOTE: two elementwise passes (mul, addcmul) instead of three; the same value.
        scaled = grad_output * output
        return torch.addcmul(scaled, scaled, output, value=-1)


class TanhFunction(Function):
    """A = tanh(Z);   ∂L/∂Z = ∂L/∂A ⊙ (1 − A²)."""

    @staticmethod
    def forward(input):
        return torch.tanh(input)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)  # NOTE: like sigmoid, tanh' = 1 − a² reads the saved output

    @staticmethod
    def backward(ctx, grad_output):
        (output,) = ctx.saved_tensors
        # ∂L/∂Z = ∂L/∂A ⊙ (1 − a²), evaluated as g − (g ⊙ a) ⊙ a: two elementwise passes instead of three
        return torch.addcmul(grad_output, grad_output * output, output, value=-1)


class ReLUFunction(Function):
    """A = max(Z, 0);   ∂L/∂Z = ∂L/∂A ⊙ 1[Z > 0].   inplace=True overwrites Z with A (torch's relu_)."""

    @staticmethod
    def forward(input, inplace=False):
        if not inplace:
            return input.clamp(min=0)  # the lecture's `h.clamp(min=0)`
        input.clamp_(min=0)
        return input  # NOTE: the input object itself, which torch.compile needs to see for a dirty input

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, inplace = inputs
        if inplace:
            ctx.mark_dirty(input)  # NOTE: tells autograd that Z was overwritten, so a later use of the old Z raises
        # NOTE: 1[z > 0] = 1[a > 0], so the output (which the next layer keeps anyway) serves as the mask; it is
        # also all that survives an in-place call.
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad_output):
        (output,) = ctx.saved_tensors
        # NOTE: for a = max(z, 0) ≥ 0, sign(a) is exactly 1[z > 0], and sign(0) = 0 is torch's convention for the
        # derivative at z = 0. One float pass: on CPU a comparison building a bool mask costs several times more.
        # (A NaN input gives a NaN gradient here; torch passes the upstream gradient through.)
        return grad_output * output.sign(), None  # ∂L/∂Z = ∂L/∂A ⊙ 1[z > 0]


class DropoutFunction(Function):
    """A = Z ⊙ M / (1 − p) for a fixed 0/1 mask M (inverted dropout);   ∂L/∂Z = ∂L/∂A ⊙ M / (1 − p).

    The mask is drawn outside the Function (see `functional.dropout`), so the Function itself is deterministic
    and vmap-able; here it is just an input that receives no gradient. inplace=True overwrites Z with A.
    p = 1 is scale 0 with an all-zero mask: A = Z·0 and ∂L/∂Z = 0, as torch (a NaN in Z stays NaN there too).
    """

    @staticmethod
    def forward(input, mask, scale, inplace=False):
        if not inplace:
            return input * mask * scale
        input.mul_(mask).mul_(scale)
        return input  # NOTE: the input object itself, which torch.compile needs to see for a dirty input

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, mask, scale, inplace = inputs
        if inplace:
            ctx.mark_dirty(input)
        ctx.save_for_backward(mask)  # NOTE: a bool mask, one byte per element, as torch's own dropout saves
        ctx.scale = scale

    @staticmethod
    def backward(ctx, grad_output):
        (mask,) = ctx.saved_tensors
        return grad_output * mask * ctx.scale, None, None, None  # ∂L/∂Z = ∂L/∂A ⊙ M / (1 − p)


# ------------------------------------------------------------------------- the next lecture's activations


class LeakyReLUFunction(Function):
    """A = Z for Z > 0, αZ otherwise (α = negative_slope);   ∂L/∂Z = ∂L/∂A ⊙ (1[Z > 0] + α·1[Z ≤ 0])."""

    @staticmethod
    def forward(input, negative_slope):
        return torch.where(input > 0, input, input * negative_slope)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, ctx.negative_slope = inputs
        # NOTE: for α ≥ 0, 1[z > 0] = 1[a > 0], so the output serves as the mask (as in ReLU), which also lets
        # `functional.leaky_relu(..., inplace=True)` overwrite z; for a negative α the sign flips and z is kept.
        ctx.save_for_backward(output if ctx.negative_slope >= 0 else input)

    @staticmethod
    def backward(ctx, grad_output):
        (saved,) = ctx.saved_tensors
        # NOTE: at z = 0 the slope is α, as torch's leaky_relu_backward (z > 0 ? 1 : α)
        return torch.where(saved > 0, grad_output, grad_output * ctx.negative_slope), None  # ∂L/∂A ⊙ (1 or α)


def upcast(tensor):
    """float32 for a float16 / bfloat16 tensor, else the tensor itself.

    NOTE: torch's kernels for GELU and the normalisations compute a half-precision input in float32 and round once;
    a chain of half-precision ops rounds at every step (the tanh GELU's z³, a variance) and lands several ulp away.
    """
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


# NOTE: 1/√2 and √(2/π) as Python floats, the constants of torch's kernels; 0.044715 is the cubic coefficient of
# the tanh approximation (Hendrycks & Gimpel), also torch's.
SQRT_HALF = 0.7071067811865476
SQRT_TWO_OVER_PI = 0.7978845608028654
INV_SQRT_TWO_PI = 0.3989422804014327
GELU_CUBIC = 0.044715


class GELUFunction(Function):
    """A = Z·Φ(Z), Φ the standard normal CDF;   ∂L/∂Z = ∂L/∂A ⊙ (Φ(Z) + Z·φ(Z)), φ(z) = e^(−z²/2)/√(2π).

    approximate="tanh": A = ½Z(1 + tanh u), u = √(2/π)(Z + 0.044715Z³);
    ∂L/∂Z = ∂L/∂A ⊙ (½(1 + tanh u) + ½Z(1 − tanh² u)·√(2/π)(1 + 3·0.044715Z²)).
    """

    @staticmethod
    def forward(input, approximate):
        z = upcast(input)
        if approximate == "tanh":
            inner = SQRT_TWO_OVER_PI * (z + GELU_CUBIC * z.pow(3))
            return (0.5 * z * (1 + torch.tanh(inner))).to(input.dtype)
        # NOTE: Φ(z) = ½(1 + erf(z/√2)), the exact form (torch's default) and torch's formula; for very negative z,
        # erf rounds to −1 and z·Φ(z) to 0, as torch's.
        return (0.5 * z * (1 + torch.erf(z * SQRT_HALF))).to(input.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, ctx.approximate = inputs
        ctx.save_for_backward(input)  # NOTE: the derivative needs z itself (Φ and φ of z), not the output

    @staticmethod
    def backward(ctx, grad_output):
        (input,) = ctx.saved_tensors
        z = upcast(input)
        if ctx.approximate == "tanh":
            tanh_inner = torch.tanh(SQRT_TWO_OVER_PI * (z + GELU_CUBIC * z.pow(3)))
            inner_derivative = SQRT_TWO_OVER_PI * (1 + 3 * GELU_CUBIC * z.square())  # du/dz
            derivative = 0.5 * (1 + tanh_inner) + 0.5 * z * (1 - tanh_inner.square()) * inner_derivative
        else:
            cdf = 0.5 * (1 + torch.erf(z * SQRT_HALF))  # Φ(z)
            pdf = INV_SQRT_TWO_PI * torch.exp(-0.5 * z.square())  # φ(z)
            derivative = cdf + z * pdf  # Φ(z) + z·φ(z)
        return (upcast(grad_output) * derivative).to(grad_output.dtype), None


class SoftmaxFunction(Function):
    """S = softmax(Z) along dim: s_i = e^(z_i)/Σ_j e^(z_j);   ∂L/∂Z = S ⊙ (∂L/∂S − Σ_dim(∂L/∂S ⊙ S)).

    (The Jacobian ∂s_i/∂z_j = s_i(δ_ij − s_j) times the upstream gradient, without building the (C, C) matrix.)
    """

    @staticmethod
    def forward(input, dim):
        # NOTE: shifting by the max along dim keeps e^(·) ≤ 1 (no overflow at logits of 1e4); softmax is unchanged.
        exp = (input - input.amax(dim=dim, keepdim=True)).exp()
        return exp / exp.sum(dim=dim, keepdim=True)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, ctx.dim = inputs
        # NOTE: the derivative is written in the output S alone; a saved output stays connected to the graph (it is
        # this Function's own result), so double backward works.
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad_output):
        (output,) = ctx.saved_tensors
        weighted_sum = (grad_output * output).sum(dim=ctx.dim, keepdim=True)  # Σ_dim ∂L/∂S ⊙ S
        return output * (grad_output - weighted_sum), None  # ∂L/∂Z = S ⊙ (∂L/∂S − Σ ∂L/∂S ⊙ S)


class LogSoftmaxFunction(Function):
    """A = log softmax(Z) = Z − log Σ_dim e^Z;   ∂L/∂Z = ∂L/∂A − e^A ⊙ Σ_dim ∂L/∂A   (e^A = softmax(Z))."""

    @staticmethod
    def forward(input, dim):
        # NOTE: (z − max z) − log Σ e^(z − max z): the shift keeps e^(·) ≤ 1, and subtracting the max before the
        # log-sum keeps float32 digits that z − logsumexp(z) loses (as in CrossEntropyLossFunction).
        shifted = input - input.amax(dim=dim, keepdim=True)
        return shifted - shifted.exp().sum(dim=dim, keepdim=True).log()

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, ctx.dim = inputs
        ctx.save_for_backward(output)  # NOTE: softmax is e^A of the saved output: no second max/sum pass

    @staticmethod
    def backward(ctx, grad_output):
        (output,) = ctx.saved_tensors
        # ∂L/∂Z = ∂L/∂A − softmax(Z) ⊙ Σ_dim ∂L/∂A
        return grad_output - output.exp() * grad_output.sum(dim=ctx.dim, keepdim=True), None
