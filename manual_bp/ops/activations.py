"""Elementwise activations A = f(Z): sigmoid, tanh, relu, leaky_relu, gelu. Each backward is ∂L/∂Z = ∂L/∂A ⊙ f'(Z)."""
import torch

from manual_bp import _checks
from manual_bp.autograd import Function, overwrite, upcast


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
        grad_input = None
        if ctx.needs_input_grad[0]:
            # ∂L/∂Z = ∂L/∂A ⊙ a(1 − a), evaluated as t − t ⊙ a with t = ∂L/∂A ⊙ a
            # NOTE: two elementwise passes (mul, addcmul) instead of three; the same value. The result goes into t's
            # memory where nothing recorded needs t (overwrite: one allocation fewer).
            scaled = grad_output * output
            grad_input = torch.addcmul(scaled, scaled, output, value=-1, out=overwrite(scaled))
        return grad_input


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
        grad_input = None
        if ctx.needs_input_grad[0]:
            # ∂L/∂Z = ∂L/∂A ⊙ (1 − a²), evaluated as g − (g ⊙ a) ⊙ a: two elementwise passes instead of three
            # NOTE: the result goes into (g ⊙ a)'s memory where nothing recorded needs it (overwrite)
            scaled = grad_output * output
            grad_input = torch.addcmul(grad_output, scaled, output, value=-1, out=overwrite(scaled))
        return grad_input


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
        grad_input = None
        if ctx.needs_input_grad[0]:
            # NOTE: for a = max(z, 0) ≥ 0, sign(a) is exactly 1[z > 0], and sign(0) = 0 is torch's convention for the
            # derivative at z = 0. One float pass: on CPU a comparison building a bool mask costs several times more.
            # At a NaN input the output is NaN and sign(NaN) = 0, so the gradient there is 0 (torch passes the
            # upstream gradient through; a deliberate difference, docs/numerical-notes.md).
            mask = output.sign()  # 1[z > 0]; NOTE: the product goes into the mask's memory where it may (overwrite)
            grad_input = torch.mul(grad_output, mask, out=overwrite(mask))  # ∂L/∂Z = ∂L/∂A ⊙ 1[z > 0]
        return grad_input, None


class LeakyReLUFunction(Function):
    """A = Z for Z > 0, αZ otherwise (α = negative_slope);   ∂L/∂Z = ∂L/∂A ⊙ (1[Z > 0] + α·1[Z ≤ 0])."""

    @staticmethod
    def forward(input, negative_slope):
        return torch.where(input > 0, input, input * negative_slope)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, ctx.negative_slope = inputs
        # NOTE: for α ≥ 0, 1[z > 0] = 1[a > 0], so the output serves as the mask (as in ReLU), which also lets
        # `leaky_relu(..., inplace=True)` overwrite z; for a negative α the sign flips and z is kept.
        ctx.save_for_backward(output if ctx.negative_slope >= 0 else input)

    @staticmethod
    def backward(ctx, grad_output):
        (saved,) = ctx.saved_tensors
        grad_input = None
        if ctx.needs_input_grad[0]:
            # NOTE: at z = 0 the slope is α, as torch's leaky_relu_backward (z > 0 ? 1 : α)
            grad_input = torch.where(saved > 0, grad_output, grad_output * ctx.negative_slope)  # ∂L/∂A ⊙ (1 or α)
        return grad_input, None


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
        grad_input = None
        if ctx.needs_input_grad[0]:
            z = upcast(input)
            if ctx.approximate == "tanh":
                tanh_inner = torch.tanh(SQRT_TWO_OVER_PI * (z + GELU_CUBIC * z.pow(3)))
                inner_derivative = SQRT_TWO_OVER_PI * (1 + 3 * GELU_CUBIC * z.square())  # du/dz
                derivative = 0.5 * (1 + tanh_inner) + 0.5 * z * (1 - tanh_inner.square()) * inner_derivative
            else:
                cdf = 0.5 * (1 + torch.erf(z * SQRT_HALF))  # Φ(z)
                pdf = INV_SQRT_TWO_PI * torch.exp(-0.5 * z.square())  # φ(z)
                derivative = cdf + z * pdf  # Φ(z) + z·φ(z)
            grad_input = (upcast(grad_output) * derivative).to(grad_output.dtype)
        return grad_input, None


# ------------------------------------------------------------------------------- functional (torch.nn.functional)


def sigmoid(input):
    _checks.check_floating("input", input)
    return SigmoidFunction.apply(input)


def tanh(input):
    _checks.check_floating("input", input)
    return TanhFunction.apply(input)


def relu(input, inplace=False):
    _checks.check_floating("input", input)
    if inplace and _checks.is_transformed(input):
        # NOTE: under torch.func (vmap, jacrev) a Function cannot both return its input and save it for backward;
        # there the result is computed out of place and copied back, which leaves the same values in `input`.
        return input.copy_(ReLUFunction.apply(input))
    return ReLUFunction.apply(input, inplace)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    """max(z, 0) + negative_slope·min(z, 0); inplace=True writes the result into input (and returns it)."""
    _checks.check_floating("input", input)
    if inplace and negative_slope < 0:
        raise ValueError(f"inplace=True needs negative_slope >= 0 (the output then holds the sign of the input "
                         f"for the backward), got {negative_slope}")
    output = LeakyReLUFunction.apply(input, negative_slope)
    # NOTE: in place = the result copied into input: autograd records the copy, so the gradient still reaches
    # the original z through the Function (which saved its output, not z)
    return input.copy_(output) if inplace else output


def gelu(input, approximate="none"):
    _checks.check_floating("input", input)
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return GELUFunction.apply(input, approximate)


# ------------------------------------------------------------------------------------------ modules (torch.nn)


class Sigmoid(torch.nn.Module):
    def forward(self, input):
        return sigmoid(input)


class Tanh(torch.nn.Module):
    def forward(self, input):
        return tanh(input)


class ReLU(torch.nn.Module):
    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def forward(self, input):
        return relu(input, self.inplace)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""  # as torch.nn.ReLU


class LeakyReLU(torch.nn.LeakyReLU):
    def forward(self, input):
        return leaky_relu(input, self.negative_slope, self.inplace)


class GELU(torch.nn.GELU):
    def forward(self, input):
        return gelu(input, approximate=self.approximate)
