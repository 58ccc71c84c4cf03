"""The LightningModule on small slices of real MNIST: fast_dev_run, a short fit, manual vs native twin."""
import pytest
import pytorch_lightning as pl
import torch

from models.classifier import MNISTClassifier
from tests.helpers import StepLosses, fit


def fit_losses(data_dir, model_kwargs, **trainer_kwargs):
    losses = StepLosses()
    trainer, model, data = fit(data_dir, model_kwargs, [losses], deterministic=True, **trainer_kwargs)
    return trainer, model, data, losses.losses


@pytest.mark.parametrize("backend", ["manual", "native"])
def test_fast_dev_run(mnist_slice, backend):
    trainer, *_, losses = fit_losses(mnist_slice, {"backend": backend}, fast_dev_run=2)
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))


@pytest.mark.parametrize("backend", ["manual", "native"])
def test_short_real_fit_learns_digits(mnist_slice, backend):
    trainer, model, data, losses = fit_losses(mnist_slice, {"backend": backend, "hidden_sizes": (128,)}, max_epochs=2)
    (result,) = trainer.test(model, data, verbose=False)
    assert losses[-1] < losses[0] / 4
    assert result["test/acc"] > 0.85  # 2 epochs on 2,500 digits; chance is 0.10


@pytest.mark.parametrize("activation,loss,optimizer,norm", [
    ("relu", "cross_entropy", "adam", "none"), ("sigmoid", "mse", "sgd", "none"), ("tanh", "bce", "sgd", "none"),
    # NOTE: SGD with the norms: a bias before a batch norm has a gradient of exactly 0 in exact arithmetic, and Adam
    # turns its rounding noise into lr-sized steps, so under Adam the twins part at 1e-4 after a few steps
    ("relu", "cross_entropy", "sgd", "batch"), ("relu", "cross_entropy", "sgd", "layer"),
])
def test_manual_and_native_twins_have_the_same_losses_for_the_first_steps(mnist_slice, activation, loss, optimizer,
                                                                          norm):
    common = {"hidden_sizes": (64, 32), "activation": activation, "loss": loss, "optimizer": optimizer, "lr": 0.05
              if optimizer == "sgd" else 1e-3, "norm": norm}
    *_, manual = fit_losses(mnist_slice, {**common, "backend": "manual"}, max_steps=30)
    *_, native = fit_losses(mnist_slice, {**common, "backend": "native"}, max_steps=30)
    # float32 and different summation orders in a few kernels: equal to 1e-5 relative after 30 optimizer steps
    torch.testing.assert_close(torch.tensor(manual), torch.tensor(native), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kwargs,message", [
    ({"lr": -0.1}, r"lr must be > 0, got -0.1"),
    ({"hidden_sizes": (800, 0)}, r"hidden_sizes must be a non-empty list of positive integers, got \[800, 0\]"),
    ({"hidden_sizes": ()}, r"hidden_sizes must be a non-empty list"),
    ({"momentum": 1.0}, r"momentum must be in \[0, 1\), got 1.0"),
    ({"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
    ({"weight_decay": -1}, r"weight_decay must be >= 0, got -1"),
])
def test_impossible_hyperparameters_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MNISTClassifier(**kwargs)


@pytest.mark.parametrize("backend", ["manual", "native"])
def test_same_seed_builds_the_same_initial_network(backend):
    pl.seed_everything(3, verbose=False)
    manual = MNISTClassifier(backend="manual")
    pl.seed_everything(3, verbose=False)
    other = MNISTClassifier(backend=backend)
    torch.testing.assert_close(manual.net.state_dict(), other.net.state_dict(), rtol=0, atol=0)


@pytest.mark.parametrize("optimizer,weight_decay,expected", [
    ("adam", 0.0, "Adam"), ("adam", 0.01, "AdamW"), ("sgd", 0.01, "SGD"),
])
def test_manual_optimisers_train_the_classifier_as_torchs_fused_ones(mnist_slice, optimizer, weight_decay, expected):
    """model.optimizer_backend: manual_bp.optim's rule or torch.optim's fused kernel, the same weights after 30 steps
    (float32: the fused kernel rounds in its own order)."""
    common = {"hidden_sizes": (64,), "optimizer": optimizer, "weight_decay": weight_decay,
              "lr": 0.05 if optimizer == "sgd" else 1e-3}
    trainer, manual, *_ = fit_losses(mnist_slice, {**common, "optimizer_backend": "manual"}, max_steps=30)
    assert type(trainer.optimizers[0]).__module__ == "manual_bp.optim"
    assert type(trainer.optimizers[0]).__name__ == expected
    trainer, native, *_ = fit_losses(mnist_slice, {**common, "optimizer_backend": "native"}, max_steps=30)
    assert type(trainer.optimizers[0]) is getattr(torch.optim, expected)
    pl.seed_everything(7, verbose=False)  # fit's seed: the starting weights, to measure how far the weights moved
    start = MNISTClassifier(**common)
    for (name, m), n, s in zip(manual.named_parameters(), native.parameters(), start.parameters()):
        moved = (n - s).abs().max()
        assert moved > 1e-3, name
        assert (m - n).abs().max() <= 1e-4 * moved + 1e-6, name
