"""The registry of ops to verify: each manual_bp op beside its native twin, with the inputs and shapes to try.

`python -m manual_bp.check` and the tests walk OP_CASES through `compare` (manual_bp.testing does the comparing).
"""
import dataclasses

import torch
import torch.nn.functional as F

from manual_bp import functional as MF
from manual_bp.functions import DropoutFunction
from manual_bp.testing import compare_fns, make_tensor, run_gradchecks

DTYPES = (torch.float64, torch.float32, torch.bfloat16, torch.float16)


@dataclasses.dataclass(frozen=True)
class OpCase:
    """One op and its native twin. make_inputs(shape, dtype, device, generator, noncontiguous) -> tuple of inputs."""

    name: str
    manual: object
    native: object
    input_names: tuple
    make_inputs: object
    shapes: tuple


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


OP_CASES = [
    OpCase("linear", MF.linear, F.linear, ("input", "weight", "bias"), _linear_inputs,
           ((1, 3, 2), (8, 5, 4), (16, 20, 10))),
    OpCase("sigmoid", MF.sigmoid, torch.sigmoid, ("input",), _unary_inputs, ((1, 1), (8, 5), (3, 4, 5))),
    OpCase("tanh", MF.tanh, torch.tanh, ("input",), _unary_inputs, ((1, 1), (8, 5), (3, 4, 5))),
    OpCase("relu", MF.relu, torch.relu, ("input",), _unary_inputs, ((1, 1), (8, 5), (3, 4, 5))),
    OpCase("dropout", lambda x, mask: DropoutFunction.apply(x, mask, 1 / 0.75), lambda x, mask: x * mask / 0.75,
           ("input", "mask"), _dropout_inputs, ((1, 1), (8, 5), (3, 4, 5))),
    *_loss_cases(),
]
CASES_BY_NAME = {case.name: case for case in OP_CASES}


def compare(case, shape, dtype, device="cpu", noncontiguous=False, gradchecks=None, seed=0):
    """compare_fns for one OpCase at one shape; gradcheck and gradgradcheck too in float64 (or when asked)."""
    generator = torch.Generator().manual_seed(seed)
    inputs = case.make_inputs(shape, dtype, device, generator, noncontiguous)
    label = f"{case.name}{list(shape)}" + (" non-contiguous" if noncontiguous else "")
    result = compare_fns(case.manual, case.native, inputs, case.input_names, label, noncontiguous, seed, case.name)
    if gradchecks if gradchecks is not None else dtype == torch.float64:
        # NOTE: the float64 inputs are drawn afresh (not cast) so gradcheck sees full-precision random values
        inputs64 = case.make_inputs(shape, torch.float64, device, torch.Generator().manual_seed(seed), noncontiguous)
        run_gradchecks(result, case.manual, inputs64)
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
