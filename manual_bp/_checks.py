"""Input checks at the functional boundary.

Every error names the argument, what was expected and what was given, so a user never has to read a stack
trace from deep inside a kernel (or, worse, train on a silent NaN).
"""
import contextlib

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
    check_same_device(name, tensor, reference_name, reference)


def check_same_device(name, tensor, reference_name, reference):
    if tensor.device != reference.device:
        raise ValueError(f"{name} must be on the device of {reference_name} ({reference.device}), got {tensor.device}")


def check_same_shape(input, target, name="target"):
    if input.shape != target.shape:
        raise ValueError(
            f"{name} must have the shape of input, expected {tuple(input.shape)}, got {tuple(target.shape)}"
        )


def check_reduction(reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def check_no_legacy_reduction(size_average, reduce):
    """torch's deprecated size_average / reduce: accepted in torch's positions, refused with the replacement named."""
    if size_average is not None or reduce is not None:
        raise ValueError(
            f"size_average and reduce are deprecated in torch and not supported here (got size_average={size_average}, "
            f"reduce={reduce}); use reduction='mean', 'sum' or 'none'"
        )


def check_broadcasts_to(name, weight, input):
    """weight (or pos_weight) must broadcast to the shape of input, as torch's BCE weights do."""
    check_floating(name, weight)
    try:
        broadcast = torch.broadcast_shapes(weight.shape, input.shape)
    except RuntimeError:
        broadcast = None
    if broadcast != input.shape:
        raise ValueError(f"{name} must broadcast to the shape of input {tuple(input.shape)}, got {tuple(weight.shape)}")
    check_same_dtype_and_device(name, weight, "input", input)


def check_constant(name, weight):
    """torch's fused losses are not differentiable in their weights; neither are these: refuse one that asks for it."""
    if weight.requires_grad and torch.is_grad_enabled():
        raise ValueError(
            f"{name} must not require grad: the loss is not differentiable with respect to {name} "
            f"(as in torch); pass {name}.detach()"
        )


def check_pointwise_loss(input, target, size_average, reduce, reduction):
    """The opening checks of the elementwise losses (mse, bce, bce with logits): two floating tensors of one shape,
    dtype and device, and a reduction."""
    check_floating("input", input)
    check_floating("target", target)
    check_same_shape(input, target)
    check_same_dtype_and_device("target", target, "input", input)
    check_no_legacy_reduction(size_average, reduce)
    check_reduction(reduction)


def check_loss_weight(name, weight, input):
    """An optional BCE weight (or pos_weight): broadcasts to input, needs no gradient."""
    if weight is not None:
        check_broadcasts_to(name, weight, input)
        check_constant(name, weight)


def check_per_channel(name, tensor, channels, input):
    """An optional per-channel tensor (C,) of input's dtype and device (batch norm's statistics and affine)."""
    if tensor is None:
        return
    check_floating(name, tensor)
    if tensor.shape != (channels,):
        raise ValueError(f"{name} must have shape ({channels},) for input of shape {tuple(input.shape)}, "
                         f"got {tuple(tensor.shape)}")
    check_same_dtype_and_device(name, tensor, "input", input)


def values_are_checked(tensor):
    """Whether a check of `tensor`'s values runs here.

    NOTE: under torch.compile and torch.func transforms the value checks are skipped (shape and dtype checks still
    run): a check there would break the graph (compile) or see a batch of values as one (vmap).
    """
    return not is_transformed(tensor) and not torch.compiler.is_compiling()


def is_transformed(tensor):
    """Whether tensor is seen through a torch.func transform (vmap, grad, jacrev) here (never while compiling)."""
    return not torch.compiler.is_compiling() and torch._C._functorch.is_functorch_wrapped_tensor(tensor)


def assert_values(ok, message, details):
    """Fail with `message` unless the one-element bool tensor `ok` holds True, without reading it into Python.

    On CUDA the check is a device-side assert queued on the stream (torch._assert_async), the way torch's own
    kernels check class indices: the host never waits for the device, and a CUDA graph can capture it. A failure
    prints `message` in the kernel's assertion line and stops the process's CUDA context ("device-side assert
    triggered", as torch's own checks do). On the CPU `ok` is checked at once, and a failure raises
    ValueError(details()): `details` runs only then, so it may read values (the offending element, the count). On any
    other device (which has no such assert) `ok` is read.
    """
    if ok.device.type == "cuda":
        torch._assert_async(ok, message)
    elif ok.device.type == "cpu":
        try:
            torch._assert_async(ok, message)  # NOTE: the C++ check of one element: no Python read of it
        except RuntimeError:
            raise ValueError(details()) from None
    elif not ok:
        raise ValueError(details())


def check_in_unit_interval(name, tensor):
    """Every element in [0, 1] (a NaN is outside): probabilities and binary targets."""
    if tensor.numel() == 0 or not values_are_checked(tensor):
        return
    low, high = torch.aminmax(tensor.detach())  # NOTE: one pass; a NaN makes both comparisons False, so it fails
    assert_values((low >= 0) & (high <= 1), f"{name} must have every element in [0, 1]",
                  lambda: unit_interval_details(name, tensor.detach()))


def unit_interval_details(name, tensor):
    outside = ~((tensor >= 0) & (tensor <= 1))  # NaN counts as outside
    return (f"{name} must have every element in [0, 1], got {int(outside.sum())} outside, "
            f"e.g. {tensor[outside][0].item()}")


def is_vmapped(tensor):
    """Whether `tensor` carries a torch.func.vmap batch dimension at any level (under grad, jacrev, ... too).

    NOTE: under torch.compile this answers False (dynamo cannot trace the functorch queries); a vmap traced by
    torch.compile then meets functorch's own error instead of the clear one.
    """
    if torch.compiler.is_compiling():
        return False
    functorch = torch._C._functorch
    while functorch.is_functorch_wrapped_tensor(tensor):
        if functorch.is_batchedtensor(tensor):
            return True
        tensor = functorch.get_unwrapped(tensor)
    return False


@contextlib.contextmanager
def outside_func_transforms(tensor):
    """Suspend the torch.func transforms around the block and yield `tensor` unwrapped to a plain tensor.

    NOTE: for batch norm's running statistics under torch.func.grad / jacrev (refuse vmap first: a batched tensor
    unwraps to the whole batch): functorch forbids an in-place write into a tensor captured from outside the
    transform, which is what a buffer is. The update reads no gradient, so it runs as if outside the transform, as
    torch's own batch_norm kernel does. Under torch.compile nothing is wrapped and the block runs as is.
    """
    functorch = torch._C._functorch
    if torch.compiler.is_compiling() or not functorch.is_functorch_wrapped_tensor(tensor):
        yield tensor
        return
    from torch._functorch.pyfunctorch import temporarily_clear_interpreter_stack

    with temporarily_clear_interpreter_stack():
        while functorch.is_functorch_wrapped_tensor(tensor):
            tensor = functorch.get_unwrapped(tensor)
        yield tensor
