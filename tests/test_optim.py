"""manual_bp.optim against torch.optim: every setting over 60 steps in float64 and float32, state dicts both ways
mid-run, LR schedulers, zero-size and absent gradients, sparse gradients and bad hyperparameters refused."""
import pytest
import torch

from manual_bp import optim

SETTINGS = [  # (name, keyword arguments): one line each, every argument of each rule
    ("SGD", {}), ("SGD", {"momentum": 0.9}), ("SGD", {"momentum": 0.9, "dampening": 0.5}),
    ("SGD", {"momentum": 0.9, "nesterov": True}), ("SGD", {"weight_decay": 0.1}), ("SGD", {"maximize": True}),
    ("SGD", {"lr": 0.05, "momentum": 0.5, "dampening": 0.1, "weight_decay": 0.01, "maximize": True}),
    ("Adam", {}), ("Adam", {"betas": (0.8, 0.99)}), ("Adam", {"eps": 1e-3}), ("Adam", {"weight_decay": 0.1}),
    ("Adam", {"amsgrad": True}), ("Adam", {"maximize": True}),
    ("Adam", {"lr": 0.01, "betas": (0.5, 0.9), "weight_decay": 0.05, "amsgrad": True, "maximize": True}),
    ("AdamW", {}), ("AdamW", {"weight_decay": 0.1, "amsgrad": True}), ("AdamW", {"betas": (0.0, 0.5), "eps": 1e-4}),
    ("RMSprop", {}), ("RMSprop", {"alpha": 0.9}), ("RMSprop", {"eps": 1e-3}), ("RMSprop", {"weight_decay": 0.1}),
    ("RMSprop", {"momentum": 0.9}), ("RMSprop", {"centered": True}), ("RMSprop", {"maximize": True}),
    ("RMSprop", {"lr": 1e-3, "alpha": 0.5, "momentum": 0.5, "centered": True, "weight_decay": 0.01}),
    ("Adagrad", {}), ("Adagrad", {"lr_decay": 0.05}), ("Adagrad", {"weight_decay": 0.1}),
    ("Adagrad", {"initial_accumulator_value": 0.5}), ("Adagrad", {"eps": 1e-3}), ("Adagrad", {"maximize": True}),
]
IDS = [f"{name}-{kwargs}" for name, kwargs in SETTINGS]


def make_params(dtype):
    """Parameters of several shapes (one of size 0, one that never gets a gradient) and the objective's weights."""
    generator = torch.Generator().manual_seed(0)
    shapes = [(5, 4), (4,), (0, 3), (3, 2, 2), (2,)]
    params = [torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype).requires_grad_()
              for shape in shapes]
    weights = [torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype) for shape in shapes]
    return params, weights


def set_gradients(params, weights, step):
    """g = ∂L/∂θ of L = Σ w·sin(θ + step/10) + θ²/2, written in; the last parameter is left without a gradient."""
    for param, weight in list(zip(params, weights))[:-1]:
        param.grad = (weight * torch.cos(param.detach() + step / 10) + param.detach()).to(param.dtype)


def run(optimizer_class, kwargs, dtype, steps=60, params=None, state=None, start=0, scheduler=None):
    """The parameters after `steps` steps (continuing from `params` and an optimizer state dict, if given)."""
    params = params or make_params(dtype)[0]
    weights = make_params(dtype)[1]
    optimizer = optimizer_class(params, **kwargs)
    if state is not None:
        optimizer.load_state_dict(state)
    schedule = scheduler(optimizer) if scheduler else None
    for step in range(start, start + steps):
        set_gradients(params, weights, step)
        optimizer.step()
        if schedule:
            schedule.step()
    return [p.detach().clone() for p in params], optimizer


def without_foreach(groups):
    """Parameter groups without their parameters and the foreach flag (None, False or True: torch's choice)."""
    return [{key: value for key, value in group.items() if key not in ("params", "foreach")} for group in groups]


def largest_relative_difference(actual, expected):
    return max(((a - e).abs().max() / e.abs().max().clamp(min=1e-300)).item() for a, e in zip(actual, expected)
               if e.numel())


@pytest.mark.parametrize("name,kwargs", SETTINGS, ids=IDS)
def test_float64_equals_torch_single_tensor_to_1e9_after_60_steps(name, kwargs):
    manual, _ = run(getattr(optim, name), kwargs, torch.float64)
    native, _ = run(getattr(torch.optim, name), {**kwargs, "foreach": False}, torch.float64)
    assert largest_relative_difference(manual, native) <= 1e-9
    start = make_params(torch.float64)[0]
    assert largest_relative_difference(manual, start) > 1e-3  # it moved
    assert torch.equal(manual[-1], start[-1])  # the parameter without a gradient did not


@pytest.mark.parametrize("name,kwargs", SETTINGS, ids=IDS)
def test_float32_within_torchs_own_foreach_versus_single_tensor_difference(name, kwargs):
    manual, _ = run(getattr(optim, name), kwargs, torch.float32)
    single, _ = run(getattr(torch.optim, name), {**kwargs, "foreach": False}, torch.float32)
    foreach, _ = run(getattr(torch.optim, name), {**kwargs, "foreach": True}, torch.float32)
    torch_spread = max((f - s).abs().max().item() for f, s in zip(foreach, single) if s.numel())
    ours = max((m - s).abs().max().item() for m, s in zip(manual, single) if s.numel())
    assert ours <= torch_spread


@pytest.mark.parametrize("name,kwargs", SETTINGS, ids=IDS)
def test_state_dicts_move_both_ways_mid_run(name, kwargs):
    expected, native = run(getattr(torch.optim, name), {**kwargs, "foreach": False}, torch.float64)
    for first, second in ((torch.optim, optim), (optim, torch.optim)):
        params, half = run(getattr(first, name), kwargs, torch.float64, steps=30)
        params = [p.requires_grad_() for p in params]
        state = half.state_dict()
        result, resumed = run(getattr(second, name), kwargs, torch.float64, 30, params, state, start=30)
        assert largest_relative_difference(result, expected) <= 1e-9
        assert without_foreach(resumed.param_groups) == without_foreach(native.param_groups)
        assert {key: set(value) for key, value in resumed.state_dict()["state"].items()} == \
               {key: set(value) for key, value in native.state_dict()["state"].items()}


@pytest.mark.parametrize("name,scheduler", [
    ("SGD", lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=7, gamma=0.5)),
    ("Adam", lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=60)),
    ("RMSprop", lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=60)),
    ("Adagrad", lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.97)),
], ids=["SGD-StepLR", "Adam-OneCycleLR", "RMSprop-Cosine", "Adagrad-Exponential"])
def test_lr_schedulers_drive_them_as_they_drive_torchs(name, scheduler):
    manual, manual_optimizer = run(getattr(optim, name), {"lr": 0.01}, torch.float64, scheduler=scheduler)
    native, native_optimizer = run(getattr(torch.optim, name), {"lr": 0.01, "foreach": False}, torch.float64,
                                   scheduler=scheduler)
    assert largest_relative_difference(manual, native) <= 1e-9
    assert manual_optimizer.param_groups[0]["lr"] == native_optimizer.param_groups[0]["lr"]


def test_the_comparison_can_fail():
    """A planted mistake (Adam without the bias correction of m: θ ← θ − γ·m_t/(√v̂ + ε)) is caught in float64."""
    class NoBiasCorrection(optim.Adam):
        def update(self, param, grad, group):
            state = self.state[param]
            if not state:
                state.update(step=torch.tensor(0.0), exp_avg=torch.zeros_like(param), exp_avg_sq=torch.zeros_like(param))
            t = self.next_step(state)
            state["exp_avg"].lerp_(grad, 0.1)
            state["exp_avg_sq"].mul_(0.999).addcmul_(grad, grad, value=0.001)
            denominator = (state["exp_avg_sq"].sqrt() / (1 - 0.999**t) ** 0.5).add_(1e-8)
            param.addcdiv_(state["exp_avg"], denominator, value=-1e-3)  # the mistake: no / (1 − β1^t)
    wrong, _ = run(NoBiasCorrection, {}, torch.float64)
    native, _ = run(torch.optim.Adam, {"foreach": False}, torch.float64)
    assert largest_relative_difference(wrong, native) > 1e-3


@pytest.mark.parametrize("name,advice", [
    ("SGD", "use torch.optim.SGD, or make"), ("Adam", "use torch.optim.SparseAdam, or make"),
    ("Adagrad", "use torch.optim.Adagrad, or make"),
    ("AdamW", "dense tensors; make"), ("RMSprop", "dense tensors; make"),  # torch has no sparse variant of these
])
def test_sparse_gradients_are_refused_naming_the_rule(name, advice):
    embedding = torch.nn.Embedding(10, 3, sparse=True)
    embedding(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match=f"manual_bp.optim.{name} does not support sparse gradients.*shape \\(10, 3\\)"
                                           f".*{advice} the layer's gradient dense"):
        getattr(optim, name)(embedding.parameters(), lr=0.1).step()


@pytest.mark.parametrize("name,kwargs,message", [
    ("SGD", {"lr": -0.1}, r"Invalid learning rate: -0.1 \(must be lr >= 0\)"),
    ("SGD", {"momentum": -0.5}, r"Invalid momentum value: -0.5"),
    ("SGD", {"nesterov": True}, r"Nesterov momentum requires a momentum and zero dampening"),
    ("SGD", {"momentum": 0.9, "nesterov": True, "dampening": 0.1}, r"zero dampening \(got momentum=0.9, dampening=0.1\)"),
    ("Adam", {"betas": (1.0, 0.999)}, r"Invalid beta parameter at index 0: 1.0 \(must be betas\[0\] in \[0, 1\)\)"),
    ("Adam", {"betas": (0.9, -0.1)}, r"Invalid beta parameter at index 1: -0.1"),
    ("AdamW", {"eps": -1e-8}, r"Invalid epsilon value: -1e-08"),
    ("AdamW", {"weight_decay": -0.01}, r"Invalid weight_decay value: -0.01"),
    ("RMSprop", {"alpha": -0.9}, r"Invalid alpha value: -0.9"),
    ("Adagrad", {"lr_decay": -1}, r"Invalid lr_decay value: -1"),
    ("Adagrad", {"initial_accumulator_value": -1}, r"Invalid initial_accumulator_value value: -1"),
    ("Adam", {"fused": True}, r"fused=True is a mode of torch.optim.Adam; manual_bp.optim.Adam has one"),
    ("SGD", {"differentiable": True}, r"differentiable=True is a mode of torch.optim.SGD"),
])
def test_bad_hyperparameters_are_refused_with_torchs_message_and_the_rule(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        getattr(optim, name)([torch.zeros(2, requires_grad=True)], **kwargs)
    if "fused" not in kwargs and "differentiable" not in kwargs:
        with pytest.raises(ValueError):  # torch refuses the same values
            getattr(torch.optim, name)([torch.zeros(2, requires_grad=True)], **kwargs)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
def test_defaults_are_torchs(name):
    params = [torch.zeros(2, requires_grad=True)]
    assert getattr(optim, name)(params).defaults == getattr(torch.optim, name)(params).defaults


def test_a_closure_is_evaluated_and_its_loss_returned_as_torch():
    param = torch.tensor([1.0, -2.0], requires_grad=True)
    optimizer = optim.SGD([param], lr=0.1)

    def closure():
        optimizer.zero_grad()
        loss = (param ** 2).sum()
        loss.backward()
        return loss
    assert optimizer.step(closure).item() == 5.0
    assert param.detach().tolist() == pytest.approx([0.8, -1.6])


@pytest.mark.parametrize("name", ["SGD", "Adam", "Adagrad"])
def test_a_refusal_changes_nothing_and_names_the_rule(name):
    """A sparse gradient or a complex parameter is refused before any parameter is updated."""
    dense = torch.ones(3, requires_grad=True)
    dense.grad = torch.ones(3)
    embedding = torch.nn.Embedding(10, 3, sparse=True)
    embedding(torch.tensor([1])).sum().backward()
    with pytest.raises(RuntimeError, match=f"manual_bp.optim.{name} does not support sparse gradients"):
        getattr(optim, name)([dense, embedding.weight], lr=0.1).step()
    assert torch.equal(dense.detach(), torch.ones(3))
    complex_param = torch.ones(2, dtype=torch.complex64, requires_grad=True)
    complex_param.grad = torch.ones(2, dtype=torch.complex64)
    with pytest.raises(TypeError, match=f"manual_bp.optim.{name} updates real parameters.*shape \\(2,\\)"):
        getattr(optim, name)([dense, complex_param], lr=0.1).step()
    assert torch.equal(dense.detach(), torch.ones(3))


def test_a_tensor_lr_and_capturable_are_refused_naming_what_to_pass():
    with pytest.raises(TypeError, match=r"lr must be a Python number .* got a Tensor.*pass float\(lr\)"):
        optim.Adam([torch.zeros(2, requires_grad=True)], lr=torch.tensor(0.01))
    with pytest.raises(ValueError, match=r"capturable=True is a mode of torch.optim.RMSprop"):
        optim.RMSprop([torch.zeros(2, requires_grad=True)], capturable=True)


def test_a_fused_torch_state_or_an_older_one_loads_into_the_manual_rule():
    params = [torch.zeros(2, requires_grad=True)]
    params[0].grad = torch.ones(2)
    fused = torch.optim.Adam(params, fused=True)
    fused.step()
    manual = optim.Adam(params)
    manual.load_state_dict(fused.state_dict())
    assert manual.param_groups[0]["fused"] is None and manual.param_groups[0]["capturable"] is False
    older = fused.state_dict()
    for key in ("decoupled_weight_decay", "maximize", "foreach"):  # keys an older torch did not write
        del older["param_groups"][0][key]
    manual.load_state_dict(older)
    manual.step()
    assert manual.param_groups[0]["maximize"] is False and manual.state[params[0]]["step"].item() == 2
