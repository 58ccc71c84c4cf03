"""The registry of ops to verify: each manual_bp op beside its native twin, with the inputs and shapes to try.

`python -m manual_bp.check` and the tests walk OP_CASES through `compare` (manual_bp.testing does the comparing).
"""
import dataclasses

import torch
import torch.nn.functional as F

from manual_bp import functional as MF
from manual_bp.functions import DropoutFunction
from manual_bp.testing import compare_fns, differentiable_positions, make_tensor, run_gradchecks

DTYPES = (torch.float64, torch.float32, torch.bfloat16, torch.float16)


@dataclasses.dataclass(frozen=True)
class OpCase:
    """One op and its native twin. make_inputs(shape, dtype, device, generator, noncontiguous) -> tuple of inputs.

    constants: names of floating-point inputs that get no gradient (class weights torch does not differentiate).
    tolerances: {dtype: (rtol, atol)} where this op needs other than manual_bp.testing.TOLERANCES (with a NOTE).
    """

    name: str
    manual: object
    native: object
    input_names: tuple
    make_inputs: object
    shapes: tuple
    constants: tuple = ()
    tolerances: dict = dataclasses.field(default_factory=dict)


def _linear_inputs(shape, dtype, device, generator, noncontiguous):
    batch, in_features, out_features = shape
    return tuple(make_tensor(s, dtype, device, generator, noncontiguous=noncontiguous)
                 for s in ((batch, in_features), (out_features, in_features), (out_features,)))


def _unary_inputs(shape, dtype, device, generator, noncontiguous):
    return (make_tensor(shape, dtype, device, generator, noncontiguous=noncontiguous),)


def _pair_inputs(input_range):
    def make(shape, dtype, device, generator, noncontiguous):
        low, high = input_range
        input = make_tensor(shape, dtype, device, generator, low, high, noncontiguous)
        return input, make_tensor(shape, dtype, device, generator, 0.0, 1.0, noncontiguous)
    return make


def _cross_entropy_inputs(shape, dtype, device, generator, noncontiguous):
    logits = make_tensor(shape, dtype, device, generator, noncontiguous=noncontiguous)
    target = torch.randint(shape[-1], shape[:-1], generator=generator).to(device)
    return logits, target


def _dropout_inputs(shape, dtype, device, generator, noncontiguous):
    mask = torch.rand(shape, generator=generator) >= 0.25  # a fixed mask: the Function itself is deterministic
    return make_tensor(shape, dtype, device, generator, noncontiguous=noncontiguous), mask.to(device)


def _loss_cases():
    cases = []
    pointwise = [
        ("mse_loss", MF.mse_loss, F.mse_loss, (-2.0, 2.0)),
        ("binary_cross_entropy", MF.binary_cross_entropy, F.binary_cross_entropy, (0.05, 0.95)),
        ("binary_cross_entropy_with_logits", MF.binary_cross_entropy_with_logits,
         F.binary_cross_entropy_with_logits, (-4.0, 4.0)),
    ]
    for reduction in ("mean", "sum", "none"):
        for name, manual, native, input_range in pointwise:
            cases.append(OpCase(
                f"{name}[{reduction}]",
                lambda a, b, f=manual, r=reduction: f(a, b, reduction=r),
                lambda a, b, f=native, r=reduction: f(a, b, reduction=r),
                ("input", "target"), _pair_inputs(input_range), ((1, 1), (1, 10), (16, 10)),
            ))
        cases.append(OpCase(
            f"cross_entropy[{reduction}]",
            lambda a, t, r=reduction: MF.cross_entropy(a, t, reduction=r),
            lambda a, t, r=reduction: F.cross_entropy(a, t, reduction=r),
            ("input", "target"), _cross_entropy_inputs, ((1, 10), (16, 10), (5, 3)),
        ))
    return cases


def _classes_and_index_shape(shape):
    """Logits of `shape` (C,), (N, C) or (N, C, d1, ..., dK): the number of classes and the class-index shape."""
    return (shape[0], ()) if len(shape) == 1 else (shape[1], shape[:1] + shape[2:])


def _class_indices(shape, device, generator, ignore=None):
    """Class indices for logits of `shape`; with `ignore`, about a third of them set to that value.

    NOTE: the first target is always counted: all targets ignored is 0/0 = NaN under "mean" (tested apart).
    """
    classes, index_shape = _classes_and_index_shape(shape)
    target = torch.randint(classes, index_shape, generator=generator)
    if ignore is not None:
        target = target.masked_fill(torch.rand(index_shape, generator=generator) < 0.3, ignore)
        target.view(-1)[0] = classes - 1 if ignore == 0 else 0  # (with C = 1 and ignore = 0 all are ignored)
    return target.to(device)


def _cross_entropy_arguments_inputs(ignore=None):
    """(logits, class indices, class weights) for logits of any shape (C,), (N, C), (N, C, d1, ..., dK)."""
    def make(shape, dtype, device, generator, noncontiguous):
        logits = make_tensor(shape, dtype, device, generator, noncontiguous=noncontiguous)
        target = _class_indices(shape, device, generator, ignore)
        weight = make_tensor(_classes_and_index_shape(shape)[:1], dtype, device, generator, 0.25, 2.0, noncontiguous)
        return logits, target, weight
    return make


def _cross_entropy_probs_inputs(shape, dtype, device, generator, noncontiguous):
    """(logits, class probabilities of the same shape, class weights)."""
    logits = make_tensor(shape, dtype, device, generator, noncontiguous=noncontiguous)
    probs = make_tensor(shape, dtype, device, generator, 0.0, 1.0, noncontiguous)
    weight = make_tensor(_classes_and_index_shape(shape)[:1], dtype, device, generator, 0.25, 2.0, noncontiguous)
    return logits, probs, weight


def _weighted_pair_inputs(input_range, weight_shape):
    """(input, target in [0, 1], weight, pos_weight) with the weights shaped by weight_shape(input shape)."""
    def make(shape, dtype, device, generator, noncontiguous):
        input, target = _pair_inputs(input_range)(shape, dtype, device, generator, noncontiguous)
        weight = make_tensor(weight_shape(shape), dtype, device, generator, 0.25, 2.0, noncontiguous)
        pos_weight = make_tensor(shape[-1:], dtype, device, generator, 0.25, 4.0, noncontiguous)
        return input, target, weight, pos_weight
    return make


def _linear_any_inputs(shape, dtype, device, generator, noncontiguous):
    """shape (*batch, in, out): input (*batch, in), weight (out, in), bias (out,); any size may be 0."""
    *batch, in_features, out_features = shape
    return tuple(make_tensor(s, dtype, device, generator, noncontiguous=noncontiguous)
                 for s in ((*batch, in_features), (out_features, in_features), (out_features,)))


def _argument_cases():
    """torch's optional arguments of each op (weights, ignore_index, label smoothing, probability targets,
    K-dimensional logits, pos_weight, p = 1, inplace, empty in_features), each path against native."""
    ce_shapes, k_dim_shapes = ((1, 10), (16, 10), (5, 3)), ((1, 3, 2), (2, 4, 3), (2, 5, 3, 2))
    pair_shapes = ((1, 1), (1, 10), (16, 10))
    ce_names = ("input", "target", "weight")

    def ce(name, make, shapes, **kwargs):
        return OpCase(f"cross_entropy[{name}]", lambda a, t, w, k=kwargs: MF.cross_entropy(a, t, w, **k),
                      lambda a, t, w, k=kwargs: F.cross_entropy(a, t, w, **k), ce_names, make, shapes, ("weight",))

    cases = [
        ce("weight", _cross_entropy_arguments_inputs(), ce_shapes),
        OpCase("cross_entropy[ignore_index]", lambda a, t, w: MF.cross_entropy(a, t),
               lambda a, t, w: F.cross_entropy(a, t), ce_names, _cross_entropy_arguments_inputs(-100), ce_shapes,
               ("weight",)),
        OpCase("cross_entropy[label_smoothing]", lambda a, t, w: MF.cross_entropy(a, t, label_smoothing=0.1),
               lambda a, t, w: F.cross_entropy(a, t, label_smoothing=0.1), ce_names,
               _cross_entropy_arguments_inputs(), ce_shapes, ("weight",)),
    ]
    for reduction in ("mean", "sum", "none"):
        cases.append(ce(f"weight,ignore_index,label_smoothing][{reduction}", _cross_entropy_arguments_inputs(1),
                        ce_shapes, ignore_index=1, reduction=reduction, label_smoothing=0.2))
    cases.append(ce("K-dim,weight,ignore_index,label_smoothing", _cross_entropy_arguments_inputs(-100), k_dim_shapes,
                    label_smoothing=0.2))
    for reduction in ("mean", "sum", "none"):
        cases.append(OpCase(
            f"cross_entropy[probs][{reduction}]", lambda a, t, w, r=reduction: MF.cross_entropy(a, t, reduction=r),
            lambda a, t, w, r=reduction: F.cross_entropy(a, t, reduction=r), ce_names,
            _cross_entropy_probs_inputs, ce_shapes, ("weight",)))
    cases.append(OpCase(  # the class weights of probability targets get a gradient, in torch and here
        "cross_entropy[probs,K-dim,weight,label_smoothing]",
        lambda a, t, w: MF.cross_entropy(a, t, w, label_smoothing=0.2),
        lambda a, t, w: F.cross_entropy(a, t, w, label_smoothing=0.2), ce_names, _cross_entropy_probs_inputs,
        k_dim_shapes))
    for reduction in ("mean", "sum", "none"):
        cases += [
            OpCase(f"mse_loss[weight][{reduction}]",  # a weight of the input's shape, with a gradient as in torch
                   lambda a, b, w, p, r=reduction: MF.mse_loss(a, b, reduction=r, weight=w),
                   lambda a, b, w, p, r=reduction: F.mse_loss(a, b, reduction=r, weight=w),
                   ("input", "target", "weight", "pos_weight"), _weighted_pair_inputs((-2.0, 2.0), tuple),
                   pair_shapes, ("pos_weight",)),
            OpCase(f"binary_cross_entropy[weight][{reduction}]",  # weight (C,) broadcast over (N, C)
                   lambda a, b, w, p, r=reduction: MF.binary_cross_entropy(a, b, w, reduction=r),
                   lambda a, b, w, p, r=reduction: F.binary_cross_entropy(a, b, w, reduction=r),
                   ("input", "target", "weight", "pos_weight"),
                   _weighted_pair_inputs((0.05, 0.95), lambda shape: shape[-1:]), pair_shapes,
                   ("weight", "pos_weight")),
            OpCase(f"binary_cross_entropy_with_logits[weight,pos_weight][{reduction}]",
                   lambda a, b, w, p, r=reduction: MF.binary_cross_entropy_with_logits(a, b, w, reduction=r,
                                                                                        pos_weight=p),
                   lambda a, b, w, p, r=reduction: F.binary_cross_entropy_with_logits(a, b, w, reduction=r,
                                                                                       pos_weight=p),
                   ("input", "target", "weight", "pos_weight"), _weighted_pair_inputs((-4.0, 4.0), tuple),
                   pair_shapes, ("weight", "pos_weight")),
        ]
    cases += [
        OpCase("dropout[p=1]", lambda x: MF.dropout(x, 1.0), lambda x: F.dropout(x, 1.0), ("input",), _unary_inputs,
               ((1, 1), (8, 5), (3, 4, 5))),
        # NOTE: clone() only because an in-place op may not overwrite a leaf that requires grad
        OpCase("relu[inplace]", lambda x: MF.relu(x.clone(), inplace=True),
               lambda x: F.relu(x.clone(), inplace=True), ("input",), _unary_inputs, ((1, 1), (8, 5), (3, 4, 5))),
        OpCase("dropout[inplace]", lambda x, mask: MF._dropout_with_mask(x.clone(), mask, 1 / 0.75, inplace=True),
               lambda x, mask: x * mask / 0.75, ("input", "mask"), _dropout_inputs, ((1, 1), (8, 5), (3, 4, 5))),
        OpCase("linear[in_features=0]", MF.linear, F.linear, ("input", "weight", "bias"), _linear_any_inputs,
               ((1, 0, 2), (2, 3, 0), (2, 0, 0), (3, 4, 0, 5))),
    ]
    return cases


OP_CASES = [
    OpCase("linear", MF.linear, F.linear, ("input", "weight", "bias"), _linear_inputs,
           ((1, 3, 2), (8, 5, 4), (16, 20, 10))),
    OpCase("sigmoid", MF.sigmoid, torch.sigmoid, ("input",), _unary_inputs, ((1, 1), (8, 5), (3, 4, 5))),
    OpCase("tanh", MF.tanh, torch.tanh, ("input",), _unary_inputs, ((1, 1), (8, 5), (3, 4, 5))),
    OpCase("relu", MF.relu, torch.relu, ("input",), _unary_inputs, ((1, 1), (8, 5), (3, 4, 5))),
    OpCase("dropout", lambda x, mask: DropoutFunction.apply(x, mask, 1 / 0.75), lambda x, mask: x * mask / 0.75,
           ("input", "mask"), _dropout_inputs, ((1, 1), (8, 5), (3, 4, 5))),
    *_loss_cases(),
    *_argument_cases(),
]
CASES_BY_NAME = {case.name: case for case in OP_CASES}


def compare(case, shape, dtype, device="cpu", noncontiguous=False, gradchecks=None, seed=0):
    """compare_fns for one OpCase at one shape; gradcheck and gradgradcheck too in float64 (or when asked)."""
    generator = torch.Generator().manual_seed(seed)
    inputs = case.make_inputs(shape, dtype, device, generator, noncontiguous)
    label = f"{case.name}{list(shape)}" + (" non-contiguous" if noncontiguous else "")
    result = compare_fns(case.manual, case.native, inputs, case.input_names, label, noncontiguous, seed, case.name,
                         constants=case.constants, tolerance=case.tolerances.get(dtype))
    if gradchecks if gradchecks is not None else dtype == torch.float64:
        # NOTE: the float64 inputs are drawn afresh (not cast) so gradcheck sees full-precision random values
        inputs64 = case.make_inputs(shape, torch.float64, device, torch.Generator().manual_seed(seed), noncontiguous)
        run_gradchecks(result, case.manual, inputs64,
                       differentiable_positions(inputs64, case.input_names, case.constants))
    return result


def run_all(devices, cases=None):
    """Every case in every dtype, once non-contiguous and once at batch size 1, on each device."""
    results = []
    for device in devices:
        for case in cases if cases is not None else OP_CASES:
            for dtype in DTYPES:
                results.append(compare(case, case.shapes[-1], dtype, device))
            results.append(compare(case, case.shapes[-1], torch.float32, device, noncontiguous=True))
            results.append(compare(case, case.shapes[0], torch.float64, device))  # batch size 1
    return results


# ------------------------------------------------------------------ the next lecture's layers and loss


def _normalization_inputs(affine_dims):
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


def _normalization_input(shape, dtype, device, generator, noncontiguous):
    """The input alone, uniform in [−2, 3) as in _normalization_inputs."""
    return (make_tensor(shape, dtype, device, generator, -2.0, 3.0, noncontiguous),)


def _running_stats(input):
    """Fixed running statistics for the eval-mode case, made inside the op: buffers, not inputs with gradients."""
    channels = input.shape[1]
    return (torch.linspace(-1, 1, channels, dtype=input.dtype, device=input.device),
            torch.linspace(0.5, 2, channels, dtype=input.dtype, device=input.device))


def _class_weights(input):
    """Fixed class weights for the weighted nll_loss cases (not differentiable, as in torch)."""
    classes = input.shape[0 if input.dim() == 1 else 1]
    return torch.linspace(0.25, 2, classes, dtype=input.dtype, device=input.device)


def _nll_inputs(shape, dtype, device, generator, noncontiguous):
    """Scores (N, C, *) and targets (N, *) with every 4th target set to ignore_index (-100)."""
    input = make_tensor(shape, dtype, device, generator, noncontiguous=noncontiguous)
    target_shape = shape[:1] + shape[2:] if len(shape) > 1 else ()
    target = torch.randint(shape[1] if len(shape) > 1 else shape[0], target_shape, generator=generator)
    target.view(-1)[3::4] = -100
    return input, target.to(device)


def _new_layer_cases():
    three_shapes = ((1, 1), (8, 5), (3, 4, 5))
    bn_train, bn_eval = dict(training=True), dict(training=False)
    cases = [
        # NOTE: float16 on CUDA: ∂L/∂β sums N·L = 48 half-precision values of magnitude ~8, where one ulp is 7.8e-3;
        # measured on an H100 against float64, manual_bp's sum is off by 5.3e-3 and cuDNN's by 2.7e-3, so the two
        # differ by up to one ulp there: atol 8e-3 (CPU rows pass at the default 1e-3)
        OpCase("batch_norm", lambda x, w, b: MF.batch_norm(x, None, None, w, b, **bn_train),
               lambda x, w, b: F.batch_norm(x, None, None, w, b, **bn_train),
               ("input", "weight", "bias"), _normalization_inputs(None), ((1, 3, 4), (8, 5), (16, 6, 3)),
               tolerances={torch.float16: (2e-3, 8e-3)}),
        OpCase("batch_norm[no affine]", lambda x: MF.batch_norm(x, None, None, training=True),
               lambda x: F.batch_norm(x, None, None, training=True), ("input",), _normalization_input,
               ((1, 2, 3), (8, 5), (4, 3, 5))),
        OpCase("batch_norm[eval]", lambda x, w, b: MF.batch_norm(x, *_running_stats(x), w, b, **bn_eval),
               lambda x, w, b: F.batch_norm(x, *_running_stats(x), w, b, **bn_eval),
               ("input", "weight", "bias"), _normalization_inputs(None), ((1, 3), (8, 5), (4, 3, 5))),
        OpCase("layer_norm", lambda x, w, b: MF.layer_norm(x, w.shape, w, b),
               lambda x, w, b: F.layer_norm(x, w.shape, w, b),
               ("input", "weight", "bias"), _normalization_inputs(1), ((1, 5), (8, 5), (3, 4, 5))),
        OpCase("layer_norm[2 dims]", lambda x, w, b: MF.layer_norm(x, w.shape, w, b),
               lambda x, w, b: F.layer_norm(x, w.shape, w, b),
               ("input", "weight", "bias"), _normalization_inputs(2), ((1, 2, 3), (4, 2, 3), (3, 4, 5))),
        OpCase("layer_norm[no affine]", lambda x: MF.layer_norm(x, x.shape[-1:]),
               lambda x: F.layer_norm(x, x.shape[-1:]),
               ("input",), _normalization_input, ((1, 3), (8, 5), (3, 4, 5))),
        OpCase("leaky_relu", MF.leaky_relu, F.leaky_relu, ("input",), _unary_inputs, three_shapes),
        OpCase("leaky_relu[-0.5]", lambda x: MF.leaky_relu(x, -0.5), lambda x: F.leaky_relu(x, -0.5), ("input",),
               _unary_inputs, three_shapes),
        OpCase("gelu", MF.gelu, F.gelu, ("input",), _unary_inputs, three_shapes),
        OpCase("gelu[tanh]", lambda x: MF.gelu(x, approximate="tanh"), lambda x: F.gelu(x, approximate="tanh"),
               ("input",), _unary_inputs, three_shapes),
    ]
    for dim in (-1, 0):
        cases += [
            OpCase(f"softmax[dim={dim}]", lambda x, d=dim: MF.softmax(x, d), lambda x, d=dim: F.softmax(x, d),
                   ("input",), _unary_inputs, three_shapes),
            OpCase(f"log_softmax[dim={dim}]", lambda x, d=dim: MF.log_softmax(x, d),
                   lambda x, d=dim: F.log_softmax(x, d), ("input",), _unary_inputs, three_shapes),
        ]
    for reduction in ("mean", "sum", "none"):
        cases += [
            OpCase(f"nll_loss[{reduction}]", lambda x, t, r=reduction: MF.nll_loss(x, t, reduction=r),
                   lambda x, t, r=reduction: F.nll_loss(x, t, reduction=r),
                   ("input", "target"), _nll_inputs, ((1, 10), (16, 10), (4, 3, 5))),
            OpCase(f"nll_loss[weighted, {reduction}]",
                   lambda x, t, r=reduction: MF.nll_loss(x, t, _class_weights(x), reduction=r),
                   lambda x, t, r=reduction: F.nll_loss(x, t, _class_weights(x), reduction=r),
                   ("input", "target"), _nll_inputs, ((1, 10), (16, 10), (4, 3, 5))),
        ]
    return cases


NEW_LAYER_CASES = _new_layer_cases()
OP_CASES.extend(NEW_LAYER_CASES)
CASES_BY_NAME.update((case.name, case) for case in NEW_LAYER_CASES)
