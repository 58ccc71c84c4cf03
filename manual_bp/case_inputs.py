"""The random inputs of the op cases (manual_bp/cases.py): each maker is
make_inputs(shape, dtype, device, generator, noncontiguous) -> a tuple of inputs, drawn from `generator`.
"""
import torch

from manual_bp.ops.nll_loss import class_dim
from manual_bp.testing import make_tensor


def linear_inputs(shape, dtype, device, generator, noncontiguous):
    """shape (*batch, in, out): input (*batch, in), weight (out, in), bias (out,); any size may be 0."""
    *batch, in_features, out_features = shape
    return tuple(make_tensor(s, dtype, device, generator, noncontiguous=noncontiguous)
                 for s in ((*batch, in_features), (out_features, in_features), (out_features,)))


def unary_inputs(shape, dtype, device, generator, noncontiguous):
    return (make_tensor(shape, dtype, device, generator, noncontiguous=noncontiguous),)


def normalization_input(shape, dtype, device, generator, noncontiguous):
    """The input alone, uniform in [−2, 3) as in normalization_inputs."""
    return (make_tensor(shape, dtype, device, generator, -2.0, 3.0, noncontiguous),)


def pair_inputs(input_range):
    """(input uniform in input_range, target uniform in [0, 1])."""
    def make(shape, dtype, device, generator, noncontiguous):
        input = make_tensor(shape, dtype, device, generator, *input_range, noncontiguous)
        return input, make_tensor(shape, dtype, device, generator, 0.0, 1.0, noncontiguous)
    return make


def weighted_pair_inputs(input_range, weight_shape):
    """(input, target in [0, 1], weight, pos_weight) with the weights shaped by weight_shape(input shape)."""
    def make(shape, dtype, device, generator, noncontiguous):
        input, target = pair_inputs(input_range)(shape, dtype, device, generator, noncontiguous)
        weight = make_tensor(weight_shape(shape), dtype, device, generator, 0.25, 2.0, noncontiguous)
        pos_weight = make_tensor(shape[-1:], dtype, device, generator, 0.25, 4.0, noncontiguous)
        return input, target, weight, pos_weight
    return make


def dropout_inputs(shape, dtype, device, generator, noncontiguous):
    mask = torch.rand(shape, generator=generator) >= 0.25  # a fixed mask: the Function itself is deterministic
    return make_tensor(shape, dtype, device, generator, noncontiguous=noncontiguous), mask.to(device)


def cross_entropy_inputs(shape, dtype, device, generator, noncontiguous):
    logits = make_tensor(shape, dtype, device, generator, noncontiguous=noncontiguous)
    classes, index_shape = classes_and_index_shape(shape)
    return logits, torch.randint(classes, index_shape, generator=generator).to(device)


def classes_and_index_shape(shape):
    """Logits of `shape` (C,), (N, C) or (N, C, d1, ..., dK): the number of classes and the class-index shape."""
    dim = class_dim(len(shape))
    return shape[dim], tuple(shape[:dim]) + tuple(shape[dim + 1:])


def class_indices(shape, device, generator, ignore=None):
    """Class indices for logits of `shape`; with `ignore`, about a third of them set to that value.

    NOTE: the first target is always counted: all targets ignored is 0/0 = NaN under "mean" (tested apart).
    """
    classes, index_shape = classes_and_index_shape(shape)
    target = torch.randint(classes, index_shape, generator=generator)
    if ignore is not None:
        target = target.masked_fill(torch.rand(index_shape, generator=generator) < 0.3, ignore)
        target.view(-1)[0] = classes - 1 if ignore == 0 else 0  # (with C = 1 and ignore = 0 all are ignored)
    return target.to(device)


def cross_entropy_arguments_inputs(ignore=None):
    """(logits, class indices, class weights) for logits of any shape (C,), (N, C), (N, C, d1, ..., dK)."""
    def make(shape, dtype, device, generator, noncontiguous):
        logits = make_tensor(shape, dtype, device, generator, noncontiguous=noncontiguous)
        target = class_indices(shape, device, generator, ignore)
        weight = make_tensor(classes_and_index_shape(shape)[:1], dtype, device, generator, 0.25, 2.0, noncontiguous)
        return logits, target, weight
    return make


def cross_entropy_probs_inputs(shape, dtype, device, generator, noncontiguous):
    """(logits, class probabilities of the same shape, class weights)."""
    logits = make_tensor(shape, dtype, device, generator, noncontiguous=noncontiguous)
    probs = make_tensor(shape, dtype, device, generator, 0.0, 1.0, noncontiguous)
    weight = make_tensor(classes_and_index_shape(shape)[:1], dtype, device, generator, 0.25, 2.0, noncontiguous)
    return logits, probs, weight


def nll_inputs(shape, dtype, device, generator, noncontiguous):
    """Scores (N, C, *) and targets (N, *) with every 4th target set to ignore_index (-100)."""
    input = make_tensor(shape, dtype, device, generator, noncontiguous=noncontiguous)
    classes, index_shape = classes_and_index_shape(shape)
    target = torch.randint(classes, index_shape, generator=generator)
    target.view(-1)[3::4] = -100
    return input, target.to(device)


def normalization_inputs(affine_dims):
    """input, and γ, β over its trailing `affine_dims` dims (layer norm) or over dim 1 (batch norm: None).

    NOTE: the input is uniform in [−2, 3), not standard normal: compare_fns draws the upstream gradient as standard
    normal from the same seed, and an upstream gradient equal to the input lies in span{1, x̂}, exactly what a
    normalisation's backward projects away: ∂L/∂x would be ~0 and the comparison would test nothing.
    """
    def make(shape, dtype, device, generator, noncontiguous):
        affine_shape = (shape[1],) if affine_dims is None else tuple(shape[-affine_dims:])
        input = make_tensor(shape, dtype, device, generator, -2.0, 3.0, noncontiguous)
        weight = make_tensor(affine_shape, dtype, device, generator, 0.5, 1.5, noncontiguous)
        return input, weight, make_tensor(affine_shape, dtype, device, generator, noncontiguous=noncontiguous)
    return make
