"""PyTorch's own sample inputs for these ops (its OpInfo database, what torch tests its operators with): manual_bp
accepts every one, and matches native in output and every gradient (float64, float32, bfloat16)."""
import sys
import types
import unittest

import pytest
import torch

import manual_bp.functional as MF
from manual_bp.testing import TOLERANCES

# NOTE: torch.testing._internal imports `expecttest` only for its TestCase base class; where that test-only package
# is missing a stand-in serves, since no expect-test is run here. Importing it also freezes torch.backends' flags
# for the whole process (torch's own test suite sets them only through context managers), which would break every
# later test that lets Lightning set cudnn flags: the flag is put back as it was.
sys.modules.setdefault("expecttest", types.SimpleNamespace(TestCase=unittest.TestCase))
_frozen = torch.backends.flags_frozen()
op_db = pytest.importorskip("torch.testing._internal.common_methods_invocations").op_db
torch.backends.flags_frozen.__globals__["__allow_nonbracketed_mutation_flag"] = not _frozen  # the module's own global

MANUAL = {
    "nn.functional.linear": MF.linear, "sigmoid": MF.sigmoid, "tanh": MF.tanh, "nn.functional.relu": MF.relu,
    "nn.functional.dropout": MF.dropout, "nn.functional.mse_loss": MF.mse_loss,
    "nn.functional.binary_cross_entropy": MF.binary_cross_entropy,
    "nn.functional.binary_cross_entropy_with_logits": MF.binary_cross_entropy_with_logits,
    "nn.functional.cross_entropy": MF.cross_entropy,
}
OPS = [pytest.param(op, id=op.name + (f".{op.variant_test_name}" if op.variant_test_name else ""))
       for op in op_db if op.name in MANUAL]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("op", OPS)
def test_every_torch_sample_is_accepted_and_matches_native(op, dtype):
    rtol, atol = TOLERANCES[dtype]
    count = 0
    for sample in op.sample_inputs("cpu", dtype, requires_grad=True):
        args, kwargs = (sample.input, *sample.args), dict(sample.kwargs)
        # NOTE: torch's dropout sample runs under torch.manual_seed(42) (OpInfo's wrapper_set_seed); the same seed
        # draws the same mask here, since both draw bernoulli(1 - p) on a tensor like the input.
        torch.manual_seed(42)
        native = op.op(*args, **kwargs)
        torch.manual_seed(42)
        manual = MANUAL[op.name](*args, **kwargs)
        torch.testing.assert_close(manual, native, rtol=rtol, atol=atol, equal_nan=True, msg=lambda m: f"{sample}: {m}")
        leaves = [t for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor) and t.requires_grad]
        if native.requires_grad:
            upstream = torch.randn_like(native)
            expected = torch.autograd.grad(native, leaves, upstream, allow_unused=True)
            actual = torch.autograd.grad(manual, leaves, upstream, allow_unused=True)
            for got, want in zip(actual, expected):
                if want is not None:
                    torch.testing.assert_close(got, want, rtol=rtol, atol=atol, equal_nan=True,
                                               msg=lambda m: f"gradient, {sample}: {m}")
        count += 1
    assert count > 0
