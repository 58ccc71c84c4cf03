"""The training step (models/train_step.py) inside Lightning: eager on the CPU, a CUDA-graph replay on CUDA with the
same numbers as eager, every optimizer-step hook on every step, and non-finite steps stopped before the update."""
import math
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from models.callbacks import GradientStatistics, NativeGradientCheck
from models.mlp import build_mlp, classification_loss
from models.reliability import NonFiniteLossError, StopOnNonFinite
from models.train_step import TrainStep, can_capture
from models.classifier import MNISTClassifier
from models.data import MNISTDataModule
from tests.helpers import StepLosses, fit, quiet_trainer

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]


def batches(device, count, batch=32, last=None):
    generator = torch.Generator().manual_seed(1)
    sizes = [batch] * count + ([last] if last else [])
    return [(torch.randn(size, 784, generator=generator).to(device),
             torch.randint(10, (size,), generator=generator).to(device)) for size in sizes]


def plain_training(device, data, capture, dropout=0.0, lr=1e-2):
    """Forward + backward by TrainStep, then a fused Adam step: the MNIST module's step without Lightning."""
    torch.manual_seed(0)
    net = build_mlp(784, (64,), 10, "relu", "manual", dropout).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr, fused=True)

    def loss_and_scores(images, labels):
        scores = net(images)
        return classification_loss(scores, labels, "cross_entropy", "manual"), scores

    step = TrainStep(loss_and_scores, lambda loss: loss.backward(), net.parameters(), capture)
    losses, scores = [], []
    for images, labels in data:
        loss, batch_scores = step(images, labels)
        optimizer.step()
        losses.append(loss)
        scores.append(batch_scores)
    return net, torch.stack(losses), step, scores


@pytest.mark.parametrize("device", DEVICES)
def test_the_step_computes_what_a_plain_loop_computes(device):
    data = batches(device, 10, last=7)  # a smaller last batch runs eagerly, even in a captured run
    net, losses, step, scores = plain_training(device, data, capture=device == "cuda")
    assert (step.graph is not None) == (device == "cuda")
    torch.manual_seed(0)
    twin = build_mlp(784, (64,), 10, "relu", "manual").to(device)
    optimizer = torch.optim.Adam(twin.parameters(), lr=1e-2, fused=True)
    twin_losses, twin_scores = [], []
    for images, labels in data:
        optimizer.zero_grad()
        twin_scores.append(twin(images))
        loss = classification_loss(twin_scores[-1], labels, "cross_entropy", "manual")
        loss.backward()
        optimizer.step()
        twin_losses.append(loss.detach())
    tolerance = {"rtol": 0, "atol": 0} if device == "cpu" else {"rtol": 1e-5, "atol": 1e-6}
    torch.testing.assert_close(losses, torch.stack(twin_losses), **tolerance)
    torch.testing.assert_close(scores, [s.detach() for s in twin_scores], **tolerance)  # what the step hands back
    torch.testing.assert_close(net.state_dict(), twin.state_dict(), **tolerance)


@CUDA
def test_replays_equal_eager_steps_and_do_not_synchronise():
    data = batches("cuda", 8)
    eager, eager_losses, _, _ = plain_training("cuda", data, capture=False)
    graph, graph_losses, step, _ = plain_training("cuda", data[:3], capture=True)
    assert step.graph is not None
    torch.testing.assert_close(graph_losses, eager_losses[:3], rtol=1e-5, atol=1e-6)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for images, labels in data[3:]:
            step(images, labels)  # the forward and backward only: nothing in it may wait for the GPU
    finally:
        torch.cuda.set_sync_debug_mode("default")


@CUDA
def test_dropout_draws_new_masks_in_every_replay():
    data = batches("cuda", 4)
    data = [data[0]] * 4  # the same batch and (lr 0) the same weights: only the dropout masks differ between steps
    _, losses, step, _ = plain_training("cuda", data, capture=True, dropout=0.5, lr=0.0)
    assert step.graph is not None and len(set(losses.tolist())) == 4


def test_only_one_cuda_process_in_32_bit_precision_is_captured():
    assert can_capture("cuda", 1, "32-true")
    assert not can_capture("cpu", 1, "32-true")
    assert not can_capture("cuda", 2, "32-true")  # DDP all-reduces inside the backward
    assert not can_capture("cuda", 1, "bf16-mixed")


class CountsOptimizerSteps(pl.Callback):
    def __init__(self):
        self.calls = 0

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.calls += 1


def monitored_fit(data_dir, accelerator, cuda_graph, log_dir, **model_kwargs):
    """(trainer, model, optimizer steps seen, the gradient norms written to TensorBoard as {tag: [(step, value)]})."""
    monitors = [GradientStatistics(), NativeGradientCheck(every_n_steps=20), StopOnNonFinite(), CountsOptimizerSteps()]
    logger = TensorBoardLogger(str(log_dir), name="", version="")
    trainer, model, _ = fit(data_dir, {"hidden_sizes": (128,), "lr_schedule": "onecycle", "cuda_graph": cuda_graph,
                                       **model_kwargs}, monitors, accelerator=accelerator, max_steps=45,
                            limit_val_batches=0, log_every_n_steps=10, logger=logger)
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0}).Reload()
    norms = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
             if tag.startswith("steps/grad_norm")}
    return trainer, model, monitors[-1].calls, norms


@pytest.mark.parametrize("norm", ["none", "batch"])
@pytest.mark.parametrize("accelerator", DEVICES)
def test_graph_and_eager_training_reach_the_same_weights_with_every_hook_on_every_step(mnist_slice, accelerator,
                                                                                      norm, tmp_path):
    # 2,500 digits in batches of 64: 40 batches, the last of 4 digits; 45 steps cross an epoch boundary.
    # With batch norm the running statistics (buffers of the state dict) are updated inside the graph too.
    graph_trainer, graph, graph_hooks, graph_norms = monitored_fit(mnist_slice, accelerator, True, tmp_path / "g",
                                                                   norm=norm)
    eager_trainer, eager, eager_hooks, eager_norms = monitored_fit(mnist_slice, accelerator, False, tmp_path / "e",
                                                                   norm=norm)
    assert (graph.train_step.graph is not None) == (accelerator == "cuda")
    assert graph_trainer.global_step == eager_trainer.global_step == graph_hooks == eager_hooks == 45
    tolerance = {"rtol": 0, "atol": 0} if accelerator == "cpu" else {"rtol": 1e-4, "atol": 1e-5}
    assert float(graph_trainer.callback_metrics["steps/grad_check_max_rel_diff"]) < 1e-5  # the live check agrees
    torch.testing.assert_close(graph.net.state_dict(), eager.net.state_dict(), **tolerance)
    for key in ("acc/train", "loss/train", "steps/grad_check_max_rel_diff"):
        torch.testing.assert_close(graph_trainer.callback_metrics[key], eager_trainer.callback_metrics[key],
                                   **tolerance)
    # the gradient norms of steps 10, 20, 30, 40 (0-based 9, 19, ...), per parameter and in total, in both runs
    assert set(graph_norms) == set(eager_norms) and {"steps/grad_norm/net.0.weight", "steps/grad_norm_total"} <= set(
        graph_norms)
    for tag, written in graph_norms.items():
        assert [step for step, _ in written] == [step for step, _ in eager_norms[tag]] == [9, 19, 29, 39]
        torch.testing.assert_close([value for _, value in written], [value for _, value in eager_norms[tag]],
                                   **tolerance)


class BatchTally(pl.Callback):
    """Each training batch recomputed before its step, from the weights the step sees: (loss, correct digits,
    digits), beside the loss the step returned."""

    def __init__(self):
        self.rows, self.returned = [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        images, labels = batch
        with torch.no_grad():  # no dropout: the function the step's forward computes
            scores = pl_module(images)
            loss = classification_loss(scores, labels, "cross_entropy", "native")
        self.rows.append((loss.item(), int((scores.argmax(dim=-1) == labels).sum()), len(labels)))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.returned.append(outputs["loss"].item())


@pytest.mark.parametrize("accelerator", DEVICES)
def test_the_epochs_training_loss_and_accuracy_are_over_all_its_digits(mnist_slice, accelerator):
    tally = BatchTally()
    trainer, model, _ = fit(mnist_slice, {"hidden_sizes": (32,)}, [tally], accelerator=accelerator, max_epochs=1,
                            limit_val_batches=0)
    assert (model.train_step.graph is not None) == (accelerator == "cuda")
    losses, correct, counts = zip(*tally.rows)
    assert counts == (64,) * 39 + (4,)  # 2,500 digits; the last batch runs eagerly
    assert tally.returned == pytest.approx(losses, rel=1e-5)  # each step returned its own batch's loss
    digits = sum(counts)
    # NOTE: on CUDA a replay and the callback's eager forward may round a near-tie of two scores apart: one digit
    assert abs(round(float(trainer.callback_metrics["acc/train"]) * digits) - sum(correct)) <= (accelerator == "cuda")
    loss = sum(loss * count for loss, count in zip(losses, counts)) / digits
    assert float(trainer.callback_metrics["loss/train"]) == pytest.approx(loss, rel=1e-5)


@pytest.mark.parametrize("accelerator", DEVICES)
def test_training_stops_at_a_non_finite_step_with_finite_weights(mnist_slice, accelerator):
    pl.seed_everything(7, verbose=False)
    model = MNISTClassifier(hidden_sizes=(128,), optimizer="sgd", lr=1e6)
    data = MNISTDataModule(str(mnist_slice), download=False, val_size=500, batch_size=64)
    trainer = quiet_trainer(accelerator=accelerator, max_steps=40, limit_val_batches=0, callbacks=[StopOnNonFinite()])
    with pytest.raises(NonFiniteLossError, match=r"the gradient became NaN or infinite at step (\d+)"):
        trainer.fit(model, data)
    # on the CPU the step is refused before the update; on a GPU the fused optimizer skips it on the device
    assert all(torch.isfinite(t).all() for t in model.net.state_dict().values())


@pytest.mark.parametrize("bad", [None, math.nan, math.inf, -math.inf])
def test_the_non_finite_check_finds_one_bad_element_in_any_gradient(bad):
    model = MNISTClassifier(hidden_sizes=(8,))
    for parameter in model.parameters():
        parameter.grad = torch.ones_like(parameter)
    if bad is not None:
        model.net[2].bias.grad[3] = bad  # the last parameter's gradient, one element
    trainer = SimpleNamespace(global_step=5, current_epoch=0, checkpoint_callbacks=[])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    if bad is None:
        StopOnNonFinite().on_before_optimizer_step(trainer, model, optimizer)
    else:
        with pytest.raises(NonFiniteLossError, match="at step 5 "):
            StopOnNonFinite().on_before_optimizer_step(trainer, model, optimizer)


def test_the_non_finite_check_works_whatever_the_default_dtype():
    torch.set_default_dtype(torch.float64)
    try:
        model = MNISTClassifier(hidden_sizes=(8,))
        for parameter in model.parameters():
            parameter.grad = torch.ones_like(parameter)
        model.net[2].bias.grad[3] = math.nan
        trainer = SimpleNamespace(global_step=5, current_epoch=0, checkpoint_callbacks=[])
        with pytest.raises(NonFiniteLossError, match="at step 5 "):
            StopOnNonFinite().on_before_optimizer_step(trainer, model, torch.optim.SGD(model.parameters(), lr=0.1))
    finally:
        torch.set_default_dtype(torch.float32)


def test_the_non_finite_check_of_float16_gradients_cannot_overflow():
    model = MNISTClassifier(hidden_sizes=(128,)).half()
    for parameter in model.parameters():
        parameter.grad = torch.ones_like(parameter)  # 101,770 ones: a float16 sum of them would overflow 65504 to inf
    trainer = SimpleNamespace(global_step=5, current_epoch=0, checkpoint_callbacks=[])
    StopOnNonFinite().on_before_optimizer_step(trainer, model, torch.optim.SGD(model.parameters(), lr=0.1))


@pytest.mark.parametrize("loss", ["mse", "bce"])
@pytest.mark.parametrize("accelerator", DEVICES)
def test_every_loss_and_dropout_train_in_the_step(mnist_slice, accelerator, loss):
    steps = StepLosses()
    trainer, model, _ = fit(mnist_slice, {"hidden_sizes": (128,), "loss": loss, "activation": "sigmoid",
                                          "optimizer": "sgd", "lr": 0.5, "dropout": 0.2},
                            [steps], accelerator=accelerator, max_steps=12, limit_val_batches=0)
    assert (model.train_step.graph is not None) == (accelerator == "cuda") and trainer.global_step == 12
    losses = steps.losses
    assert len(losses) == 12 and all(map(math.isfinite, losses))
    assert sum(losses[-3:]) / 3 < 0.9 * losses[0]  # it learns: the last steps' loss below the first step's


def test_the_live_check_twins_have_the_trained_layers_with_dropout_off_and_batch_norm_training():
    model = MNISTClassifier(hidden_sizes=(16,), dropout=0.5, norm="batch")
    twins = NativeGradientCheck().twins(model.hparams, "cpu")
    for net in twins.values():
        assert [name for name, _ in net.named_parameters()] == [name for name, _ in model.net.named_parameters()]
        modes = {type(module).__name__: module.training for module in net.modules()}
        assert modes["Dropout"] is False and modes["BatchNorm1d"] is True
