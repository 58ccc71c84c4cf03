"""The registry of ops to verify: each op written once against a namespace F, run with F = manual_bp.functional and
with F = torch.nn.functional, on the inputs and shapes listed beside it (tinygrad's helper_test_op way).

`python -m manual_bp.check` and the tests walk OP_CASES through `compare` (manual_bp.testing does the comparing).
"""
import dataclasses
import functools

import torch
import torch.nn.functional as F

from manual_bp import functional as MF
from manual_bp.case_inputs import (
    cross_entropy_arguments_inputs,
    cross_entropy_inputs,
    cross_entropy_probs_inputs,
    dropout_inputs,
    linear_inputs,
    nll_inputs,
    normalization_input,
    normalization_inputs,
    pair_inputs,
    unary_inputs,
    weighted_pair_inputs,
)
from manual_bp.ops.dropout import masked_dropout
from manual_bp.ops.nll_loss import class_dim
from manual_bp.testing import compare_fns, differentiable_positions, run_gradchecks

DTYPES = (torch.float64, torch.float32, torch.bfloat16, torch.float16)


@dataclasses.dataclass(frozen=True)
class OpCase:
    """fn(F, *inputs), once with F = manual_bp.functional (`manual`) and once with torch.nn.functional (`native`).

    make_inputs(shape, dtype, device, generator, noncontiguous) -> the inputs, named by input_names.
    constants: names of floating-point inputs that get no gradient (class weights torch does not differentiate).
    tolerances: {dtype: (rtol, atol)} where this op needs other than manual_bp.testing.TOLERANCES (with a NOTE).
    """

    name: str
    fn: object
    input_names: tuple
    make_inputs: object
    shapes: tuple
    constants: tuple = ()
    tolerances: dict = dataclasses.field(default_factory=dict)

    @property
    def manual(self):
        return functools.partial(self.fn, MF)

    @property
    def native(self):
        return functools.partial(self.fn, F)


# ------------------------------------------------------------- constants made inside an op, and dropout's mask


def _running_stats(input):
    """Fixed running statistics for the eval-mode case, made inside the op: buffers, not inputs with gradients."""
    channels = input.shape[1]
    return (torch.linspace(-1, 1, channels, dtype=input.dtype, device=input.device),
            torch.linspace(0.5, 2, channels, dtype=input.dtype, device=input.device))


def _class_weights(input):
    """Fixed class weights for the weighted nll_loss cases (not differentiable, as in torch)."""
    classes = input.shape[class_dim(input.dim())]
    return torch.linspace(0.25, 2, classes, dtype=input.dtype, device=input.device)


def _masked_dropout(F_, input, mask, inplace=False):
    """Dropout with the fixed mask `mask` (p = 0.25).

    NOTE: torch.nn.functional.dropout draws its own mask (on CUDA from another generator than bernoulli_), so the
    deterministic step is compared with the product it stands for, Z ⊙ M / (1 − p).
    """
    if F_ is MF:
        return masked_dropout(input, mask, 1 / 0.75, inplace)
    return input * mask / 0.75


# ---------------------------------------------------------------------------------------------- the cases

THREE = ((1, 1), (8, 5), (3, 4, 5))
PAIRS = ((1, 1), (1, 10), (16, 10))
CLASSES = ((1, 10), (16, 10), (5, 3))
K_DIM = ((1, 3, 2), (2, 4, 3), (2, 5, 3, 2))
NLL = ((1, 10), (16, 10), (4, 3, 5))
LINEAR = ("input", "weight", "bias")
PAIR = ("input", "target")
WEIGHTED_PAIR = ("input", "target", "weight", "pos_weight")
CE = ("input", "target", "weight")
# NOTE: float16 on CUDA: ∂L/∂β sums N·L = 48 half-precision values of magnitude ~8, where one ulp is 7.8e-3;
# measured on an H100 against float64, manual_bp's sum is off by 5.3e-3 and cuDNN's by 2.7e-3, so the two
# differ by up to one ulp there: atol 8e-3 (CPU rows pass at the default 1e-3)
BATCH_NORM_FLOAT16 = {torch.float16: (2e-3, 8e-3)}
C = OpCase


def _cases():
    cases = [
        C("linear", lambda F, x, w, b: F.linear(x, w, b), LINEAR, linear_inputs, ((1, 3, 2), (8, 5, 4), (16, 20, 10))),
        C("sigmoid", lambda F, x: F.sigmoid(x), ("input",), unary_inputs, THREE),
        C("tanh", lambda F, x: F.tanh(x), ("input",), unary_inputs, THREE),
        C("relu", lambda F, x: F.relu(x), ("input",), unary_inputs, THREE),
        C("dropout", lambda F, x, mask: _masked_dropout(F, x, mask), ("input", "mask"), dropout_inputs, THREE),
    ]
    for r in ("mean", "sum", "none"):
        cases += [
            C(f"mse_loss[{r}]", lambda F, a, b, r=r: F.mse_loss(a, b, reduction=r), PAIR, pair_inputs((-2.0, 2.0)),
              PAIRS),
            C(f"binary_cross_entropy[{r}]", lambda F, a, b, r=r: F.binary_cross_entropy(a, b, reduction=r), PAIR,
              pair_inputs((0.05, 0.95)), PAIRS),
            C(f"binary_cross_entropy_with_logits[{r}]",
              lambda F, a, b, r=r: F.binary_cross_entropy_with_logits(a, b, reduction=r), PAIR,
              pair_inputs((-4.0, 4.0)), PAIRS),
            C(f"cross_entropy[{r}]", lambda F, a, t, r=r: F.cross_entropy(a, t, reduction=r), PAIR,
              cross_entropy_inputs, CLASSES),
        ]
    # torch's optional arguments of each op, each path against native
    cases += [
        C("cross_entropy[weight]", lambda F, a, t, w: F.cross_entropy(a, t, w), CE, cross_entropy_arguments_inputs(),
          CLASSES, ("weight",)),
        C("cross_entropy[ignore_index]", lambda F, a, t, w: F.cross_entropy(a, t), CE,
          cross_entropy_arguments_inputs(-100), CLASSES, ("weight",)),
        C("cross_entropy[label_smoothing]", lambda F, a, t, w: F.cross_entropy(a, t, label_smoothing=0.1), CE,
          cross_entropy_arguments_inputs(), CLASSES, ("weight",)),
    ]
    for r in ("mean", "sum", "none"):
        cases.append(C(f"cross_entropy[weight,ignore_index,label_smoothing][{r}]",
                       lambda F, a, t, w, r=r: F.cross_entropy(a, t, w, ignore_index=1, reduction=r,
                                                                label_smoothing=0.2),
                       CE, cross_entropy_arguments_inputs(1), CLASSES, ("weight",)))
    cases.append(C("cross_entropy[K-dim,weight,ignore_index,label_smoothing]",
                   lambda F, a, t, w: F.cross_entropy(a, t, w, label_smoothing=0.2), CE,
                   cross_entropy_arguments_inputs(-100), K_DIM, ("weight",)))
    for r in ("mean", "sum", "none"):
        cases.append(C(f"cross_entropy[probs][{r}]", lambda F, a, t, w, r=r: F.cross_entropy(a, t, reduction=r), CE,
                       cross_entropy_probs_inputs, CLASSES, ("weight",)))
    # the class weights of probability targets get a gradient, in torch and here
    cases.append(C("cross_entropy[probs,K-dim,weight,label_smoothing]",
                   lambda F, a, t, w: F.cross_entropy(a, t, w, label_smoothing=0.2), CE, cross_entropy_probs_inputs,
                   K_DIM))
    for r in ("mean", "sum", "none"):
        cases += [  # mse: a weight of the input's shape, with a gradient as in torch; bce: weight (C,) over (N, C)
            C(f"mse_loss[weight][{r}]", lambda F, a, b, w, p, r=r: F.mse_loss(a, b, reduction=r, weight=w),
              WEIGHTED_PAIR, weighted_pair_inputs((-2.0, 2.0), tuple), PAIRS, ("pos_weight",)),
            C(f"binary_cross_entropy[weight][{r}]",
              lambda F, a, b, w, p, r=r: F.binary_cross_entropy(a, b, w, reduction=r), WEIGHTED_PAIR,
              weighted_pair_inputs((0.05, 0.95), lambda shape: shape[-1:]), PAIRS, ("weight", "pos_weight")),
            C(f"binary_cross_entropy_with_logits[weight,pos_weight][{r}]",
              lambda F, a, b, w, p, r=r: F.binary_cross_entropy_with_logits(a, b, w, reduction=r, pos_weight=p),
              WEIGHTED_PAIR, weighted_pair_inputs((-4.0, 4.0), tuple), PAIRS, ("weight", "pos_weight")),
        ]
    cases += [
        C("dropout[p=1]", lambda F, x: F.dropout(x, 1.0), ("input",), unary_inputs, THREE),
        # NOTE: clone() only because an in-place op may not overwrite a leaf that requires grad
        C("relu[inplace]", lambda F, x: F.relu(x.clone(), inplace=True), ("input",), unary_inputs, THREE),
        C("dropout[inplace]", lambda F, x, mask: _masked_dropout(F, x.clone(), mask, inplace=True), ("input", "mask"),
          dropout_inputs, THREE),
        C("linear[in_features=0]", lambda F, x, w, b: F.linear(x, w, b), LINEAR, linear_inputs,
          ((1, 0, 2), (2, 3, 0), (2, 0, 0), (3, 4, 0, 5))),
    ]
    # the normalisations, the other activations, the softmax family and nll_loss
    bn_train, bn_eval = dict(training=True), dict(training=False)
    cases += [
        C("batch_norm", lambda F, x, w, b: F.batch_norm(x, None, None, w, b, **bn_train), LINEAR,
          normalization_inputs(None), ((1, 3, 4), (8, 5), (16, 6, 3)), tolerances=BATCH_NORM_FLOAT16),
        C("batch_norm[no affine]", lambda F, x: F.batch_norm(x, None, None, **bn_train), ("input",),
          normalization_input, ((1, 2, 3), (8, 5), (4, 3, 5))),
        C("batch_norm[eval]", lambda F, x, w, b: F.batch_norm(x, *_running_stats(x), w, b, **bn_eval), LINEAR,
          normalization_inputs(None), ((1, 3), (8, 5), (4, 3, 5))),
        C("layer_norm", lambda F, x, w, b: F.layer_norm(x, w.shape, w, b), LINEAR, normalization_inputs(1),
          ((1, 5), (8, 5), (3, 4, 5))),
        C("layer_norm[2 dims]", lambda F, x, w, b: F.layer_norm(x, w.shape, w, b), LINEAR, normalization_inputs(2),
          ((1, 2, 3), (4, 2, 3), (3, 4, 5))),
        C("layer_norm[no affine]", lambda F, x: F.layer_norm(x, x.shape[-1:]), ("input",), normalization_input,
          ((1, 3), (8, 5), (3, 4, 5))),
        C("leaky_relu", lambda F, x: F.leaky_relu(x), ("input",), unary_inputs, THREE),
        C("leaky_relu[-0.5]", lambda F, x: F.leaky_relu(x, -0.5), ("input",), unary_inputs, THREE),
        C("gelu", lambda F, x: F.gelu(x), ("input",), unary_inputs, THREE),
        C("gelu[tanh]", lambda F, x: F.gelu(x, approximate="tanh"), ("input",), unary_inputs, THREE),
    ]
    for d in (-1, 0):
        cases += [
            C(f"softmax[dim={d}]", lambda F, x, d=d: F.softmax(x, d), ("input",), unary_inputs, THREE),
            C(f"log_softmax[dim={d}]", lambda F, x, d=d: F.log_softmax(x, d), ("input",), unary_inputs, THREE),
        ]
    for r in ("mean", "sum", "none"):
        cases += [
            C(f"nll_loss[{r}]", lambda F, x, t, r=r: F.nll_loss(x, t, reduction=r), PAIR, nll_inputs, NLL),
            C(f"nll_loss[weighted, {r}]", lambda F, x, t, r=r: F.nll_loss(x, t, _class_weights(x), reduction=r), PAIR,
              nll_inputs, NLL),
        ]
    return cases


OP_CASES = _cases()


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
