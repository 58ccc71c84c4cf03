"""The fast training step (models/fast_step.py): the same numbers as the eager step, on the CPU (called directly)
and on CUDA (captured as a CUDA graph), non-finite steps skipped on the device, and Lightning's bookkeeping kept."""
import pytest
import pytorch_lightning as pl
import torch

from models.callbacks import GradientStatistics, NativeGradientCheck
from models.classifier import MNISTClassifier
from models.data import MNISTDataModule
from models.fast_step import FastTrainStep
from models.mlp import build_mlp, classification_loss
from models.reliability import NonFiniteLossError, StopOnNonFinite

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]


def plain_parts(device, seed=0, optimizer="adam"):
    torch.manual_seed(seed)
    net = build_mlp(784, (64,), 10, "relu", "manual").to(device)
    extra = {"capturable": device == "cuda"} if optimizer == "adam" else {"momentum": 0.9}
    opt = (torch.optim.Adam if optimizer == "adam" else torch.optim.SGD)(net.parameters(), lr=1e-2, fused=True,
                                                                          **extra)
    return net, opt


def batches(device, count, batch=32):
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(batch, 784, generator=generator).to(device),
             torch.randint(10, (batch,), generator=generator).to(device)) for _ in range(count)]


def loss_fn(scores, labels):
    return classification_loss(scores, labels, "cross_entropy", "manual")


def fast_run(device, data, optimizer="adam", lr_per_step=None):
    net, opt = plain_parts(device, optimizer=optimizer)
    sums = torch.zeros(3, device=device)
    step = FastTrainStep(net, loss_fn, opt, sums, *data[0], use_graph=device == "cuda")
    for number, (images, labels) in enumerate(data):
        if lr_per_step:
            opt.param_groups[0]["lr"] = lr_per_step[number]
        step(images, labels, number)
    return net, sums, step


def eager_run(device, data, optimizer="adam", lr_per_step=None):
    net, opt = plain_parts(device, optimizer=optimizer)
    sums = torch.zeros(3, device=device)
    for number, (images, labels) in enumerate(data):
        if lr_per_step:
            opt.param_groups[0]["lr"] = lr_per_step[number]
        opt.zero_grad(set_to_none=True)
        scores = net(images)
        loss = loss_fn(scores, labels)
        loss.backward()
        opt.step()
        sums += torch.stack([loss.detach() * len(labels), (scores.argmax(-1) == labels).sum().float(),
                             torch.tensor(float(len(labels)), device=device)])
    return net, sums


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("device", DEVICES)
def test_fast_step_equals_the_eager_step(device, optimizer):
    data = batches(device, 12)
    lrs = [1e-2 * (1 - i / 12) for i in range(12)]  # a schedule: the graph must read each replay's lr
    fast_net, fast_sums, step = fast_run(device, data, optimizer, lrs)
    eager_net, eager_sums = eager_run(device, data, optimizer, lrs)
    assert (step.graph is not None) == (device == "cuda")  # on CUDA the last 10 steps were replays
    torch.testing.assert_close(fast_net.state_dict(), eager_net.state_dict(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast_sums, eager_sums, rtol=1e-5, atol=1e-5)
    assert step.first_non_finite_step() is None


@pytest.mark.parametrize("device", DEVICES)
def test_a_non_finite_step_leaves_weights_and_optimizer_state_untouched(device):
    data = batches(device, 8)
    data[5][0][3, 7] = float("nan")  # one pixel of step 5
    net, _, step = fast_run(device, data[:5])
    before = ({k: v.clone() for k, v in net.state_dict().items()},
              [s["exp_avg"].clone() for s in step.optimizer.state.values()])
    for number, (images, labels) in enumerate(data[5:], start=5):
        step(images, labels, number)
    assert step.first_non_finite_step() == 5
    torch.testing.assert_close(net.state_dict(), before[0], rtol=0, atol=0)  # skipped from step 5 on
    torch.testing.assert_close([s["exp_avg"] for s in step.optimizer.state.values()], before[1], rtol=0, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_graph_replays_do_not_synchronise_with_the_host():
    data = batches("cuda", 6)
    net, sums, step = fast_run("cuda", data[:3])
    torch.cuda.set_sync_debug_mode("error")
    try:
        for number, (images, labels) in enumerate(data[3:], start=3):
            step(images, labels, number)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert step.graph is not None


def test_the_fast_step_needs_a_fused_optimizer():
    net = torch.nn.Linear(784, 10)
    images, labels = torch.randn(4, 784), torch.randint(10, (4,))
    with pytest.raises(ValueError, match="needs a fused optimizer.*got Adam with fused=False"):
        FastTrainStep(net, loss_fn, torch.optim.Adam(net.parameters()), torch.zeros(3), images, labels, False)
    with pytest.raises(ValueError, match="a CUDA graph needs the batch on a CUDA device, got images on cpu"):
        FastTrainStep(net, loss_fn, torch.optim.Adam(net.parameters(), fused=True), torch.zeros(3), images, labels,
                      True)


class CountsBackwardHooks(pl.Callback):
    """A callback with a per-step hook and no wants_step_hooks: every step must then run eagerly."""

    def __init__(self):
        self.calls = 0

    def on_after_backward(self, trainer, pl_module):
        self.calls += 1


def fit(data_dir, step_mode, accelerator="cpu", callbacks=(), max_steps=45, trainer_kwargs=(), **model_kwargs):
    pl.seed_everything(7, verbose=False)
    model = MNISTClassifier(hidden_sizes=(128,), step_mode=step_mode, lr_schedule="onecycle", **model_kwargs)
    data = MNISTDataModule(str(data_dir), download=False, val_size=500, batch_size=64)
    trainer = pl.Trainer(accelerator=accelerator, devices=1, max_steps=max_steps, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=0, log_every_n_steps=10, callbacks=list(callbacks), **dict(trainer_kwargs))
    trainer.fit(model, data)
    return trainer, model


@pytest.mark.parametrize("accelerator", DEVICES)
def test_fast_and_eager_training_reach_the_same_weights(mnist_slice, accelerator):
    # 2,500 digits in batches of 64: 40 batches, the last of 4 digits; 45 steps cross an epoch boundary
    monitors = lambda: [GradientStatistics(), NativeGradientCheck(every_n_steps=20), StopOnNonFinite()]  # noqa: E731
    fast_trainer, fast = fit(mnist_slice, "fast", accelerator, monitors())
    eager_trainer, eager = fit(mnist_slice, "eager", accelerator, monitors())
    assert fast.fast_step is not None and eager.fast_step is None
    assert fast.fast_step.use_graph == (accelerator == "cuda")
    assert fast_trainer.global_step == eager_trainer.global_step == 45
    tolerance = {"rtol": 0, "atol": 0} if accelerator == "cpu" else {"rtol": 1e-4, "atol": 1e-5}
    torch.testing.assert_close(fast.net.state_dict(), eager.net.state_dict(), **tolerance)
    for key in ("train/acc", "train/loss_epoch", "grad_check/max_rel_diff", "grad_2.0_norm/net.0.weight"):
        torch.testing.assert_close(fast_trainer.callback_metrics[key], eager_trainer.callback_metrics[key],
                                   **tolerance)


def test_a_callback_with_step_hooks_makes_every_step_eager(mnist_slice):
    counter = CountsBackwardHooks()
    trainer, _ = fit(mnist_slice, "fast", callbacks=[counter], max_steps=12)
    assert counter.calls == trainer.global_step == 12


@pytest.mark.parametrize("accelerator", DEVICES)
def test_fast_training_stops_at_a_non_finite_step_with_finite_weights(mnist_slice, accelerator):
    pl.seed_everything(7, verbose=False)
    model = MNISTClassifier(hidden_sizes=(128,), optimizer="sgd", lr=1e6, step_mode="fast")
    data = MNISTDataModule(str(mnist_slice), download=False, val_size=500, batch_size=64)
    trainer = pl.Trainer(accelerator=accelerator, devices=1, max_steps=40, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         log_every_n_steps=10)
    with pytest.raises(NonFiniteLossError, match=r"the loss or the gradient became NaN or infinite at step (\d+)"):
        trainer.fit(model, data)
    assert all(torch.isfinite(t).all() for t in model.net.state_dict().values())


def test_fast_mode_refuses_what_it_cannot_do(mnist_slice):
    with pytest.raises(ValueError, match="step_mode 'fast' needs one process in 32-bit precision, got world size 1 "
                                         "and precision 'bf16-mixed'"):
        fit(mnist_slice, "fast", max_steps=4, trainer_kwargs={"precision": "bf16-mixed"})


@pytest.mark.parametrize("loss", ["mse", "bce"])
@pytest.mark.parametrize("accelerator", DEVICES)
def test_every_loss_and_dropout_run_on_the_fast_path(mnist_slice, accelerator, loss):
    trainer, model = fit(mnist_slice, "fast", accelerator, max_steps=12, loss=loss, activation="sigmoid",
                         optimizer="sgd", lr=0.5, dropout=0.2)
    assert model.fast_step.use_graph == (accelerator == "cuda") and trainer.global_step == 12
    assert model.fast_step.first_non_finite_step() is None
    assert 0 < float(trainer.callback_metrics["train/loss_epoch"]) < 1
