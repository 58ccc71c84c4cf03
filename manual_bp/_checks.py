"""Input checks at the functional boundary.

Every error names the argument, what was expected and what was given, so a user never has to read a stack
trace from deep inside a kernel (or, worse, train on a silent NaN).
"""
import torch

REDUCTIONS = ("none", "mean", "sum")


def check_tensor(name, value):
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")


def check_floating(name, tensor):
    check_tensor(name, tensor)
    if not tensor.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor (float16, bfloat16, float32 or float64), got dtype {tensor.dtype}"
        )


def check_same_dtype_and_device(name, tensor, reference_name, reference):
    if tensor.dtype != reference.dtype:
        raise TypeError(f"{name} must have the dtype of {reference_name} ({reference.dtype}), got {tensor.dtype}")
    if tensor.device != reference.device:
        raise ValueError(f"{name} must be on the device of {reference_name} ({reference.device}), got {tensor.device}")


def check_same_shape(input, target):
    if input.shape != target.shape:
        raise ValueError(
            f"target must have the shape of input, expected {tuple(input.shape)}, got {tuple(target.shape)}"
        )


def check_reduction(reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def values_are_inspectable(tensor):
    """Whether a data-dependent check may read the values of `tensor` here.

    NOTE: under torch.compile, torch.func transforms and CUDA-graph capture a Python `if` on tensor values would
    break the graph, fail, or force a host-device sync; there the value checks are skipped (shape and dtype checks
    still run).
    """
    if torch.compiler.is_compiling() or torch._C._functorch.is_functorch_wrapped_tensor(tensor):
        return False
    return not (tensor.is_cuda and torch.cuda.is_current_stream_capturing())


def check_in_unit_interval(name, tensor):
    if not values_are_inspectable(tensor):
        return
    outside = ~((tensor >= 0) & (tensor <= 1))  # NaN counts as outside
    if outside.any():
        first = tensor.detach()[outside][0].item()
        count = int(outside.sum())
        raise ValueError(f"{name} must have every element in [0, 1], got {count} outside, e.g. {first}")
