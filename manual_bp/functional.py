"""Functional API with the names, arguments and defaults of torch.nn.functional.

Each function validates its arguments (clear errors naming the argument), then calls the autograd Function.
`reduction` is keyword-only: torch's own losses take other arguments (weight, size_average, ...) before it.
"""
import torch

from manual_bp import _checks
from manual_bp.functions import DropoutFunction, LinearFunction, ReLUFunction, SigmoidFunction, TanhFunction
from manual_bp.losses import (
    BCELossFunction,
    BCEWithLogitsLossFunction,
    CrossEntropyLossFunction,
    MSELossFunction,
)

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


def relu(input):
    _checks.check_floating("input", input)
    return ReLUFunction.apply(input)


def dropout(input, p=0.5, training=True):
    """Zero each element with probability p and scale the rest by 1/(1 − p) (identity when not training)."""
    _checks.check_floating("input", input)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"p must be a probability in [0, 1), got {p}")
    if not training or p == 0.0:
        return input
    mask = torch.empty_like(input).bernoulli_(1.0 - p).bool()
    return DropoutFunction.apply(input, mask, 1.0 / (1.0 - p))


def _check_pointwise_loss(input, target, reduction):
    _checks.check_floating("input", input)
    _checks.check_floating("target", target)
    _checks.check_same_shape(input, target)
    _checks.check_same_dtype_and_device("target", target, "input", input)
    _checks.check_reduction(reduction)


def mse_loss(input, target, *, reduction="mean"):
    _check_pointwise_loss(input, target, reduction)
    return MSELossFunction.apply(input, target, reduction)


def binary_cross_entropy(input, target, *, reduction="mean"):
    """input holds probabilities ŷ in [0, 1] (e.g. after sigmoid), target y in [0, 1]."""
    _check_pointwise_loss(input, target, reduction)
    _checks.check_in_unit_interval("input", input)
    _checks.check_in_unit_interval("target", target)
    return BCELossFunction.apply(input, target, reduction)


def binary_cross_entropy_with_logits(input, target, *, reduction="mean"):
    """input holds logits z (any real number), target y in [0, 1]."""
    _check_pointwise_loss(input, target, reduction)
    _checks.check_in_unit_interval("target", target)
    return BCEWithLogitsLossFunction.apply(input, target, reduction)


def cross_entropy(input, target, *, reduction="mean"):
    """Softmax cross-entropy: input logits (N, C) or (C,), target class indices (N,) or () in [0, C)."""
    _checks.check_floating("input", input)
    _checks.check_tensor("target", target)
    _checks.check_reduction(reduction)
    if input.dim() not in (1, 2):
        raise ValueError(f"input must be logits of shape (N, C) or (C,), got shape {tuple(input.shape)}")
    if target.is_floating_point() or target.dtype == torch.bool or target.is_complex():
        raise TypeError(
            f"target must hold class indices (an integer tensor), got dtype {target.dtype}; "
            "class-probability targets are not supported"
        )
    if target.shape != input.shape[:-1]:
        raise ValueError(
            f"target must have shape {tuple(input.shape[:-1])} for input of shape {tuple(input.shape)}, "
            f"got {tuple(target.shape)}"
        )
    if target.device != input.device:
        raise ValueError(f"target must be on the device of input ({input.device}), got {target.device}")
    classes = input.shape[-1]
    if _checks.values_are_inspectable(target) and target.numel() > 0:
        low, high = (int(v) for v in torch.aminmax(target))  # one pass, one sync
        if low < 0 or high >= classes:
            bad = low if low < 0 else high
            raise ValueError(f"target must hold class indices in [0, {classes - 1}] (C={classes}), got {bad}")
    return CrossEntropyLossFunction.apply(input, target.long(), reduction)
