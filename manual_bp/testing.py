"""Public helpers to prove a handwritten backward against a reference: use them on any autograd Function.

    from manual_bp.testing import compare_fns, print_table
    result = compare_fns(MySoftplus.apply, torch.nn.functional.softplus, (x,), ("input",), gradchecks=True)
    result.raise_if_failed()          # AssertionError naming the tensor that differs
    print_table([result])             # the report `python -m manual_bp.check` prints

`compare_fns` runs both functions on the same inputs with the same random upstream gradient and compares the
output and every floating-point input's gradient at the dtype's tolerance; with `gradchecks` it also runs
torch.autograd.gradcheck and gradgradcheck on float64 copies of the inputs.
"""
import dataclasses
import re
import sys

import torch

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


def is_float_tensor(value):
    return isinstance(value, torch.Tensor) and value.is_floating_point()


def differentiable_positions(inputs, input_names, constants=()):
    """Positions of the floating-point tensor inputs that get a gradient: all but those named in `constants` (other
    arguments, a Python number or a string, are passed as they are)."""
    return [i for i, t in enumerate(inputs) if is_float_tensor(t) and input_names[i] not in constants]


def _mismatch(error):
    """torch.testing's message in one line: how many elements differ, by how much, against what was allowed."""
    message = str(error)
    count = re.search(r"Mismatched elements: (\d+ / \d+ \([\d.]+%\))", message)
    absolute = re.search(r"Greatest absolute difference: (\S+) at index (\(.*?\)) \(up to (\S+) allowed\)", message)
    relative = re.search(r"Greatest relative difference: (\S+) at index .*? \(up to (\S+) allowed\)", message)
    if not (count and absolute and relative):
        return "; ".join(line.strip() for line in message.splitlines() if line.strip())
    return (f"{count.group(1)} elements off, greatest absolute difference {float(absolute.group(1)):.3g} at "
            f"{absolute.group(2)} (allowed {absolute.group(3)}), greatest relative {float(relative.group(1)):.3g} "
            f"(allowed {relative.group(2)})")


def compare_fns(manual, native, inputs, input_names, label="op", upstream_noncontiguous=False, seed=0, op=None,
                gradchecks=False, constants=(), tolerance=None):
    """Run manual and native on the same inputs with the same random upstream gradient; compare everything.

    Floating-point inputs get requires_grad, except those named in `constants` (e.g. class weights, which torch's
    fused losses do not differentiate); each gradient is compared with torch.testing.assert_close at the dtype's
    tolerance, and a mismatch is recorded under the failing tensor's name. gradchecks: also run gradcheck and
    gradgradcheck of `manual` on float64 copies of the inputs. tolerance: (rtol, atol) instead of the dtype's.
    """
    check_arguments(inputs, input_names)
    dtype = next(t.dtype for t in inputs if is_float_tensor(t))
    device = str(next(t.device for t in inputs if isinstance(t, torch.Tensor)))
    result = Comparison(op or label, label, dtype, device)
    rtol, atol = tolerance or TOLERANCES[dtype]
    grad_positions = differentiable_positions(inputs, input_names, constants)
    outputs, grads = [], []
    for fn in (manual, native):
        # detach() keeps the layout, so non-contiguous inputs stay non-contiguous
        leaves = [t.detach().requires_grad_() if i in grad_positions else t for i, t in enumerate(inputs)]
        output = fn(*leaves)
        generator = torch.Generator().manual_seed(seed)
        upstream = make_tensor(output.shape, output.dtype, output.device, generator,
                               noncontiguous=upstream_noncontiguous and output.dim() > 0)
        grads.append(torch.autograd.grad(output, [leaves[i] for i in grad_positions], upstream))
        outputs.append(output.detach())
    checks = [("output", outputs[0], outputs[1])]
    checks += [(f"grad {input_names[i]}", m, n) for i, m, n in zip(grad_positions, grads[0], grads[1])]
    for name, actual, expected in checks:
        if actual.shape != expected.shape:
            result.errors[name] = (float("inf"), float("inf"))
            result.failures.append(f"{name} has shape {tuple(actual.shape)}, expected {tuple(expected.shape)}")
            continue
        result.errors[name] = _errors(actual, expected)
        try:
            torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, check_stride=False)
        except AssertionError as error:
            result.failures.append(f"{name} differs from native: {_mismatch(error)}")
    if gradchecks:
        run_gradchecks(result, manual, [t.detach().double() if is_float_tensor(t) else t for t in inputs],
                       grad_positions)
    return result


def check_arguments(inputs, input_names):
    """compare_fns' inputs: a tuple of the arguments with a floating-point tensor among them, and one name each."""
    if not isinstance(inputs, (tuple, list)):
        raise TypeError(f"inputs must be a tuple of the functions' arguments, e.g. (x,) for one, got "
                        f"{type(inputs).__name__}")
    if isinstance(input_names, str) or not isinstance(input_names, (tuple, list)) or \
            not all(isinstance(name, str) for name in input_names):
        raise TypeError(f"input_names must be a tuple of names, one per input, e.g. ('input',), got {input_names!r}")
    if len(input_names) != len(inputs):
        raise ValueError(f"input_names must name each of the {len(inputs)} input(s), got {len(input_names)}: "
                         f"{tuple(input_names)}")
    if not any(is_float_tensor(value) for value in inputs):
        raise ValueError("inputs must hold a floating-point tensor, whose gradient is compared; got "
                         f"{[type(value).__name__ for value in inputs]}")


def run_gradchecks(result, fn, inputs64, grad_positions=None):
    """gradcheck and gradgradcheck of fn on float64 inputs (numerical vs analytical derivatives), into result.

    grad_positions: the inputs to differentiate (default: every floating-point one).
    """
    if grad_positions is None:
        grad_positions = [i for i, t in enumerate(inputs64) if is_float_tensor(t)]
    inputs64 = [t.requires_grad_() if i in grad_positions else t for i, t in enumerate(inputs64)]
    result.gradcheck = torch.autograd.gradcheck(fn, inputs64, raise_exception=False)
    result.gradgradcheck = torch.autograd.gradgradcheck(fn, inputs64, raise_exception=False)
    if not result.gradcheck:
        result.failures.append("gradcheck failed: the backward disagrees with finite differences of the forward")
    if not result.gradgradcheck:
        result.failures.append("gradgradcheck failed: the backward is not differentiable as written (a tensor made "
                               "inside forward and saved, .detach(), .data or .item() in backward?)"
                               if result.gradcheck else "gradgradcheck failed")
    return result


def _format(errors):
    return " ".join(f"{name}={abs_err:.1e}/{rel_err:.1e}" for name, (abs_err, rel_err) in errors.items())


def print_table(results, file=None):
    """One row per Comparison: gradcheck, gradgradcheck, status, largest abs/rel error of every tensor."""
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
