"""The training step's fast path (models/training_steps.py) inside Lightning: eager on the CPU, CUDA-graph replays on
CUDA with the same numbers as eager, every optimizer-step hook on every step, the epoch's metrics over all its digits,
and non-finite steps stopped before the update."""
import math
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from models.callbacks import GradientStatistics, NativeGradientCheck
from models.classifier import MNISTClassifier
from models.data import MNISTDataModule
from models.mlp import classification_loss
from models.reliability import NonFiniteLossError
from models import training_steps
from models.training_steps import (TrainingSteps, can_capture, eager_forward, graph_forward,
                                   stream_mismatch_warning)
from tests.helpers import StepLosses, fit, quiet_trainer

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]


def batches(count, batch=32, last=None):
    generator = torch.Generator().manual_seed(1)
    sizes = [batch] * count + ([last] if last else [])
    return [(torch.randn(size, 28, 28, generator=generator), torch.randint(10, (size,), generator=generator))
            for size in sizes]


class CountsReplays(pl.Callback):
    """How many CUDA graph replays each training step ran (a graphed step: 2, its forward and its backward), and
    whether torch's stream-mismatch warning was on."""

    def __init__(self):
        self.replays, self.count, self.replay, self.stream_warnings = [], 0, None, []

    def on_fit_start(self, trainer, pl_module):
        self.replay = replay = torch.cuda.CUDAGraph.replay

        def counted(graph):
            self.count += 1
            replay(graph)
        torch.cuda.CUDAGraph.replay = counted

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.replays.append(self.count)
        self.count = 0
        self.stream_warnings.append(stream_mismatch_warning())

    def on_fit_end(self, trainer, pl_module):
        torch.cuda.CUDAGraph.replay = self.replay


@pytest.mark.parametrize("device", DEVICES)
def test_the_step_computes_what_a_plain_loop_computes(device):
    data = batches(10, last=7)  # a smaller last batch runs eagerly, even in a captured run
    hparams = {"hidden_sizes": (64,), "lr_schedule": "none", "lr": 1e-2}
    torch.manual_seed(0)
    model = MNISTClassifier(**hparams)
    steps, replays = StepLosses(), CountsReplays()
    trainer = quiet_trainer(accelerator=device, max_epochs=1, callbacks=[TrainingSteps(), steps, replays])
    trainer.fit(model, train_dataloaders=torch.utils.data.DataLoader(data, batch_size=None))
    graphed = 2 * (device == "cuda")  # a graphed step replays its forward and its backward
    assert replays.replays == [graphed] * 10 + [0]  # NOTE: the last, smaller batch runs eagerly (its own shape)
    # NOTE: the graphs' gradients reach the parameters across a stream, which torch would warn of at the first step
    assert replays.stream_warnings == [device == "cpu"] * 11 and stream_mismatch_warning()
    assert "forward" not in vars(model)  # the graph is gone after the fit
    torch.manual_seed(0)
    twin = MNISTClassifier(**hparams).net.to(device)
    optimizer = torch.optim.Adam(twin.parameters(), lr=1e-2, fused=True)
    losses = []
    for images, labels in data:
        optimizer.zero_grad()
        loss = classification_loss(twin(images.to(device).flatten(1)), labels.to(device), "cross_entropy", "manual")
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    tolerance = {"rtol": 0, "atol": 0} if device == "cpu" else {"rtol": 1e-5, "atol": 1e-6}
    torch.testing.assert_close(steps.losses, losses, **tolerance)
    # NOTE: Lightning hands the model back on the CPU after the fit
    torch.testing.assert_close(model.net.state_dict(), twin.cpu().state_dict(), **tolerance)


def graphed_plain_training(data, dropout=0.0, norm="none", lr=1e-2):
    """(the module, the losses) of a plain loop on CUDA whose forward and backward are graph_forward's replays."""
    torch.manual_seed(0)
    model = MNISTClassifier(hidden_sizes=(64,), dropout=dropout, norm=norm).cuda()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    graph_forward(model, data[0][0])
    losses = []
    for images, labels in data:
        optimizer.zero_grad()
        loss = classification_loss(model(images), labels, "cross_entropy", "manual")
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    return model, torch.stack(losses)


@CUDA
def test_replays_equal_eager_steps_and_do_not_synchronise():
    data = [(images.cuda(), labels.cuda()) for images, labels in batches(8)]
    graphed, graph_losses = graphed_plain_training(data[:3])
    eager_forward(graphed)
    torch.manual_seed(0)
    eager = MNISTClassifier(hidden_sizes=(64,)).cuda()
    optimizer = torch.optim.Adam(eager.parameters(), lr=1e-2, fused=True)
    for (images, labels), graph_loss in zip(data[:3], graph_losses):
        optimizer.zero_grad()
        loss = classification_loss(eager(images), labels, "cross_entropy", "manual")
        loss.backward()
        optimizer.step()
        torch.testing.assert_close(loss.detach(), graph_loss, rtol=1e-5, atol=1e-6)
    graph_forward(graphed, data[0][0])
    torch.cuda.set_sync_debug_mode("error")
    try:
        for images, labels in data[3:]:  # the forward and backward only: nothing in them may wait for the GPU
            classification_loss(graphed(images), labels, "cross_entropy", "manual").backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    eager_forward(graphed)


@CUDA
def test_dropout_draws_new_masks_in_every_replay():
    data = [(images.cuda(), labels.cuda()) for images, labels in batches(1)] * 4
    model, losses = graphed_plain_training(data, dropout=0.5, lr=0.0)  # lr 0: only the dropout masks differ
    eager_forward(model)
    assert len(set(losses.tolist())) == 4


@CUDA
def test_the_warm_up_before_capture_leaves_batch_norm_statistics_as_they_were():
    torch.manual_seed(0)
    model = MNISTClassifier(hidden_sizes=(64,), norm="batch").cuda()
    before = {name: buffer.clone() for name, buffer in model.named_buffers()}
    graph_forward(model, torch.randn(32, 28, 28, device="cuda"))
    eager_forward(model)
    torch.testing.assert_close(dict(model.named_buffers()), before, rtol=0, atol=0)


def test_only_one_cuda_process_in_32_bit_precision_without_accumulation_is_captured():
    assert can_capture("cuda", 1, "32-true")
    assert not can_capture("cuda", 1, "32-true", accumulate_grad_batches=2)  # each replay writes the same memory
    assert not can_capture("cpu", 1, "32-true")
    assert not can_capture("cuda", 2, "32-true")  # DDP all-reduces inside the backward
    assert not can_capture("cuda", 1, "bf16-mixed")


class CountsOptimizerSteps(pl.Callback):
    def __init__(self):
        self.calls = 0

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.calls += 1


def monitored_fit(data_dir, accelerator, cuda_graph, log_dir, **model_kwargs):
    """(trainer, model, optimizer steps seen, the gradient norms and checks written to TensorBoard as
    {tag: [(step, value)]}, the graph replays of each step)."""
    monitors = [GradientStatistics(), NativeGradientCheck(every_n_steps=20), TrainingSteps(cuda_graph),
                CountsReplays(), CountsOptimizerSteps()]
    logger = TensorBoardLogger(str(log_dir), name="", version="")
    trainer, model, _ = fit(data_dir, {"hidden_sizes": (128,), "lr_schedule": "onecycle", **model_kwargs}, monitors,
                            accelerator=accelerator, max_steps=45, limit_val_batches=0, log_every_n_steps=10,
                            logger=logger)
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0}).Reload()
    norms = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
             if tag.startswith(("steps/grad_norm", "steps/grad_check"))}
    return trainer, model, monitors[-1].calls, norms, monitors[-2].replays


@pytest.mark.parametrize("norm", ["none", "batch"])
@pytest.mark.parametrize("accelerator", DEVICES)
def test_graph_and_eager_training_reach_the_same_weights_with_every_hook_on_every_step(mnist_slice, accelerator,
                                                                                      norm, tmp_path):
    # 2,500 digits in batches of 64: 40 batches, the last of 4 digits; 45 steps cross an epoch boundary.
    # With batch norm the running statistics (buffers of the state dict) are updated inside the graph too.
    graph_trainer, graph, graph_hooks, graph_norms, replays = monitored_fit(mnist_slice, accelerator, True,
                                                                            tmp_path / "g", norm=norm)
    eager_trainer, eager, eager_hooks, eager_norms, _ = monitored_fit(mnist_slice, accelerator, False,
                                                                      tmp_path / "e", norm=norm)
    graphed = 2 * (accelerator == "cuda")
    assert replays == [graphed] * 39 + [0] + [graphed] * 5  # NOTE: batch 40 of an epoch holds 4 digits
    assert graph_trainer.global_step == eager_trainer.global_step == graph_hooks == eager_hooks == 45
    tolerance = {"rtol": 0, "atol": 0} if accelerator == "cpu" else {"rtol": 1e-4, "atol": 1e-5}
    torch.testing.assert_close(graph.net.state_dict(), eager.net.state_dict(), **tolerance)
    for key in ("acc/train", "loss/train"):
        torch.testing.assert_close(graph_trainer.callback_metrics[key], eager_trainer.callback_metrics[key],
                                   **tolerance)
    # the live check of steps 20 and 40 (0-based 19, 39) agrees, and agrees between the runs
    checks = graph_norms.pop("steps/grad_check_max_rel_diff"), eager_norms.pop("steps/grad_check_max_rel_diff")
    assert [step for step, _ in checks[0]] == [step for step, _ in checks[1]] == [19, 39]
    assert all(value < 1e-5 for _, value in checks[0])
    torch.testing.assert_close([value for _, value in checks[0]], [value for _, value in checks[1]], **tolerance)
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


@pytest.mark.parametrize("fold_steps", [64, 7])  # NOTE: the sums taken at the smaller last batch, or every 7 steps too
@pytest.mark.parametrize("accumulate", [1, 2])
@pytest.mark.parametrize("accelerator", DEVICES)
def test_the_epochs_training_loss_and_accuracy_are_over_all_its_digits(mnist_slice, accelerator, accumulate,
                                                                       fold_steps, monkeypatch):
    monkeypatch.setattr(training_steps, "FOLD_STEPS", fold_steps)
    tally = BatchTally()
    trainer, model, _ = fit(mnist_slice, {"hidden_sizes": (32,)}, [tally], accelerator=accelerator, max_epochs=1,
                            limit_val_batches=0, accumulate_grad_batches=accumulate)
    losses, correct, counts = zip(*tally.rows)
    assert counts == (64,) * 39 + (4,)  # 2,500 digits; the last batch runs eagerly
    assert trainer.global_step == 40 // accumulate
    # each step returned its own batch's loss (divided by the batches accumulated, as Lightning does)
    assert [loss * accumulate for loss in tally.returned] == pytest.approx(losses, rel=1e-5)
    digits = sum(counts)
    # NOTE: on CUDA a replay and the callback's eager forward may round a near-tie of two scores apart: one digit
    assert abs(round(float(trainer.callback_metrics["acc/train"]) * digits) - sum(correct)) <= (accelerator == "cuda")
    loss = sum(loss * count for loss, count in zip(losses, counts)) / digits
    assert float(trainer.callback_metrics["loss/train"]) == pytest.approx(loss, rel=1e-5)


@pytest.mark.parametrize("accumulate", [1, 2])
def test_the_step_loss_is_written_once_a_logging_step_at_that_step(mnist_slice, accumulate, tmp_path):
    # 40 batches: 40 optimizer steps, or 20 that each accumulate two batches
    logger = TensorBoardLogger(str(tmp_path), name="", version="")
    trainer, _, _ = fit(mnist_slice, {"hidden_sizes": (32,)}, max_epochs=1, limit_val_batches=0, log_every_n_steps=5,
                        accumulate_grad_batches=accumulate, logger=logger)
    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0}).Reload()
    assert trainer.global_step == 40 // accumulate
    assert [e.step for e in events.Scalars("steps/loss")] == list(range(4, 40 // accumulate, 5))


@pytest.mark.parametrize("accelerator", DEVICES)
def test_training_stops_at_a_non_finite_step_with_finite_weights(mnist_slice, accelerator):
    pl.seed_everything(7, verbose=False)
    model = MNISTClassifier(hidden_sizes=(128,), optimizer="sgd", lr=1e6)
    data = MNISTDataModule(str(mnist_slice), download=False, val_size=500, batch_size=64)
    trainer = quiet_trainer(accelerator=accelerator, max_steps=40, limit_val_batches=0, callbacks=[TrainingSteps()])
    with pytest.raises(NonFiniteLossError, match=r"the gradient became NaN or infinite at step (\d+)"):
        trainer.fit(model, data)
    # on the CPU the step is refused before the update; on a GPU the fused optimizer skips it on the device
    assert all(torch.isfinite(t).all() for t in model.net.state_dict().values())
    assert "forward" not in vars(model)  # a graph made on a GPU is undone when training stops on an error


@pytest.mark.parametrize("bad", [None, math.nan, math.inf, -math.inf])
def test_the_non_finite_check_finds_one_bad_element_in_any_gradient(bad):
    model = MNISTClassifier(hidden_sizes=(8,))
    for parameter in model.parameters():
        parameter.grad = torch.ones_like(parameter)
    if bad is not None:
        model.net[2].bias.grad[3] = bad  # the last parameter's gradient, one element
    trainer = SimpleNamespace(global_step=5, current_epoch=0, max_epochs=1, checkpoint_callbacks=[])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    if bad is None:
        TrainingSteps().on_before_optimizer_step(trainer, model, optimizer)
    else:
        with pytest.raises(NonFiniteLossError, match="at step 5 "):
            TrainingSteps().on_before_optimizer_step(trainer, model, optimizer)


def test_the_non_finite_check_works_whatever_the_default_dtype():
    torch.set_default_dtype(torch.float64)
    try:
        model = MNISTClassifier(hidden_sizes=(8,))
        for parameter in model.parameters():
            parameter.grad = torch.ones_like(parameter)
        model.net[2].bias.grad[3] = math.nan
        trainer = SimpleNamespace(global_step=5, current_epoch=0, max_epochs=1, checkpoint_callbacks=[])
        with pytest.raises(NonFiniteLossError, match="at step 5 "):
            TrainingSteps().on_before_optimizer_step(trainer, model, torch.optim.SGD(model.parameters(), lr=0.1))
    finally:
        torch.set_default_dtype(torch.float32)


def test_the_non_finite_check_of_float16_gradients_cannot_overflow():
    model = MNISTClassifier(hidden_sizes=(128,)).half()
    for parameter in model.parameters():
        parameter.grad = torch.ones_like(parameter)  # 101,770 ones: a float16 sum of them would overflow 65504 to inf
    trainer = SimpleNamespace(global_step=5, current_epoch=0, max_epochs=1, checkpoint_callbacks=[])
    TrainingSteps().on_before_optimizer_step(trainer, model, torch.optim.SGD(model.parameters(), lr=0.1))


@pytest.mark.parametrize("loss", ["mse", "bce"])
@pytest.mark.parametrize("accelerator", DEVICES)
def test_every_loss_and_dropout_train_in_the_step(mnist_slice, accelerator, loss):
    steps = StepLosses()
    trainer, model, _ = fit(mnist_slice, {"hidden_sizes": (128,), "loss": loss, "activation": "sigmoid",
                                          "optimizer": "sgd", "lr": 0.5, "dropout": 0.2},
                            [steps], accelerator=accelerator, max_steps=12, limit_val_batches=0)
    assert trainer.global_step == 12
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
