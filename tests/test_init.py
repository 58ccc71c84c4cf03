"""manual_bp.init against torch.nn.init: the same values for the same generator, the formulas' variances, clear
errors; manual_bp.nn.Linear and build_mlp initialised through it, identical to torch's."""
import inspect
import math
import re

import pytest
import torch

import manual_bp.init as minit
import manual_bp.nn as mnn
from models.mlp import INITIALISATIONS, build_mlp
from tests.helpers import doc_text_after

SHAPES = [(7, 5), (5, 7), (300, 784), (16, 3, 3, 3), (1, 1)]
DTYPES = [torch.float32, torch.float64]


def assert_same_draws(manual_fn, torch_fn, shape, dtype=torch.float32, **kwargs):
    """manual_fn and torch_fn fill a tensor of `shape` from generators in the same state: equal bit for bit, and
    the generators end in the same state (the same number of draws)."""
    filled, generators = [], []
    for fn in (manual_fn, torch_fn):
        generator = torch.Generator().manual_seed(1234)
        tensor = torch.full(shape, float("nan"), dtype=dtype)
        takes_generator = "generator" in inspect.signature(fn).parameters
        result = fn(tensor, **kwargs, generator=generator) if takes_generator else fn(tensor, **kwargs)
        assert result is tensor, f"{fn.__name__} must fill in place and return its tensor"
        filled.append(tensor)
        generators.append(generator)
    difference = (filled[0] - filled[1]).abs().max().item() if filled[0].numel() else 0.0
    assert torch.equal(filled[0], filled[1]), f"{manual_fn.__name__}{shape} {kwargs}: differs by up to {difference}"
    assert torch.equal(generators[0].get_state(), generators[1].get_state()), "a different number of draws"


KAIMING = [dict(a=a, mode=mode, nonlinearity=nonlinearity) for a in (0, 0.2, math.sqrt(5)) for mode in minit.MODES
           for nonlinearity in ("leaky_relu", "relu", "tanh", "sigmoid", "linear", "selu")]
CASES = [("uniform_", {}), ("uniform_", dict(a=-2.0, b=3.0)), ("normal_", {}), ("normal_", dict(mean=1.0, std=0.1)),
         ("zeros_", {}), ("ones_", {}), ("constant_", dict(val=0.3)),
         ("xavier_uniform_", {}), ("xavier_uniform_", dict(gain=5 / 3)), ("xavier_normal_", {}),
         ("xavier_normal_", dict(gain=math.sqrt(2))), ("orthogonal_", {}), ("orthogonal_", dict(gain=2.0)),
         *[("kaiming_uniform_", kwargs) for kwargs in KAIMING], *[("kaiming_normal_", kwargs) for kwargs in KAIMING]]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{name}{kwargs}" for name, kwargs in CASES])
def test_same_values_as_torch_nn_init_for_the_same_generator(name, kwargs, shape, dtype):
    assert_same_draws(getattr(minit, name), getattr(torch.nn.init, name), shape, dtype, **kwargs)


@pytest.mark.parametrize("name", ["xavier_uniform_", "kaiming_normal_", "orthogonal_", "uniform_"])
def test_same_values_from_the_global_generator(name):
    values = []
    for module in (minit, torch.nn.init):
        torch.manual_seed(5)
        values.append(getattr(module, name)(torch.empty(30, 40)))
    assert torch.equal(*values)


def test_the_helper_fails_on_a_bound_one_rounding_away():
    # xavier's bound written g·√(6/n) instead of torch's √3·g·√(2/n): the same number in exact arithmetic, one
    # rounding apart in float64 (float32 draws round it away)
    n = next(n for n in range(2, 100) if math.sqrt(6 / n) != math.sqrt(3.0) * math.sqrt(2.0 / n))
    def rounded_otherwise(tensor, generator):
        return tensor.uniform_(-math.sqrt(6 / n), math.sqrt(6 / n), generator=generator)
    with pytest.raises(AssertionError, match="differs by up to"):
        assert_same_draws(rounded_otherwise, torch.nn.init.xavier_uniform_, (n - 1, 1), dtype=torch.float64)


@pytest.mark.parametrize("nonlinearity,param", [("linear", None), ("conv2d", None), ("sigmoid", None),
                                                ("tanh", None), ("relu", None), ("leaky_relu", None),
                                                ("leaky_relu", 0.2), ("leaky_relu", 3), ("selu", None)])
def test_calculate_gain_equals_torch(nonlinearity, param):
    assert minit.calculate_gain(nonlinearity, param) == torch.nn.init.calculate_gain(nonlinearity, param)


def test_no_helper_of_torch_nn_init_is_used(monkeypatch):
    for helper in ("_calculate_fan_in_and_fan_out", "_calculate_correct_fan", "calculate_gain", "kaiming_uniform_",
                   "uniform_", "_no_grad_uniform_", "_no_grad_normal_"):
        monkeypatch.setattr(torch.nn.init, helper, None)
    for name, kwargs in CASES:
        getattr(minit, name)(torch.empty(6, 4), **kwargs)
    mnn.Linear(6, 4)


# the formulas: variance of a million draws (fixed generator: the bounds hold for this draw, so no flakes; each is
# over 6 standard errors of the sample variance, sqrt(2/n) ≈ 0.14% for a normal, 0.09% for a uniform)


FAN_IN, FAN_OUT = 1000, 1200  # W of shape (fan_out, fan_in)
VARIANCES = [  # (function, kwargs, Var(W) from the formula)
    ("xavier_uniform_", {}, 2 / (FAN_IN + FAN_OUT)),
    ("xavier_normal_", dict(gain=5 / 3), (5 / 3) ** 2 * 2 / (FAN_IN + FAN_OUT)),
    ("kaiming_uniform_", dict(nonlinearity="relu"), 2 / FAN_IN),
    ("kaiming_normal_", dict(a=0.3), 2 / ((1 + 0.3**2) * FAN_IN)),
    ("kaiming_normal_", dict(mode="fan_out", nonlinearity="relu"), 2 / FAN_OUT),
    ("kaiming_uniform_", dict(a=math.sqrt(5)), 1 / (3 * FAN_IN)),  # torch.nn.Linear's weight
    ("normal_", dict(std=0.01), 0.01**2),
    ("uniform_", dict(a=-1.0, b=1.0), 1 / 3),
]


@pytest.mark.parametrize("name,kwargs,variance", VARIANCES, ids=[f"{n}{k}" for n, k, _ in VARIANCES])
def test_variance_is_the_formulas(name, kwargs, variance):
    weight = getattr(minit, name)(torch.empty(FAN_OUT, FAN_IN, dtype=torch.float64), **kwargs,
                                  generator=torch.Generator().manual_seed(0))
    assert abs(weight.var().item() / variance - 1) < 0.01, (weight.var().item(), variance)
    assert abs(weight.mean().item()) < 6 * math.sqrt(variance / weight.numel())


@pytest.mark.parametrize("shape", [(30, 50), (50, 30), (8, 4, 3)], ids=str)
def test_orthogonal_rows_or_columns_are_orthonormal_times_the_gain(shape):
    weight = minit.orthogonal_(torch.empty(shape, dtype=torch.float64), gain=2.0).flatten(1)
    gram = weight @ weight.t() if shape[0] <= weight.shape[1] else weight.t() @ weight
    torch.testing.assert_close(gram, 4 * torch.eye(len(gram), dtype=torch.float64))


# bad arguments: ValueError naming what is wrong


@pytest.mark.parametrize("call,message", [
    (lambda: minit.xavier_uniform_(torch.empty(5)), r"at least 2 dimensions .* got shape \(5,\)"),
    (lambda: minit.kaiming_normal_(torch.empty(5)), r"at least 2 dimensions .* got shape \(5,\)"),
    (lambda: minit.orthogonal_(torch.empty(())), r"at least 2 dimensions .* got shape \(\)"),
    (lambda: minit.kaiming_uniform_(torch.empty(3, 2), mode="fan_avg"), "mode must be 'fan_in' or 'fan_out', got 'fan_avg'"),
    (lambda: minit.kaiming_uniform_(torch.empty(3, 2), nonlinearity="swish"), "nonlinearity must be one of .*'swish'"),
    (lambda: minit.calculate_gain("leaky_relu", True), "param .*negative slope.* got True"),
    (lambda: minit.kaiming_uniform_(torch.empty(3, 2), a="x"), "^a \\(the negative slope of leaky_relu\\) .* got 'x'"),
    (lambda: build_mlp(4, [3], 2, init="he"), "init must be one of default, .*; got 'he'"),
    (lambda: build_mlp(4, [3], 2, activation="gelu"), "^activation must be one of relu, sigmoid, tanh; got 'gelu'"),
    (lambda: build_mlp(4, [3], 2, backend="Manual"), "^backend must be one of manual, native; got 'Manual'"),
    (lambda: build_mlp(4, [3], 2, norm="group"), "^norm must be one of none, batch, layer; got 'group'"),
])
def test_bad_arguments_are_refused_naming_them(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_zero_size_weights_are_left_as_torch_leaves_them():
    with pytest.warns(UserWarning, match="zero-element"):
        minit.kaiming_uniform_(torch.empty(0, 3))
    assert minit.xavier_uniform_(torch.empty(0, 0)).shape == (0, 0)  # torch: ZeroDivisionError


# manual_bp.nn.Linear and build_mlp


@pytest.mark.parametrize("sizes", [(20, 7), (784, 800), (1, 1), (0, 5), (5, 0)], ids=str)
@pytest.mark.parametrize("bias", [True, False])
def test_linear_starts_from_torch_nn_linears_weights(sizes, bias, recwarn):
    torch.manual_seed(3)
    manual = mnn.Linear(*sizes, bias=bias)
    torch.manual_seed(3)
    native = torch.nn.Linear(*sizes, bias=bias)
    assert manual.state_dict().keys() == native.state_dict().keys()
    for name, value in native.state_dict().items():
        assert torch.equal(manual.state_dict()[name], value), name


def test_linear_draws_through_manual_bp_init(monkeypatch):
    calls = []
    monkeypatch.setattr(minit, "kaiming_uniform_", lambda tensor, a: calls.append(("weight", a)))
    monkeypatch.setattr(minit, "uniform_", lambda tensor, a, b: calls.append(("bias", b)))
    mnn.Linear(16, 3)
    assert calls == [("weight", math.sqrt(5)), ("bias", 1 / math.sqrt(16))]


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("init", INITIALISATIONS)
def test_build_mlp_gives_both_backends_the_same_weights(init, activation):
    nets = []
    for backend in ("manual", "native"):
        torch.manual_seed(11)
        nets.append(build_mlp(30, [20, 40], 4, activation, backend, norm="batch", init=init))
    manual, native = (net.state_dict() for net in nets)
    assert all(torch.equal(manual[name], native[name]) for name in native), init
    first, last = nets[0][0].weight, nets[0][-1].weight
    if init == "default":  # torch.nn.Linear's own draw, untouched
        torch.manual_seed(11)
        assert torch.equal(first, torch.nn.Linear(30, 20).weight)
    else:
        assert not nets[0][0].bias.any()
        if init.startswith("kaiming_normal"):  # hidden layers: the activation's gain; the last layer: 1
            gain = torch.nn.init.calculate_gain(activation)
            assert abs(first.std().item() / (gain / math.sqrt(30)) - 1) < 0.15
            assert abs(last.std().item() / (1 / math.sqrt(40)) - 1) < 0.3


def test_the_docs_list_the_functions_there_are():
    listed = re.findall(r"`(\w+)`", doc_text_after("initialisation.md", "that an MLP's layers use", until="; not"))
    lacking = re.findall(r"`(\w+)`", doc_text_after("initialisation.md", "calculate_gain`; not", until=")"))
    functions = [name for name in dir(minit)
                 if not name.startswith("_") and (name.endswith("_") or name == "calculate_gain")]
    assert sorted(listed) == functions and lacking and not any(hasattr(minit, name) for name in lacking)
