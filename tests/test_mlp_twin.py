"""A whole MLP from manual_bp.nn against its torch.nn twin with the same weights."""
import pytest
import torch

import manual_bp.nn as mnn

SIZES = (784, 64, 32, 10)


def mlp(nn, activation):
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(SIZES) - 2:
            layers.append(getattr(nn, activation)())
    return torch.nn.Sequential(*layers)


@pytest.mark.parametrize("activation", ["ReLU", "Sigmoid", "Tanh"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_same_loss_and_parameter_gradients_as_torch_nn(activation, dtype):
    torch.manual_seed(0)
    manual = mlp(mnn, activation).to(dtype)
    native = mlp(torch.nn, activation).to(dtype)
    native.load_state_dict(manual.state_dict())
    x, y = torch.randn(16, 784, dtype=dtype), torch.randint(10, (16,))
    manual_loss = mnn.CrossEntropyLoss()(manual(x), y)
    native_loss = torch.nn.CrossEntropyLoss()(native(x), y)
    manual_loss.backward()
    native_loss.backward()
    torch.testing.assert_close(manual_loss, native_loss)
    for (name, p_manual), p_native in zip(manual.named_parameters(), native.parameters()):
        torch.testing.assert_close(p_manual.grad, p_native.grad, msg=lambda m, name=name: f"grad of {name}: {m}")


def test_same_seed_gives_the_same_initial_weights_as_torch_nn_linear():
    torch.manual_seed(3)
    manual = mnn.Linear(20, 7)
    torch.manual_seed(3)
    native = torch.nn.Linear(20, 7)
    torch.testing.assert_close(manual.state_dict(), native.state_dict(), rtol=0, atol=0)
    assert repr(manual) == "Linear(in_features=20, out_features=7, bias=True)"


def test_state_dict_moves_both_ways_and_gives_identical_outputs():
    x = torch.randn(5, 20)
    native, manual = torch.nn.Linear(20, 7), mnn.Linear(20, 7, bias=True)
    manual.load_state_dict(native.state_dict())
    torch.testing.assert_close(manual(x), native(x), rtol=0, atol=0)
    native_again = torch.nn.Linear(20, 7)
    native_again.load_state_dict(manual.state_dict())
    torch.testing.assert_close(native_again(x), manual(x), rtol=0, atol=0)


def test_linear_without_bias():
    manual, native = mnn.Linear(6, 3, bias=False), torch.nn.Linear(6, 3, bias=False)
    native.load_state_dict(manual.state_dict())
    x = torch.randn(4, 6)
    torch.testing.assert_close(manual(x), native(x))
    assert manual.bias is None


@pytest.mark.parametrize("loss_name", ["MSELoss", "BCELoss", "BCEWithLogitsLoss"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_loss_modules_match_torch_nn(loss_name, reduction):
    input, target = torch.rand(8, 3, requires_grad=True), torch.rand(8, 3)
    manual = getattr(mnn, loss_name)(reduction=reduction)(input, target)
    native = getattr(torch.nn, loss_name)(reduction=reduction)(input, target)
    torch.testing.assert_close(manual, native)
    assert repr(getattr(mnn, loss_name)(reduction=reduction)) == f"{loss_name}(reduction={reduction!r})"


@pytest.mark.parametrize("loss_name,kwargs", [
    ("CrossEntropyLoss", dict(weight=torch.tensor([0.5, 2.0, 1.0]), ignore_index=1, label_smoothing=0.1)),
    ("BCEWithLogitsLoss", dict(weight=torch.rand(3), pos_weight=torch.tensor([1.0, 3.0, 0.5]), reduction="sum")),
    ("BCELoss", dict(weight=torch.rand(3))),
])
def test_loss_constructor_arguments_and_weight_buffers_match_torch_nn(loss_name, kwargs):
    manual, native = getattr(mnn, loss_name)(**kwargs), getattr(torch.nn, loss_name)(**kwargs)
    assert manual.state_dict().keys() == native.state_dict().keys() and "weight" in manual.state_dict()
    native.load_state_dict(manual.state_dict())
    scores = torch.rand(8, 3, requires_grad=True)
    target = torch.tensor([0, 1, 2, 1, 0, 2, 2, 0]) if loss_name == "CrossEntropyLoss" else torch.rand(8, 3)
    torch.testing.assert_close(manual(scores, target), native(scores, target))
    ones = {key: torch.ones_like(value) if torch.is_tensor(value) else value for key, value in kwargs.items()}
    to_state = getattr(mnn, loss_name)(**ones)
    to_state.load_state_dict(native.state_dict())  # registered buffers, filled from torch's state_dict
    for key, value in kwargs.items():
        if torch.is_tensor(value):
            torch.testing.assert_close(getattr(to_state, key), value)


def test_dropout_and_relu_take_inplace_like_torch_nn():
    assert repr(mnn.Dropout(0.2, inplace=True)) == repr(torch.nn.Dropout(0.2, inplace=True))
    assert repr(mnn.ReLU(inplace=True)) == repr(torch.nn.ReLU(inplace=True)) and repr(mnn.ReLU()) == "ReLU()"
    x = torch.randn(4, 5)
    hidden = x.clone()
    assert mnn.ReLU(inplace=True)(hidden) is hidden and torch.equal(hidden, torch.relu(x))
    assert torch.equal(mnn.Dropout(1.0)(x), torch.nn.Dropout(1.0)(x))
