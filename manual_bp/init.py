"""Where the search starts: weight initialisations written from their formulas, as torch.nn.init.

    import manual_bp.init as minit      # mirrors torch.nn.init: same names, arguments, defaults and values

Notation: a weight W of shape (out, in, *k) feeds each output from fan_in = in·∏k inputs and sends each input to
fan_out = out·∏k outputs (torch.nn.Linear's (out, in) layout; k is a convolution's kernel, empty for Linear).
For Z = X·Wᵀ with independent zero-mean X and W, Var(Z) = fan_in·Var(W)·E[X²]: a variance of W about 1/fan_in keeps
the signal's scale from layer to layer, the gain g makes up for what the nonlinearity after the layer removes.

Each function draws with the same RNG call as torch.nn.init (`uniform_`, `normal_` of the tensor, with `generator`),
so for the same generator state the values are bit-identical (tests/test_init.py).
"""
import math
import warnings

import torch

LINEAR_GAINS = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d")
NONLINEARITIES = (*LINEAR_GAINS, "sigmoid", "tanh", "relu", "leaky_relu", "selu")
MODES = ("fan_in", "fan_out")


def calculate_gain(nonlinearity, param=None):
    """The gain g for the nonlinearity after a layer (Var(W) is scaled by g²):

    linear / conv / sigmoid: 1,  tanh: 5/3,  relu: √2,  leaky_relu with slope a (param, default 0.01): √(2/(1 + a²)),
    selu: 3/4. ReLU zeroes half of a symmetric input, halving E[A²]; g² = 2 doubles it back.
    """
    if nonlinearity in LINEAR_GAINS or nonlinearity == "sigmoid":
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else checked_slope(param, "param")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4  # NOTE: torch's empirical value, kept so that the two agree
    raise ValueError(f"nonlinearity must be one of {', '.join(NONLINEARITIES)}; got {nonlinearity!r}")


def checked_slope(value, name):
    """leaky_relu's negative slope, given as the argument `name`: a number, else a ValueError naming `name`.

    NOTE: bool is an int in Python; torch refuses True/False as a slope, and so does this.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    raise ValueError(f"{name} (the negative slope of leaky_relu) must be a number, got {value!r}")


def fan_in_and_fan_out(tensor):
    """(fan_in, fan_out) of a weight (out, in, *k): (in·∏k, out·∏k)."""
    if tensor.dim() < 2:
        raise ValueError(f"tensor must have at least 2 dimensions (out, in, ...) to have a fan_in and fan_out, "
                         f"got shape {tuple(tensor.shape)}")
    receptive_field = math.prod(tensor.shape[2:])  # ∏k, 1 for a Linear weight
    return tensor.shape[1] * receptive_field, tensor.shape[0] * receptive_field


def fan(tensor, mode):
    """fan_in ("fan_in": keeps the forward signal's variance) or fan_out ("fan_out": the backward gradient's)."""
    # NOTE: case-insensitive, as torch's
    if not isinstance(mode, str) or mode.lower() not in MODES:
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = fan_in_and_fan_out(tensor)
    return fan_in if mode.lower() == "fan_in" else fan_out


# ---- plain fills and draws ----


def uniform_(tensor, a=0.0, b=1.0, generator=None):
    """W ~ U(a, b), in place."""
    with torch.no_grad():
        return tensor.uniform_(a, b, generator=generator)


def normal_(tensor, mean=0.0, std=1.0, generator=None):
    """W ~ N(mean, std²), in place."""
    with torch.no_grad():
        return tensor.normal_(mean, std, generator=generator)


def constant_(tensor, val):
    """W = val everywhere, in place."""
    with torch.no_grad():
        return tensor.fill_(val)


def zeros_(tensor):
    """W = 0, in place."""
    with torch.no_grad():
        return tensor.zero_()


def ones_(tensor):
    """W = 1, in place."""
    return constant_(tensor, 1.0)


# ---- Xavier (Glorot & Bengio, 2010): the average of the forward and backward conditions ----


def xavier_std(tensor, gain):
    """σ = g·√(2/(fan_in + fan_out)): Var(W) = g²·2/(fan_in + fan_out)."""
    fan_in, fan_out = fan_in_and_fan_out(tensor)
    if fan_in + fan_out == 0:
        # NOTE: only an empty (0, 0, ...) tensor, with nothing to fill: torch divides by 0 here, this draws U(0, 0)
        return 0.0
    return gain * math.sqrt(2.0 / float(fan_in + fan_out))


def xavier_uniform_(tensor, gain=1.0, generator=None):
    """W ~ U(−b, b) with b = g·√(6/(fan_in + fan_out)), so Var(W) = b²/3 = g²·2/(fan_in + fan_out).

    NOTE: b is computed as √3·σ (σ from `xavier_std`), torch's order of operations: g·√(6/n) is the same number
    in exact arithmetic but may round to a neighbouring double, and every drawn value would then differ in its last bit.
    """
    bound = math.sqrt(3.0) * xavier_std(tensor, gain)
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor, gain=1.0, generator=None):
    """W ~ N(0, σ²) with σ = g·√(2/(fan_in + fan_out))."""
    return normal_(tensor, 0.0, xavier_std(tensor, gain), generator)


# ---- Kaiming / He (He et al., 2015): keep the forward (fan_in) or backward (fan_out) variance ----


def kaiming_std(tensor, a, mode, nonlinearity):
    """σ = g/√fan_mode: for leaky_relu with slope a, Var(W) = 2/((1 + a²)·fan_in) (mode fan_in); ReLU: a = 0."""
    fan_mode = fan(tensor, mode)
    if nonlinearity == "leaky_relu":
        checked_slope(a, "a")  # NOTE: named as the caller gave it, not as calculate_gain's param
    return calculate_gain(nonlinearity, a) / math.sqrt(fan_mode)


def kaiming_uniform_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """W ~ U(−b, b) with b = g·√(3/fan_mode), so Var(W) = b²/3 = g²/fan_mode = 2/((1 + a²)·fan_mode) for
    leaky_relu (a: its negative slope, used only by leaky_relu).

    torch.nn.Linear's default weight is this with a = √5: g² = 2/6, b = √3·√(1/3)/√fan_in = 1/√fan_in.
    NOTE: b is computed as √3·σ (σ = g/√fan), torch's order, so the bound and every drawn value are bit-identical.
    """
    if _empty(tensor):
        return tensor
    bound = math.sqrt(3.0) * kaiming_std(tensor, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """W ~ N(0, σ²) with σ = g/√fan_mode: Var(W) = 2/((1 + a²)·fan_mode) for leaky_relu, 2/fan_mode for relu."""
    if _empty(tensor):
        return tensor
    return normal_(tensor, 0, kaiming_std(tensor, a, mode, nonlinearity), generator)


def _empty(tensor):
    # NOTE: a zero-size weight has fan 0 (σ = g/0); torch warns and leaves it as it is, and so does this
    if 0 in tensor.shape:
        warnings.warn("Initializing zero-element tensors is a no-op", stacklevel=3)
        return True
    return False


# ---- orthogonal (Saxe et al., 2013): every singular value equal to the gain ----


def orthogonal_(tensor, gain=1, generator=None):
    """W = g·Q, Q (semi-)orthogonal: W·Wᵀ = g²·I (rows ≤ columns) or Wᵀ·W = g²·I (rows ≥ columns), so ‖W·x‖ = g‖x‖
    for every x in the row space and the signal neither grows nor shrinks through a deep linear stack.

    Q comes from the QR factorisation A = Q·R of a Gaussian A (rows, ∏ of the other dims), transposed first when it
    is wide; multiplying Q's columns by sign(diag R) makes Q uniformly distributed over orthogonal matrices (Mezzadri,
    2007), as torch does.
    """
    if tensor.dim() < 2:
        raise ValueError(f"tensor must have at least 2 dimensions for orthogonal_, got shape {tuple(tensor.shape)}")
    if tensor.numel() == 0 or tensor.is_meta:
        return tensor
    rows = tensor.shape[0]
    columns = tensor.numel() // rows
    gaussian = tensor.new_empty((rows, columns)).normal_(0, 1, generator=generator)  # A ~ N(0, 1): (rows, columns)
    if rows < columns:
        gaussian = gaussian.t()  # (columns, rows): tall, so Q has orthonormal columns
    q, r = torch.linalg.qr(gaussian)  # (m, n) -> Q (m, n), R (n, n)
    q = q * torch.diagonal(r).sign()  # (m, n) ⊙ (n,): each column's sign fixed by R's diagonal
    if rows < columns:
        q = q.t()
    with torch.no_grad():
        tensor.view_as(q).copy_(q)
        return tensor.mul_(gain)
