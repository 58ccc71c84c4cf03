"""Compare every manual_bp op with its native PyTorch twin: output, every input gradient, gradcheck, gradgradcheck.

    python -m manual_bp.check            # CPU, and CUDA when present; exits 1 on any failure
    python -m manual_bp.check --device cpu

The tests use the same helper (`compare`), so what this prints is what the test suite asserts.
"""
import argparse
import dataclasses
import sys

import torch
import torch.nn.functional as F

from manual_bp import functional as MF
from manual_bp.functions import DropoutFunction

# (rtol, atol) per dtype: torch.testing's defaults for float32/float64. NOTE: in half precision torch's fused
# kernels compute in float32 and round once, while a chain of half-precision ops rounds at each step, so two
# correct results differ by up to ~2 ulp (bfloat16 eps 7.8e-3, float16 eps 9.8e-4).
TOLERANCES = {
    torch.float64: (1e-7, 1e-7),
    torch.float32: (1.3e-6, 1e-5),
    torch.bfloat16: (1.6e-2, 1e-2),
    torch.float16: (2e-3, 1e-3),
}


def make_tensor(shape, dtype, device, generator, low=None, high=None, noncontiguous=False):
    """A random tensor; uniform in [low, high) if given, else standard normal. Non-contiguous: every 2nd element."""
    full_shape = (*shape, 2) if noncontiguous else tuple(shape)
    if low is None:
        values = torch.randn(full_shape, generator=generator, dtype=torch.float64)
    else:
        values = torch.rand(full_shape, generator=generator, dtype=torch.float64) * (high - low) + low
    values = values.to(device=device, dtype=dtype)
    return values[..., 0] if noncontiguous else values


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


@dataclasses.dataclass
class Comparison:
    """Errors of manual vs native: {"output" | "grad <input name>": (max abs error, max rel error)}."""

    op: str
    label: str
    dtype: torch.dtype
    device: str
    errors: dict = dataclasses.field(default_factory=dict)
    failures: list = dataclasses.field(default_factory=list)
    gradcheck: object = None  # True / False / None (not run)
    gradgradcheck: object = None

    @property
    def ok(self):
        return not self.failures and self.gradcheck is not False and self.gradgradcheck is not False

    def raise_if_failed(self):
        if not self.ok:
            raise AssertionError(f"{self.label} ({self.dtype}, {self.device}): " + "; ".join(self.failures))


def _errors(actual, expected):
    diff = (actual.double() - expected.double()).abs()
    scale = expected.double().abs().max().item() if expected.numel() else 0.0
    max_abs = diff.max().item() if diff.numel() else 0.0
    return max_abs, max_abs / scale if scale > 0 else max_abs


def compare_fns(manual, native, inputs, input_names, label="op", upstream_noncontiguous=False, seed=0, op=None):
    """Run manual and native on the same inputs with the same random upstream gradient; compare everything.

    Floating-point inputs get requires_grad; each gradient is compared with torch.testing.assert_close at the
    dtype's tolerance, and a mismatch is recorded under the failing tensor's name.
    """
    dtype = next(t.dtype for t in inputs if t.is_floating_point())
    device = str(inputs[0].device)
    result = Comparison(op or label, label, dtype, device)
    rtol, atol = TOLERANCES[dtype]
    grad_positions = [i for i, t in enumerate(inputs) if t.is_floating_point()]
    outputs, grads = [], []
    for fn in (manual, native):
        # detach() keeps the layout, so non-contiguous inputs stay non-contiguous
        leaves = [t.detach().requires_grad_() if t.is_floating_point() else t for t in inputs]
        output = fn(*leaves)
        generator = torch.Generator().manual_seed(seed)
        upstream = make_tensor(output.shape, output.dtype, output.device, generator,
                               noncontiguous=upstream_noncontiguous and output.dim() > 0)
        grads.append(torch.autograd.grad(output, [leaves[i] for i in grad_positions], upstream))
        outputs.append(output.detach())
    checks = [("output", outputs[0], outputs[1])]
    checks += [(f"grad {input_names[i]}", m, n) for i, m, n in zip(grad_positions, grads[0], grads[1])]
    for name, actual, expected in checks:
        result.errors[name] = _errors(actual, expected)
        try:
            torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, check_stride=False)
        except AssertionError as error:
            result.failures.append(f"{name} differs from native: {str(error).splitlines()[0]}")
    return result


def compare(case, shape, dtype, device="cpu", noncontiguous=False, run_gradchecks=None, seed=0):
    """compare_fns for one OpCase at one shape; gradcheck and gradgradcheck too in float64 (or when asked)."""
    generator = torch.Generator().manual_seed(seed)
    inputs = case.make_inputs(shape, dtype, device, generator, noncontiguous)
    label = f"{case.name}{list(shape)}" + (" non-contiguous" if noncontiguous else "")
    result = compare_fns(case.manual, case.native, inputs, case.input_names, label, noncontiguous, seed, case.name)
    if run_gradchecks if run_gradchecks is not None else dtype == torch.float64:
        inputs64 = case.make_inputs(shape, torch.float64, device, torch.Generator().manual_seed(seed), noncontiguous)
        inputs64 = [t.requires_grad_() if t.is_floating_point() else t for t in inputs64]
        result.gradcheck = torch.autograd.gradcheck(case.manual, inputs64, raise_exception=False)
        result.gradgradcheck = torch.autograd.gradgradcheck(case.manual, inputs64, raise_exception=False)
        for name, passed in (("gradcheck", result.gradcheck), ("gradgradcheck", result.gradgradcheck)):
            if not passed:
                result.failures.append(f"{name} failed")
    return result


DTYPES = (torch.float64, torch.float32, torch.bfloat16, torch.float16)


def run_all(devices):
    results = []
    for device in devices:
        for case in OP_CASES:
            for dtype in DTYPES:
                results.append(compare(case, case.shapes[-1], dtype, device))
            results.append(compare(case, case.shapes[-1], torch.float32, device, noncontiguous=True))
            results.append(compare(case, case.shapes[0], torch.float64, device))  # batch size 1
    return results


def _format(errors):
    return " ".join(f"{name}={abs_err:.1e}/{rel_err:.1e}" for name, (abs_err, rel_err) in errors.items())


def print_table(results, file=None):
    file = file or sys.stdout

    def mark(value):
        return "-" if value is None else ("pass" if value else "FAIL")

    print(f"{'op':<52} {'dtype':<9} {'device':<7} {'gradcheck':<9} {'gradgrad':<9} {'status':<6} "
          "max abs/rel error: output, each input gradient", file=file)
    for r in results:
        print(f"{r.label:<52} {str(r.dtype).replace('torch.', ''):<9} {r.device:<7} {mark(r.gradcheck):<9} "
              f"{mark(r.gradgradcheck):<9} {'ok' if r.ok else 'FAIL':<6} {_format(r.errors)}", file=file)
        for failure in r.failures:
            print(f"    {failure}", file=file)


def largest_float32_gradient_errors(results):
    """{op name: largest relative gradient error over its float32 rows}."""
    largest = {}
    for r in results:
        if r.dtype == torch.float32:
            grad_errors = [rel for name, (_, rel) in r.errors.items() if name.startswith("grad")]
            largest[r.op] = max([largest.get(r.op, 0.0), *grad_errors])
    return largest


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("all", "cpu", "cuda"), default="all",
                        help="all: CPU, and CUDA when present (default)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if args.device == "all" else [args.device]
    results = run_all(devices)
    print_table(results)
    print("\nlargest float32 relative gradient error per op:")
    for op, error in largest_float32_gradient_errors(results).items():
        print(f"  {op:<40} {error:.2e}")
    failed = [r for r in results if not r.ok]
    print(f"\n{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
