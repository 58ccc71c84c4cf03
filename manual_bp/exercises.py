"""Exercises with a checker: write the backward of the lecture's layers yourself, and have it graded against torch.

    python -m manual_bp.exercises check                       # every exercise in ./exercises
    python -m manual_bp.exercises check linear mse            # some of them
    python -m manual_bp.exercises check --dir my_exercises    # another folder (copy exercises/ first)
    python -m manual_bp.exercises solutions                   # where manual_bp's own answer to each one is

Each exercise file (exercises/<name>.py) holds one torch.autograd.Function whose forward is given and whose backward
raises NotImplementedError, with the derivative to implement in its docstring. The checker runs it on a few shapes
in float64 against torch's own op (manual_bp.testing.compare_fns: output and every gradient, with the same random
upstream gradient) and gradcheck, and prints one line per exercise and shape: pass, or what is wrong — which
gradient, how many elements, how far off, on what shape, or where it raised. It never prints a stack trace.
"""
import argparse
import dataclasses
import importlib.util
import re
import sys
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F

from manual_bp.case_inputs import (
    cross_entropy_inputs,
    linear_inputs,
    normalization_inputs,
    pair_inputs,
    unary_inputs,
)
from manual_bp.testing import compare_fns


@dataclasses.dataclass(frozen=True)
class Exercise:
    """class_name in exercises/<name>.py against reference; make_inputs(generator, shape) -> float64 inputs (drawn
    by manual_bp/case_inputs.py, as the op registry's)."""

    name: str
    class_name: str
    reference: object
    make_inputs: object
    input_names: tuple
    shapes: tuple
    solution: str
    constants: tuple = ()


def _float64(make_inputs):
    """A case_inputs maker (the op registry's), drawing contiguous float64 inputs on the CPU."""
    return lambda generator, shape: make_inputs(shape, torch.float64, "cpu", generator, False)


EXERCISES = {exercise.name: exercise for exercise in (
    Exercise("sigmoid", "Sigmoid", torch.sigmoid, _float64(unary_inputs), ("input",), ((1, 1), (8, 5)),
             "manual_bp/ops/activations.py, SigmoidFunction.backward"),
    Exercise("linear", "Linear", F.linear, _float64(linear_inputs), ("input", "weight", "bias"), ((1, 3, 2), (8, 5, 4)),
             "manual_bp/ops/linear.py, LinearFunction.backward"),
    Exercise("mse", "MSELoss", F.mse_loss, _float64(pair_inputs((-2.0, 2.0))), ("input", "target"), ((1, 1), (8, 5)),
             "manual_bp/ops/mse_loss.py, MSELossFunction.backward"),
    Exercise("bce", "BCELoss", F.binary_cross_entropy, _float64(pair_inputs((0.05, 0.95))), ("input", "target"),
             ((1, 1), (8, 5)), "manual_bp/ops/binary_cross_entropy.py, BCELossFunction.backward", ("target",)),
    Exercise("softmax_cross_entropy", "SoftmaxCrossEntropy", F.cross_entropy, _float64(cross_entropy_inputs),
             ("logits", "target"), ((1, 3), (8, 5)),
             "manual_bp/ops/cross_entropy.py, CrossEntropyLossFunction.backward "
             "(the grad_output part; grad_log_probs only serves second derivatives)"),
    Exercise("batch_norm", "BatchNorm", lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True, eps=1e-5),
             _float64(normalization_inputs(None)), ("input", "weight", "bias"), ((4, 3), (16, 5)),
             "manual_bp/ops/batch_norm.py, BatchNormFunction.backward (and layer_norm.py, normalized_grad_input)"),
)}


def load(folder, exercise):
    """The exercise's Function class from folder/<name>.py."""
    path = Path(folder) / f"{exercise.name}.py"
    spec = importlib.util.spec_from_file_location(f"exercise_{exercise.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, exercise.class_name)


def where(error, folder):
    """' at <file>:<line>' of the deepest frame of the traceback inside the exercise folder, or ''."""
    folder = Path(folder).resolve()
    frames = [frame for frame in traceback.extract_tb(error.__traceback__)
              if Path(frame.filename).resolve().is_relative_to(folder)]
    if not frames:
        return ""
    path = Path(frames[-1].filename).resolve()
    shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
    return f" at {shown}:{frames[-1].lineno}"


class GradientError(Exception):
    """What is wrong with one gradient the learner's backward returned, said in the exercise's names."""


def gradients_checked(function, input_names):
    """The learner's Function with a backward that checks what it returns, gradient by gradient, before autograd
    sees it.

    NOTE: autograd sums a gradient that broadcasts to its input's shape without a word (a (B, out) ∂L/∂b arrives as
    its sum over the batch, (out,)), so a sum left out of the derivation would pass; and a None for an input that
    needs a gradient surfaces as torch.autograd.grad's advice to set allow_unused, a setting of the checker's.
    """
    def shapes_of(inputs):
        return [tuple(value.shape) if isinstance(value, torch.Tensor) else None for value in inputs]

    def forward(ctx, *inputs):
        ctx.input_shapes = shapes_of(inputs)
        return function.forward(ctx, *inputs)

    def setup_context(ctx, inputs, output):
        ctx.input_shapes = shapes_of(inputs)
        return function.setup_context(ctx, inputs, output)

    def backward(ctx, *grad_outputs):
        grads = function.backward(ctx, *grad_outputs)
        for name, grad, shape, needed in zip(input_names, grads if isinstance(grads, tuple) else (grads,),
                                             ctx.input_shapes, ctx.needs_input_grad):
            if grad is None and needed:
                raise GradientError(f"grad {name} is None, but {name} needs a gradient: return ∂L/∂{name} (None "
                                    "only for an input that gets none)")
            if isinstance(grad, torch.Tensor) and shape is not None and tuple(grad.shape) != shape:
                hint = ("a sum missing?" if grad.dim() > len(shape) else "a sum too many?" if grad.dim() < len(shape)
                        else "a transpose or a sum missing?")
                raise GradientError(f"grad {name} has shape {tuple(grad.shape)}, expected {shape}: {hint}")
        return grads

    # NOTE: the learner's own style of Function: forward(ctx, ...), or forward(...) with setup_context
    own_setup = function.setup_context is not torch.autograd.Function.setup_context
    methods = {"forward": forward, "backward": backward} if not own_setup else \
        {"forward": function.forward, "setup_context": setup_context, "backward": backward}
    return type(function.__name__, (function,), {name: staticmethod(method) for name, method in methods.items()})


def explain(error, exercise, folder):
    """One line for an exception raised while checking."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if isinstance(error, GradientError):
        return message
    count = re.search(r"incorrect number of gradients \(expected (\d+), got (\d+)\)", message)
    if count:
        return (f"backward returned {count.group(2)} gradient(s), expected {count.group(1)}: one per input of forward, "
                "None for an input that gets none")
    return f"raised {type(error).__name__}{where(error, folder)}: {message}"


def grade(exercise, folder):
    """[(shape or None, None if passed else what is wrong)]: one entry per shape, or one for the whole exercise."""
    try:
        function = gradients_checked(load(folder, exercise), exercise.input_names)
    except FileNotFoundError:
        return [(None, f"no file {Path(folder) / exercise.name}.py (copy it from the project's exercises/ folder)")]
    except Exception as error:  # a syntax error, a missing class: say where, as Python would, in one line
        return [(None, f"cannot be loaded: {explain(error, exercise, folder)}")]
    rows = []
    for shape in exercise.shapes:
        inputs = exercise.make_inputs(torch.Generator().manual_seed(0), shape)
        try:
            result = compare_fns(function.apply, exercise.reference, inputs, exercise.input_names,
                                 f"{exercise.name}{list(shape)}", constants=exercise.constants)
            differentiable = [t.detach().requires_grad_(name not in exercise.constants) if t.is_floating_point() else t
                              for t, name in zip(inputs, exercise.input_names)]
            gradcheck = torch.autograd.gradcheck(function.apply, differentiable, raise_exception=False)
        except NotImplementedError as error:
            return [(None, f"not written yet: backward raises NotImplementedError({str(error)!r})")]
        except Exception as error:
            rows.append((shape, explain(error, exercise, folder)))
            continue
        problems = [failure.replace("from native", "from torch's") for failure in result.failures]
        if not gradcheck and not problems:
            problems.append("gradcheck failed: the backward disagrees with finite differences of the forward")
        rows.append((shape, "; ".join(problems) or None))
    return rows


def check(names, folder, out=sys.stdout):
    """Grade the named exercises (all when empty); print one line per exercise and shape and a summary; 0 if all
    pass."""
    unknown = [name for name in names if name not in EXERCISES]
    if unknown:
        print(f"error: no exercise {', '.join(unknown)}; the exercises are {', '.join(EXERCISES)}", file=out)
        return 2
    counts = {"passed": 0, "failed": 0, "not written yet": 0}
    for name in names or EXERCISES:
        for shape, problem in grade(EXERCISES[name], folder):
            label = f"{name:<22} {str(tuple(shape)) if shape else '':<11}"
            status = "passed" if problem is None else "not written yet" if problem.startswith("not written") \
                else "failed"
            counts[status] += 1
            word = {"passed": "pass", "failed": "FAIL", "not written yet": "todo"}[status]
            print(f"{label} {word}" + (f"  {problem}" if problem else ""), file=out)
    print(", ".join(f"{count} {status}" for status, count in counts.items())
          + ("" if counts["passed"] and not counts["failed"] + counts["not written yet"] else
             "  (answers: python -m manual_bp.exercises solutions)"), file=out)
    return 0 if counts["failed"] + counts["not written yet"] == 0 else 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], prog="python -m manual_bp.exercises")
    commands = parser.add_subparsers(dest="command", required=True)
    grade_parser = commands.add_parser("check", help="grade the exercises (all, or the ones named)")
    grade_parser.add_argument("names", nargs="*", help=f"any of {', '.join(EXERCISES)}")
    grade_parser.add_argument("--dir", default="exercises", help="the folder of the exercise files (default exercises)")
    commands.add_parser("solutions", help="where manual_bp's own answer to each exercise is")
    args = parser.parse_args(argv)
    if args.command == "solutions":
        for exercise in EXERCISES.values():
            print(f"{exercise.name:<22} {exercise.solution}")
        return 0
    return check(args.names, args.dir)


if __name__ == "__main__":
    sys.exit(main())
