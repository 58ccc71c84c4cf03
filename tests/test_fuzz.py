"""Property-based tests (hypothesis): over shapes, batch sizes (1 included), dtypes, value ranges and layouts,
each manual op equals its native twin in output and every gradient, or both raise."""
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import manual_bp.functional as MF
from manual_bp.cases import OP_CASES
from manual_bp.testing import compare_fns

UNBOUNDED_INPUT = ("linear", "sigmoid", "tanh", "relu", "dropout", "mse_loss", "binary_cross_entropy_with_logits",
                   "cross_entropy")
sizes = st.integers(1, 6)


def shapes_for(case):
    if case.name == "linear":
        return st.tuples(sizes, sizes, sizes)  # (batch, in_features, out_features)
    if case.name.startswith("cross_entropy"):
        return st.one_of(st.tuples(st.integers(2, 6)), st.tuples(sizes, st.integers(2, 6)))  # (C,) or (N, C)
    return st.lists(sizes, min_size=1, max_size=3).map(tuple)


@settings(max_examples=300, deadline=None)
@given(case=st.sampled_from(OP_CASES), data=st.data(), dtype=st.sampled_from([torch.float32, torch.float64]),
       noncontiguous=st.booleans(), seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([1e-3, 1.0, 30.0]))
def test_manual_equals_native_over_shapes_dtypes_values_and_layouts(case, data, dtype, noncontiguous, seed, scale):
    shape = data.draw(shapes_for(case), label="shape")
    inputs = case.make_inputs(shape, dtype, "cpu", torch.Generator().manual_seed(seed), noncontiguous)
    if case.name.split("[")[0] in UNBOUNDED_INPUT:
        inputs[0].mul_(scale)  # in place: keeps the (non-contiguous) layout
    compare_fns(case.manual, case.native, inputs, case.input_names, f"{case.name}{list(shape)} x{scale}",
                upstream_noncontiguous=noncontiguous, seed=seed).raise_if_failed()


def assert_same_outcome(manual_fn, native_fn, *args):
    """Both raise, or both return equal values."""
    outcomes = []
    for fn in (manual_fn, native_fn):
        try:
            outcomes.append((fn(*args), None))
        except (ValueError, TypeError, RuntimeError, IndexError) as error:
            outcomes.append((None, error))
    (manual, manual_error), (native, native_error) = outcomes
    assert (manual_error is None) == (native_error is None), (manual_error, native_error)
    if manual_error is None:
        torch.testing.assert_close(manual, native)


values = st.one_of(st.floats(-0.5, 1.5, width=32), st.just(float("nan")))


@settings(max_examples=200, deadline=None)
@given(pairs=st.lists(st.tuples(values, values), min_size=1, max_size=8))
def test_binary_cross_entropy_out_of_range_both_raise_or_both_agree(pairs):
    input, target = (torch.tensor(column) for column in zip(*pairs))
    assert_same_outcome(MF.binary_cross_entropy, F.binary_cross_entropy, input, target)


@settings(max_examples=200, deadline=None)
@given(classes=st.integers(1, 5), targets=st.lists(st.integers(-2, 6), min_size=1, max_size=6))
def test_cross_entropy_class_index_out_of_range_both_raise_or_both_agree(classes, targets):
    assert_same_outcome(MF.cross_entropy, F.cross_entropy, torch.randn(len(targets), classes), torch.tensor(targets))


@settings(max_examples=100, deadline=None)
@given(batch=sizes, in_features=sizes, columns=sizes, out_features=sizes)
def test_linear_shape_mismatch_both_raise_or_both_agree(batch, in_features, columns, out_features):
    assert_same_outcome(MF.linear, F.linear, torch.randn(batch, columns), torch.randn(out_features, in_features))
