"""The next lecture's layers as nn.Modules beside their torch.nn twins: state dicts both ways, batch norm's running
statistics over several training steps (momentum, momentum=None, track_running_stats=False), train and eval mode,
and the float32 accuracy of the normalisations against a float64 reference."""
import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import example, given, settings
from hypothesis import strategies as st

import manual_bp.functional as MF
import manual_bp.nn as mnn
from manual_bp import cases
from manual_bp.testing import TOLERANCES

TWINS = [
    pytest.param(lambda nn: nn.BatchNorm1d(4), id="BatchNorm1d"),
    pytest.param(lambda nn: nn.BatchNorm1d(4, momentum=None, eps=1e-3), id="BatchNorm1d-momentum-None"),
    pytest.param(lambda nn: nn.BatchNorm1d(4, affine=False), id="BatchNorm1d-no-affine"),
    pytest.param(lambda nn: nn.BatchNorm1d(4, bias=False), id="BatchNorm1d-no-bias"),
    pytest.param(lambda nn: nn.BatchNorm1d(4, track_running_stats=False), id="BatchNorm1d-no-running-stats"),
    pytest.param(lambda nn: nn.LayerNorm(4), id="LayerNorm"),
    pytest.param(lambda nn: nn.LayerNorm((3, 4), bias=False), id="LayerNorm-2-dims-no-bias"),
    pytest.param(lambda nn: nn.LayerNorm(4, elementwise_affine=False), id="LayerNorm-no-affine"),
    pytest.param(lambda nn: nn.NLLLoss(weight=torch.linspace(0.5, 2, 4), ignore_index=1), id="NLLLoss"),
]


def randomize(module):
    """Parameters and buffers off their initial values, so a state dict that did not move would show."""
    with torch.no_grad():
        for tensor in (*module.parameters(), *module.buffers()):
            tensor.add_(torch.rand(tensor.shape).to(tensor.dtype) + 1)
    return module


@pytest.mark.parametrize("make", TWINS)
@pytest.mark.parametrize("direction", ["torch->manual", "manual->torch"])
def test_state_dict_moves_both_ways(make, direction):
    manual, native = make(mnn), make(torch.nn)
    assert isinstance(manual, type(native)) and repr(manual) == repr(native)
    source, target = (native, manual) if direction == "torch->manual" else (manual, native)
    randomize(source)
    target.load_state_dict(source.state_dict())  # strict: the same parameter and buffer names
    assert list(target.state_dict()) == list(source.state_dict())
    for name, value in source.state_dict().items():
        torch.testing.assert_close(target.state_dict()[name], value, rtol=0, atol=0)


def train_steps(module, inputs, train=True):
    """Forward and backward through each input; the outputs and input gradients, and the parameter gradients."""
    module.train(train)
    outputs, input_grads = [], []
    for input in inputs:
        input = input.clone().requires_grad_()
        output = module(input)
        output.backward(torch.linspace(-1, 2, output.numel()).view(output.shape))
        outputs.append(output.detach())
        input_grads.append(input.grad)
    return outputs, input_grads, [p.grad for p in module.parameters()]


def assert_same_steps(manual, native, inputs, train=True):
    for mine, theirs in zip(train_steps(manual, inputs, train), train_steps(native, inputs, train)):
        for a, b in zip(mine, theirs):
            torch.testing.assert_close(a, b)
    for (name, a), b in zip(manual.state_dict().items(), native.state_dict().values()):
        torch.testing.assert_close(a, b, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
@pytest.mark.parametrize("shape", [(8, 4), (6, 4, 5)], ids=["NC", "NCL"])
def test_batch_norm_running_statistics_follow_torch_over_training_steps_then_eval(momentum, shape):
    manual, native = mnn.BatchNorm1d(4, momentum=momentum), torch.nn.BatchNorm1d(4, momentum=momentum)
    randomize(native)
    manual.load_state_dict(native.state_dict())
    steps = [torch.randn(shape) * (i + 1) + i for i in range(4)]
    assert_same_steps(manual, native, steps)  # training: batch statistics, buffers updated
    assert int(manual.num_batches_tracked) == int(native.num_batches_tracked) == 4 + 1  # randomize() added 1
    frozen = copy.deepcopy(manual.state_dict())
    assert_same_steps(manual, native, steps[:2], train=False)  # eval: running statistics, buffers untouched
    for name, value in frozen.items():
        torch.testing.assert_close(manual.state_dict()[name], value, rtol=0, atol=0)


def test_batch_norm_running_var_is_unbiased_and_normalisation_biased():
    layer, x = mnn.BatchNorm1d(3, momentum=1.0, affine=False), torch.randn(6, 3)
    output = layer(x)
    torch.testing.assert_close(layer.running_mean, x.mean(0))
    torch.testing.assert_close(layer.running_var, x.var(0, correction=1))  # N − 1 in the running estimate
    torch.testing.assert_close(output, (x - x.mean(0)) / (x.var(0, correction=0) + layer.eps).sqrt())  # N here


def test_batch_norm_momentum_none_is_the_cumulative_average():
    layer, batches = mnn.BatchNorm1d(3, momentum=None), [torch.randn(5, 3) + i for i in range(3)]
    for batch in batches:
        layer(batch)
    torch.testing.assert_close(layer.running_mean, torch.stack([b.mean(0) for b in batches]).mean(0))
    torch.testing.assert_close(layer.running_var, torch.stack([b.var(0) for b in batches]).mean(0))


def test_batch_norm_without_running_statistics_uses_the_batch_in_eval_mode_too():
    manual = mnn.BatchNorm1d(4, track_running_stats=False)
    native = torch.nn.BatchNorm1d(4, track_running_stats=False)
    assert manual.running_mean is None and manual.num_batches_tracked is None
    inputs = [torch.randn(8, 4) + 3 for _ in range(2)]
    assert_same_steps(manual, native, inputs)
    assert_same_steps(manual, native, inputs, train=False)


def test_batch_norm_eval_mode_uses_running_statistics_trained_by_torch():
    native = torch.nn.BatchNorm1d(4)
    for _ in range(3):
        native(torch.randn(16, 4) * 2 + 1)
    manual = mnn.BatchNorm1d(4)
    manual.load_state_dict(native.state_dict())
    assert_same_steps(manual, native, [torch.randn(5, 4), torch.randn(1, 4)], train=False)  # batch size 1 in eval


@pytest.mark.parametrize("make", [lambda nn: nn.LayerNorm(5), lambda nn: nn.LayerNorm((4, 5), bias=False),
                                  lambda nn: nn.LayerNorm([5], elementwise_affine=False, eps=1e-3)],
                         ids=["int", "tuple-no-bias", "no-affine"])
def test_layer_norm_module_matches_torch_in_train_and_eval(make):
    manual, native = make(mnn), make(torch.nn)
    randomize(native)
    manual.load_state_dict(native.state_dict())
    inputs = [torch.randn(3, 4, 5), torch.randn(1, 4, 5)]
    assert_same_steps(manual, native, inputs)
    assert_same_steps(manual, native, inputs, train=False)


@pytest.mark.parametrize("make", [
    lambda nn: nn.LeakyReLU(), lambda nn: nn.LeakyReLU(0.2), lambda nn: nn.GELU(), lambda nn: nn.GELU("tanh"),
    lambda nn: nn.Softmax(dim=1), lambda nn: nn.LogSoftmax(dim=0), lambda nn: nn.LogSoftmax(dim=-1),
], ids=["LeakyReLU", "LeakyReLU-0.2", "GELU", "GELU-tanh", "Softmax-1", "LogSoftmax-0", "LogSoftmax--1"])
def test_activation_modules_match_torch(make):
    manual, native = make(mnn), make(torch.nn)
    assert repr(manual) == repr(native)
    assert_same_steps(manual, native, [torch.randn(6, 5) * 3, torch.randn(2, 3, 5)])


def test_leaky_relu_in_place_writes_the_input_and_keeps_the_gradient():
    results = []
    for fn in (MF.leaky_relu, F.leaky_relu):
        x = torch.randn(4, 5, requires_grad=True)
        with torch.no_grad():
            x.copy_(torch.linspace(-2, 2, 20).view(4, 5))
        hidden = x * 3  # not a leaf: in place is allowed
        output = fn(hidden, 0.1, inplace=True)
        assert output is hidden
        output.backward(torch.ones_like(output))
        results.append((output.detach(), x.grad))
    torch.testing.assert_close(results[0], results[1])


def test_leaky_relu_in_place_on_a_leaf_that_requires_grad_raises_as_torch():
    for fn in (MF.leaky_relu, F.leaky_relu):
        with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
            fn(torch.randn(3, requires_grad=True), inplace=True)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 4), (2, 3, 4, 5)])
def test_softmax_without_dim_warns_and_picks_torchs_dim(name, shape):
    x = torch.randn(shape)
    with pytest.warns(UserWarning, match="Implicit dimension choice") as record:
        manual = getattr(MF, name)(x)
    assert record[0].filename == __file__  # the warning points at the caller, as torch's
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        native = getattr(F, name)(x)
    torch.testing.assert_close(manual, native)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_dtype_casts_the_input_first_as_torch(name):
    logits = torch.randn(4, 6, dtype=torch.float16)
    results = []
    for fn in (getattr(MF, name), getattr(F, name)):
        x = logits.clone().requires_grad_()
        output = fn(x, dim=1, dtype=torch.float32)
        output.backward(torch.linspace(-1, 1, 24).view(4, 6))
        assert output.dtype == torch.float32 and x.grad.dtype == torch.float16
        results.append((output.detach(), x.grad))
    torch.testing.assert_close(results[0], results[1])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(7, 4), (4,), (3, 4, 5)], ids=["NC", "C", "NCd"])
def test_nll_loss_module_with_weight_and_ignore_index_matches_torch(reduction, shape):
    weight = torch.tensor([0.5, 2.0, 0.0, 1.5])  # a zero weight too
    manual = mnn.NLLLoss(weight=weight, ignore_index=3, reduction=reduction)
    native = torch.nn.NLLLoss(weight=weight, ignore_index=3, reduction=reduction)
    input = torch.randn(shape).log_softmax(dim=0 if len(shape) == 1 else 1)
    target = torch.randint(4, shape[:1] + shape[2:] if len(shape) > 1 else ())
    results = []
    for loss_fn in (manual, native):
        x = input.clone().requires_grad_()
        loss = loss_fn(x, target)
        loss.backward(torch.ones_like(loss))
        results.append((loss.detach(), x.grad))
    torch.testing.assert_close(results[0], results[1])


def test_nll_loss_every_target_ignored_gives_nan_and_a_zero_gradient_as_torch():
    for fn in (MF.nll_loss, F.nll_loss):
        x = torch.randn(3, 4, requires_grad=True)
        loss = fn(x, torch.full((3,), -100))
        loss.backward()
        assert loss.isnan() and (x.grad == 0).all()


@pytest.mark.parametrize("size_average,reduce", [(None, False), (False, None), (True, True), (False, False)])
def test_nll_loss_refuses_the_deprecated_size_average_and_reduce_naming_reduction(size_average, reduce):
    # NOTE: as every loss of manual_bp.functional: torch maps them with a deprecation warning, here they are refused
    x, target = torch.randn(5, 3), torch.randint(3, (5,))
    with pytest.raises(ValueError, match="size_average and reduce are deprecated.*use reduction="):
        MF.nll_loss(x, target, size_average=size_average, reduce=reduce)


# ------------------------------------------------------------ float32 accuracy of the normalisations

NORMALIZATION_CASES = [case for case in cases.OP_CASES if case.name.startswith(("batch_norm", "layer_norm"))]


def output_and_grads(fn, inputs, upstream):
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    output = fn(*leaves)
    return [output.detach(), *torch.autograd.grad(output, leaves, upstream.to(output.dtype))]


# NOTE: derandomized, so CI draws the same examples every run; the example below is the worst one a random search
# found (layer norm, 2 values per group, |x| ~ 30: ∂L/∂x of 4e-3 from terms ~1/σ larger; against float64 torch's
# float32 is off by 1.2e-4, manual_bp's by 3.1e-4), hence 3x torch's own error rather than 2x
@settings(max_examples=150, deadline=None, derandomize=True)
@given(case=st.sampled_from(NORMALIZATION_CASES), shape=st.lists(st.integers(1, 6), min_size=2, max_size=3),
       scale=st.sampled_from([1e-3, 1.0, 30.0, 1e3]), seed=st.integers(0, 2**31 - 1))
@example(case=next(case for case in NORMALIZATION_CASES if case.name == "layer_norm"), shape=[5, 5, 2], scale=30.0,
         seed=1796)
def test_normalisation_float32_error_against_float64_is_within_tolerance_plus_torchs_own(case, shape, scale, seed):
    """Against a float64 reference, manual float32 is off by at most the float32 tolerance plus 3× torch's own
    float32 error. (Elementwise manual-vs-torch comparison fails here for both: for a small σ, or 2 values per
    group, ∂L/∂x is a difference of terms ~1/σ larger than itself, and torch accumulates its sums in double.)"""
    shape = tuple(shape)
    values_per_channel = shape[0] * (shape[2] if len(shape) == 3 else 1)
    if case.name.startswith("batch_norm") and "eval" not in case.name and values_per_channel == 1:
        return  # training needs more than one value per channel (a ValueError, tested in test_bad_input.py)
    if case.name.startswith("layer_norm[2 dims]") and len(shape) < 2:
        return
    generator = torch.Generator().manual_seed(seed)
    inputs64 = case.make_inputs(shape, torch.float64, "cpu", generator, False)
    inputs64[0].mul_(scale)
    upstream = torch.randn(shape, generator=generator, dtype=torch.float64)
    reference = output_and_grads(case.native, inputs64, upstream)
    inputs32 = [t.float() for t in inputs64]
    manual, native = output_and_grads(case.manual, inputs32, upstream), output_and_grads(case.native, inputs32, upstream)
    rtol, atol = TOLERANCES[torch.float32]
    for name, exact, mine, theirs in zip(["output", *case.input_names], reference, manual, native):
        manual_error = (mine.double() - exact).abs().max().item()
        native_error = (theirs.double() - exact).abs().max().item()
        allowed = atol + rtol * exact.abs().max().item() + 3 * native_error
        assert manual_error <= allowed, f"{case.name}{list(shape)} x{scale} {name}: {manual_error:.2e} > {allowed:.2e}"
