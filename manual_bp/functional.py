"""Functional API with the names, arguments and defaults of torch.nn.functional.

Each function validates its arguments (clear errors naming the argument), then calls the autograd Function.
Every argument sits in torch's position with torch's default; the deprecated `size_average` and `reduce` are
accepted there only to refuse anything but None with a message naming `reduction`.
"""
import warnings

import torch

from manual_bp import _checks
from manual_bp.functions import (
    DropoutFunction,
    GELUFunction,
    LeakyReLUFunction,
    LinearFunction,
    LogSoftmaxFunction,
    ReLUFunction,
    SigmoidFunction,
    SoftmaxFunction,
    TanhFunction,
)
from manual_bp.losses import (
    BCELossFunction,
    BCEWithLogitsLossFunction,
    CrossEntropyLossFunction,
    CrossEntropyProbsLossFunction,
    MSELossFunction,
    NLLLossFunction,
    class_dim,
)
from manual_bp.normalization import BatchNormEvalFunction, BatchNormFunction, LayerNormFunction

__all__ = [
    "linear", "sigmoid", "relu", "tanh", "dropout",
    "mse_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits", "cross_entropy",
]


def linear(input, weight, bias=None):
    """Z = X·Wᵀ + b: input (*, in), weight (out, in), bias (out,) or None -> (*, out)."""
    _checks.check_floating("input", input)
    _checks.check_floating("weight", weight)
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D (out_features, in_features), got shape {tuple(weight.shape)}")
    if input.dim() == 0 or input.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"input must have in_features={weight.shape[1]} in its last dimension, got shape {tuple(input.shape)}"
        )
    _checks.check_same_dtype_and_device("weight", weight, "input", input)
    if bias is not None:
        _checks.check_floating("bias", bias)
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
        _checks.check_same_dtype_and_device("bias", bias, "input", input)
    return LinearFunction.apply(input, weight, bias)


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


def dropout(input, p=0.5, training=True, inplace=False):
    """Zero each element with probability p and scale the rest by 1/(1 − p) (identity when not training)."""
    _checks.check_floating("input", input)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1], got {p}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        # NOTE: p = 1 keeps nothing: an all-zero mask and scale 0 instead of 1/0, so the output is input·0 (zeros;
        # NaN stays NaN), as torch. Nothing random is drawn, so this also runs under vmap.
        return _dropout_with_mask(input, torch.zeros_like(input, dtype=torch.bool), 0.0, inplace)
    mask = torch.empty_like(input).bernoulli_(1.0 - p).bool()
    return _dropout_with_mask(input, mask, 1.0 / (1.0 - p), inplace)


def _dropout_with_mask(input, mask, scale, inplace=False):
    """Dropout with a given mask (the registry in cases.py tests this deterministic part)."""
    if inplace and _checks.is_transformed(input):
        return input.copy_(DropoutFunction.apply(input, mask, scale))  # NOTE: as in relu above
    return DropoutFunction.apply(input, mask, scale, inplace)


def _check_pointwise_loss(input, target, size_average, reduce, reduction):
    _checks.check_floating("input", input)
    _checks.check_floating("target", target)
    _checks.check_same_shape(input, target)
    _checks.check_same_dtype_and_device("target", target, "input", input)
    _checks.check_no_legacy_reduction(size_average, reduce)
    _checks.check_reduction(reduction)


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """weight (optional, the input's shape) weighs each element; "mean" is then Σ w(ŷ − y)² / Σ w, as torch."""
    _check_pointwise_loss(input, target, size_average, reduce, reduction)
    if weight is not None:
        _checks.check_floating("weight", weight)
        _checks.check_same_shape(input, weight, "weight")
        _checks.check_same_dtype_and_device("weight", weight, "input", input)
    return MSELossFunction.apply(input, target, reduction, weight)


def _check_loss_weight(name, weight, input):
    if weight is not None:
        _checks.check_broadcasts_to(name, weight, input)
        _checks.check_constant(name, weight)


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    """input holds probabilities ŷ in [0, 1] (e.g. after sigmoid), target y in [0, 1]; weight broadcasts to input."""
    _check_pointwise_loss(input, target, size_average, reduce, reduction)
    _check_loss_weight("weight", weight, input)
    _checks.check_in_unit_interval("input", input)
    _checks.check_in_unit_interval("target", target)
    return BCELossFunction.apply(input, target, reduction, weight)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None, reduction="mean",
                                     pos_weight=None):
    """input holds logits z (any real number), target y in [0, 1]; weight and pos_weight broadcast to input
    (pos_weight (C,) weighs the positive term of each of C classes in the last dimension)."""
    _check_pointwise_loss(input, target, size_average, reduce, reduction)
    _check_loss_weight("weight", weight, input)
    _check_loss_weight("pos_weight", pos_weight, input)
    _checks.check_in_unit_interval("target", target)
    return BCEWithLogitsLossFunction.apply(input, target, reduction, weight, pos_weight)


def _check_class_loss(input, target, size_average, reduce, reduction):
    """The opening checks cross_entropy and nll_loss share: floating input, a target tensor, the reduction."""
    _checks.check_floating("input", input)
    _checks.check_tensor("target", target)
    _checks.check_no_legacy_reduction(size_average, reduce)
    _checks.check_reduction(reduction)


def _check_index_target(input, target, index_shape):
    """Class indices target of the shape of input without its class dimension, on input's device."""
    if target.shape != index_shape:
        raise ValueError(f"target must have shape {tuple(index_shape)} for input of shape {tuple(input.shape)}, "
                         f"got {tuple(target.shape)}")
    if target.device != input.device:
        raise ValueError(f"target must be on the device of input ({input.device}), got {target.device}")


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean",
                  label_smoothing=0.0):
    """Softmax cross-entropy over the class dimension of logits (C,), (N, C) or (N, C, d1, ..., dK).

    target: class indices of shape (), (N,) or (N, d1, ..., dK) in [0, C) or = ignore_index, or class
    probabilities (a float tensor of the input's shape). weight: (C,) per-class weights. label_smoothing in [0, 1].
    """
    _check_class_loss(input, target, size_average, reduce, reduction)
    if input.dim() == 0:
        raise ValueError("input must be logits of shape (C,), (N, C) or (N, C, d1, ..., dK), got shape ()")
    classes = input.shape[class_dim(input)]
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    if weight is not None:
        _checks.check_floating("weight", weight)
        if weight.shape != (classes,):
            raise ValueError(f"weight must have shape ({classes},), one weight per class (C={classes}), "
                             f"got {tuple(weight.shape)}")
        _checks.check_same_dtype_and_device("weight", weight, "input", input)
    index_shape = input.shape[:1] + input.shape[2:] if input.dim() > 1 else ()
    if target.is_floating_point() and target.shape == input.shape:
        return _cross_entropy_probs(input, target, weight, ignore_index, reduction, label_smoothing)
    if target.is_floating_point() or target.dtype == torch.bool or target.is_complex():
        raise TypeError(
            f"target must hold class indices (an integer tensor of shape {tuple(index_shape)}) or class probabilities "
            f"(a floating-point tensor of the input's shape {tuple(input.shape)}), got dtype {target.dtype} and shape "
            f"{tuple(target.shape)}"
        )
    _check_index_target(input, target, index_shape)
    if weight is not None:
        _checks.check_constant("weight", weight)
    if _checks.values_are_inspectable(target) and target.numel() > 0:
        low, high = (int(v) for v in torch.aminmax(target))  # one pass, one sync
        if low < 0 or high >= classes:
            outside = ((target < 0) | (target >= classes)) & (target != ignore_index)
            if outside.any():
                bad = int(target[outside][0])
                raise ValueError(f"target must hold class indices in [0, {classes - 1}] (C={classes}), got {bad} "
                                 f"(ignore_index={ignore_index} is also allowed)")
        if not low <= ignore_index <= high:
            ignore_index = None  # NOTE: no target can be ignored: the Function then builds no masks (see losses.py)
    return CrossEntropyLossFunction.apply(input, target.long(), reduction, weight, ignore_index, label_smoothing)


def _cross_entropy_probs(input, target, weight, ignore_index, reduction, label_smoothing):
    _checks.check_same_dtype_and_device("target", target, "input", input)
    if ignore_index >= 0:
        # NOTE: as torch: a class ignore_index (>= 0) is refused with probabilities, a negative one has no effect.
        raise ValueError(f"ignore_index is not supported with class-probability targets (a float target of the "
                         f"input's shape), got ignore_index={ignore_index}")
    _checks.check_in_unit_interval("target", target)
    return CrossEntropyProbsLossFunction.apply(input, target, reduction, weight, label_smoothing)


# ------------------------------------------------------------------ the next lecture's layers and loss

__all__ += ["batch_norm", "layer_norm", "leaky_relu", "gelu", "softmax", "log_softmax", "nll_loss"]


def _check_per_channel(name, tensor, channels, input):
    if tensor is None:
        return
    _checks.check_floating(name, tensor)
    if tensor.shape != (channels,):
        raise ValueError(f"{name} must have shape ({channels},) for input of shape {tuple(input.shape)}, "
                         f"got {tuple(tensor.shape)}")
    _checks.check_same_dtype_and_device(name, tensor, "input", input)


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
        _check_per_channel(name, tensor, channels, input)
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var must both be tensors or both be None, got "
                         f"{type(running_mean).__name__} and {type(running_var).__name__}")
    if not training and running_mean is None:
        raise ValueError("running_mean and running_var must be given when training=False (eval mode normalises "
                         "with them); pass training=True to use the batch statistics")
    if not training:
        return BatchNormEvalFunction.apply(input, running_mean, running_var, weight, bias, eps)
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
        var, mean = torch.var_mean(values, dim=(0, *range(2, values.dim())), correction=0)
        # NOTE: the running variance is the unbiased one (× N/(N − 1)), the normalisation uses the biased one
        unbiased_var = var * (count / (count - 1))
        # NOTE: computed out of place, then copied: the buffer is either fully updated or untouched
        running_mean.copy_(running_mean * (1 - momentum) + mean * momentum)
        running_var.copy_(running_var * (1 - momentum) + unbiased_var * momentum)


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


def _softmax_dim(name, input, dim, stacklevel):
    if dim is None:
        # NOTE: torch's deprecated implicit choice (dim 0 for 0-, 1- and 3-D input, else 1), warning included, so
        # a call without dim gives what torch's gives; pass dim explicitly.
        warnings.warn(f"Implicit dimension choice for {name} has been deprecated. "
                      "Change the call to include dim=X as an argument.", stacklevel=stacklevel)
        return 0 if input.dim() in (0, 1, 3) else 1
    rank = max(input.dim(), 1)
    if not -rank <= dim < rank:
        raise IndexError(f"dim must be in [{-rank}, {rank - 1}] for input of shape {tuple(input.shape)}, got {dim}")
    return dim


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    """softmax along dim; dtype: cast input to it first (as torch: e.g. float16 logits, float32 probabilities)."""
    _checks.check_floating("input", input)
    dim = _softmax_dim("softmax", input, dim, _stacklevel)
    return SoftmaxFunction.apply(input if dtype is None else input.to(dtype), dim)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    _checks.check_floating("input", input)
    dim = _softmax_dim("log_softmax", input, dim, _stacklevel)
    return LogSoftmaxFunction.apply(input if dtype is None else input.to(dtype), dim)


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
    """Negative log-likelihood of log-probabilities input (N, C), (C,) or (N, C, d1, ...) at class indices target
    (N,), () or (N, d1, ...); weight (C,) weighs each class; targets equal to ignore_index count for nothing."""
    _check_class_loss(input, target, size_average, reduce, reduction)
    if input.dim() == 0:
        raise ValueError("input must have shape (N, C), (C,) or (N, C, d1, ...), got a 0-d tensor")
    if target.is_floating_point() or target.dtype == torch.bool or target.is_complex():
        raise TypeError(f"target must hold class indices (an integer tensor), got dtype {target.dtype}")
    dim = class_dim(input)
    _check_index_target(input, target, input.shape[:dim] + input.shape[dim + 1:])
    classes = input.shape[dim]
    if weight is not None:
        _check_per_channel("weight", weight, classes, input)
        _checks.check_constant("weight", weight)
    if _checks.values_are_inspectable(target):
        outside = (target != ignore_index) & ((target < 0) | (target >= classes))
        if outside.any():
            bad = int(target[outside][0])
            raise ValueError(f"target must hold class indices in [0, {classes - 1}] (C={classes}) or "
                             f"ignore_index={ignore_index}, got {bad}")
    return NLLLossFunction.apply(input, target.long(), weight, ignore_index, reduction)
