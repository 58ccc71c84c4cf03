"""`Function`, the base class of every manual_bp op: torch.func's style of autograd.Function, at the old style's cost.

Each op is written as torch's docs ask for torch.func (vmap, grad, jacrev) and torch.compile:

    class ReLUFunction(Function):
        @staticmethod
        def forward(input, inplace=False): ...           # no ctx: the arithmetic alone
        @staticmethod
        def setup_context(ctx, inputs, output): ...      # what backward needs
        @staticmethod
        def backward(ctx, grad_output): ...              # the handwritten derivative

and `Function` sets `generate_vmap_rule = True` for all of them.

NOTE: speed. When a Function defines setup_context, torch's `Function.apply` binds every call's arguments against
forward's signature (`inspect.signature(...).bind(...)`, in Python): about 10 µs a call, as much as all the rest of
a small op (measured on the AMD EPYC VM: a 4×4 ReLU forward + backward 27 µs this way, 17 µs written as
`forward(ctx, ...)`, 13 µs native). The binding only fills in default arguments, so `apply` below skips it when a
call passes every argument positionally and no torch.func transform is active: it runs a twin Function whose
`forward(ctx, *inputs)` calls the op's own forward and setup_context, with the op's own backward. Anything else
(keyword or missing arguments, vmap / grad / jacrev) goes through torch's apply; torch.compile traces the op in its
setup_context form either way. The twin has the op's name, so `grad_fn` reads `ReLUFunctionBackward` on both paths.

Also here: `overwrite`, the `out=` a backward may give the op that consumes its own temporary, and `upcast`.
"""
import inspect

import torch


class Function(torch.autograd.Function):
    generate_vmap_rule = True
    _arity, _twin = None, None  # set for each op by __init_subclass__

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        parameters = inspect.signature(cls.forward).parameters.values()
        positional = all(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters)
        # NOTE: only an op in the setup_context form with a fixed list of arguments gets the twin; a subclass written
        # as forward(ctx, ...) or with *args keeps torch's apply (_arity None never matches)
        has_setup_context = cls.setup_context is not torch.autograd.Function.setup_context
        cls._arity = len(parameters) if positional and has_setup_context else None
        cls._twin = _twin_with_ctx(cls) if cls._arity is not None else None

    @classmethod
    def apply(cls, *args, **kwargs):
        # NOTE: torch's own apply asks `_are_functorch_transforms_active` the same way to pick its path
        if kwargs or len(args) != cls._arity or torch._C._are_functorch_transforms_active():
            return super().apply(*args, **kwargs)
        return cls._twin.apply(*args)


def _twin_with_ctx(op):
    """op as a Function in the `forward(ctx, *inputs)` style: the same forward, setup_context and backward.

    Each is looked up on op at call time, so a backward patched later (a mock, a debugging wrapper) runs on both
    paths.
    """
    def forward(ctx, *inputs):
        output = op.forward(*inputs)
        op.setup_context(ctx, inputs, output)
        return output

    def backward(ctx, *grad_outputs):
        return op.backward(ctx, *grad_outputs)

    # NOTE: type(...) rather than a class statement, so that the name (and with it the name of the backward node,
    # which autograd makes when the class is created) is the op's own
    return type(op.__name__, (torch.autograd.Function,), {
        "forward": staticmethod(forward), "backward": staticmethod(backward),
        "__module__": op.__module__, "__qualname__": f"{op.__qualname__}._twin",
    })


def overwrite(temporary):
    """The `out=` for the op that consumes `temporary`, a tensor backward made itself: `temporary` (its memory is
    reused), or None (a new tensor) while a second derivative is recorded or a torch.func transform runs.

    NOTE: speed. At 128×800 a fresh result tensor costs about as much as the pass that fills it (on the CPU more of
    the working set falls out of cache), so an activation's backward writes ∂L/∂Z over its own temporary. Not under
    create_graph=True, where autograd refuses `out=` and may have saved the temporary for the second derivative, nor
    under vmap / grad / jacrev, whose batching rules need each op's functional form.
    """
    if torch.is_grad_enabled() or torch._C._are_functorch_transforms_active():
        return None
    return temporary


def upcast(tensor):
    """float32 for a float16 / bfloat16 tensor, else the tensor itself.

    NOTE: torch's kernels for GELU and the normalisations compute a half-precision input in float32 and round once;
    a chain of half-precision ops rounds at every step (the tanh GELU's z³, a variance) and lands several ulp away.
    """
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor
