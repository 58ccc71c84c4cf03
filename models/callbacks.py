"""TensorBoard extras: the logger, gradient statistics, a live check of the handwritten backward against native
autograd, and a test report (misclassified digits, confusion matrix, hyperparameters with the test metrics).

Every run uses one tag scheme, chosen so TensorBoard's Time Series tab (groups sorted by name) opens on the curves:
`acc/train`, `acc/val`, `loss/train`, `loss/val` (epoch means); `steps/...` (per logged step: loss, learning rate,
gradient norms, the native gradient check); `test/acc`, `test/loss` (once, at the end).
"""
from typing import Sequence

import pytorch_lightning as pl
import torch
from pathlib import Path

from matplotlib.figure import Figure
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only
from torch.utils.tensorboard.summary import hparams as hparams_summary
from torchmetrics.classification import MulticlassConfusionMatrix

import manual_bp.nn as mnn
from models.layer_stats import ActivationRecorder, weight_gradient_stds
from models.mlp import build_mlp, classification_loss
from models.run_folder import claim_version, lock_run_folder
from models.step_scalars import on_interval, write_scalars


def metric_tag(metric, stage):
    """The tag of `metric` ("loss", "acc") at `stage`: acc/train, loss/val, ..., but test/acc (see above)."""
    return f"test/{metric}" if stage == "test" else f"{metric}/{stage}"


class EpochlessTensorBoardLogger(TensorBoardLogger):
    """Lightning's TensorBoardLogger without the `epoch` scalar it adds to every logged step (the x axis is the
    step; `epoch` would be the first card of the Time Series tab), whose run folder is one process's alone: a new
    run's version_<n> is claimed atomically and the folder locked by rank 0 (models/run_folder.py)."""

    @property
    def version(self):
        if rank_zero_only.rank != 0 or "://" in str(self.root_dir):  # other ranks write no files
            return super().version
        if self._version is None:
            self._version = claim_version(self.root_dir, "--trainer.logger.init_args.save_dir")
        if not getattr(self, "_locked", False):
            folder = self._version if isinstance(self._version, str) else f"version_{self._version}"
            lock_run_folder(Path(self.root_dir) / folder)
            self._locked = True
        return self._version

    def finalize(self, status):
        try:
            super().finalize(status)
        except OSError:  # NOTE: e.g. the disk full: the run is failing already and that error is the one to report
            if status != "failed":
                raise

    def log_metrics(self, metrics, step=None):
        try:
            super().log_metrics({key: value for key, value in metrics.items() if key != "epoch"}, step)
        except ValueError as error:  # NOTE: Lightning reports any failed write as "you tried to log ... not supported"
            if isinstance(error.__cause__, OSError):  # e.g. the disk full: say that
                raise error.__cause__ from None
            raise


def tensorboard(trainer):
    """The run's SummaryWriter, or None when TensorBoard is not among the loggers."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


class GradientStatistics(pl.Callback):
    """Per-layer gradient L2 norms every `log_every_n_steps`; weight and gradient histograms once per epoch.

    The norms are `steps/grad_norm/<parameter>` and `steps/grad_norm_total`, written to the loggers at the step they
    were computed on (write_scalars; a logging step reads them from the device once); the other steps run a modulo.
    """

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        # NOTE: global_step counts the steps done: this is step global_step (0-based)
        if on_interval(trainer.global_step, trainer.log_every_n_steps) and trainer.loggers and trainer.is_global_zero:
            self.write_norms(trainer, pl_module, trainer.global_step)
        writer = tensorboard(trainer) if trainer.is_last_batch and trainer.is_global_zero else None
        if writer is not None:
            self.write_histograms(writer, pl_module, trainer.current_epoch)

    @staticmethod
    def write_histograms(writer, pl_module, epoch):
        for name, parameter in pl_module.named_parameters():
            # NOTE: "parameters/...": the group sorts after acc/ and loss/ in the Time Series tab
            writer.add_histogram(f"parameters/{name}", parameter.detach(), epoch)
            if parameter.grad is not None:
                writer.add_histogram(f"parameters_grad/{name}", parameter.grad, epoch)

    @staticmethod
    def write_norms(trainer, pl_module, step):
        """‖∂L/∂θ‖₂ of each parameter θ and of all of them together, as scalars at `step`."""
        grads = {name: p.grad for name, p in pl_module.named_parameters() if p.grad is not None}
        if not grads:
            return
        norms = torch.stack([torch.linalg.vector_norm(grad.float()) for grad in grads.values()])  # (P,)
        values = torch.cat([norms, torch.linalg.vector_norm(norms)[None]]).tolist()  # NOTE: one read of P + 1 values
        tags = [f"steps/grad_norm/{name}" for name in grads] + ["steps/grad_norm_total"]
        write_scalars(trainer, dict(zip(tags, values)), step)


class LayerStatistics(pl.Callback):
    """Every `every_n_steps` training steps (0, the default: never), per layer: the activations' mean, std and
    saturated fraction (models/layer_stats.py) and the std of ∂L/∂W, as `layers/<statistic>/<layer>` scalars.

    The forward hooks are registered at the start of a recorded step and removed before its update, so the other
    steps, and every step when off, run no code of this callback's beyond a modulo; a recorded step reads its
    values back from the device (one synchronisation). In a CUDA graph replay the
    forward runs no Python: only ∂L/∂W is recorded there (TrainingSteps with `cuda_graph` false records all).
    """

    def __init__(self, every_n_steps: int = 0):
        if every_n_steps < 0:
            raise ValueError(f"every_n_steps must be >= 0 (0: off), got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.recorder = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        # NOTE: steps every_n_steps, 2·every_n_steps, ... as NativeGradientCheck (global_step counts the steps done)
        if on_interval(trainer.global_step, self.every_n_steps):
            self.recorder = ActivationRecorder(pl_module)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if self.recorder is None:
            return
        self.recorder.remove()
        scalars = {}
        for name, (mean, std, saturated) in self.recorder.statistics().items():
            scalars.update({f"layers/act_mean/{name}": mean, f"layers/act_std/{name}": std,
                            f"layers/saturated/{name}": saturated})
        scalars.update({f"layers/grad_std/{name}": std for name, std in weight_gradient_stds(pl_module).items()})
        self.recorder = None
        # NOTE: not self.log, which Lightning writes only on its log_every_n_steps, of which every_n_steps need not be
        # a multiple
        write_scalars(trainer, scalars, trainer.global_step)


class NativeGradientCheck(pl.Callback):
    """Every `every_n_steps`, the gradient of the current batch from the manual layers and from native autograd.

    Both are computed on the current weights with dropout off (so the two see the same function), and
    `steps/grad_check_max_rel_diff` = max|g_manual − g_native| / max|g_native|, both maxima over every element of
    every parameter's gradient, is written to the loggers at the step it was computed on (write_scalars: read from
    the device then): a live proof that the handwritten backward is right while the network trains. every_n_steps 0:
    off.
    """

    def __init__(self, every_n_steps: int = 100):
        if every_n_steps < 0:
            raise ValueError(f"every_n_steps must be >= 0 (0: off), got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.batch = None
        self.nets = None  # {backend: network}; their own weights are never used, functional_call swaps them

    def twins(self, hp, device):
        if self.nets is None:
            # NOTE: built once, with the random state forked, so monitoring never changes the training run's
            # random numbers (initialisation draws them); dropout off so both backends see the same function, and
            # in training mode, so a batch norm normalises with the batch's statistics as the trained network does.
            with torch.random.fork_rng(devices=[]):
                self.nets = {backend: build_mlp(hp.input_size, hp.hidden_sizes, hp.num_classes, hp.activation,
                                                backend, hp.dropout, hp.get("norm", "none")).to(device).train()
                             for backend in ("manual", "native")}
            for net in self.nets.values():  # the same layers (and parameter names) as the trained network
                for module in net.modules():
                    if isinstance(module, (torch.nn.Dropout, mnn.Dropout)):
                        module.eval()
        return self.nets

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batch = batch

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if pl_module.hparams.get("backend") != "manual" or not on_interval(trainer.global_step, self.every_n_steps):
            return  # NOTE: on steps every_n_steps, 2·every_n_steps, ... (global_step counts the steps done)
        hp = pl_module.hparams
        images, labels = self.batch
        params = {name: p.detach().requires_grad_() for name, p in pl_module.net.named_parameters()}
        gradients = []
        for backend, net in self.twins(hp, pl_module.device).items():
            logits = torch.func.functional_call(net, params, (images.flatten(1),))
            loss = classification_loss(logits, labels, hp.loss, backend)
            gradients.append(torch.autograd.grad(loss, list(params.values())))
        # NOTE: relative to the largest gradient of the network, not parameter by parameter: a bias before a batch
        # norm has a gradient of exactly 0 in exact arithmetic, and its rounding noise over itself would read as 100%
        difference = torch.stack([(m - n).abs().max() for m, n in zip(*gradients)]).max()
        scale = torch.stack([n.abs().max() for n in gradients[1]]).max().clamp(min=1e-30)
        write_scalars(trainer, {"steps/grad_check_max_rel_diff": difference / scale}, trainer.global_step)


class TestReport(pl.Callback):
    """After testing: a grid of misclassified digits (predicted / true), a confusion-matrix image, and the
    hyperparameters of model and data with the final test metrics (TensorBoard's HPARAMS tab).

    not_hyperparameters: argument names left out of the HPARAMS tab (where the data are, how fast a step runs).
    """

    def __init__(self, max_images: int = 16, not_hyperparameters: Sequence[str] = ()):
        self.max_images = max_images
        self.not_hyperparameters = tuple(not_hyperparameters)

    def on_test_epoch_start(self, trainer, pl_module):
        self.confusion = MulticlassConfusionMatrix(pl_module.hparams.num_classes).to(pl_module.device)
        self.wrong = []  # (image, predicted, true) on this rank

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        images, labels = batch
        preds = outputs["preds"]
        self.confusion.update(preds, labels)
        missed = (preds != labels).nonzero().flatten()[: self.max_images - len(self.wrong)]
        self.wrong += [(images[i].cpu(), int(preds[i]), int(labels[i])) for i in missed.tolist()]

    def on_test_epoch_end(self, trainer, pl_module):
        matrix = self.confusion.compute().cpu()  # synced across ranks
        writer = tensorboard(trainer)
        if writer is None or not trainer.is_global_zero:
            return
        writer.add_figure("test/confusion_matrix", confusion_figure(matrix), trainer.global_step)
        if self.wrong:
            writer.add_figure("test/misclassified", misclassified_figure(self.wrong), trainer.global_step)

    @rank_zero_only
    def on_test_end(self, trainer, pl_module):
        writer = tensorboard(trainer)
        if writer is None:
            return
        params = {key: value for key, value in pl_module.hparams.items() if not key.startswith("_")}
        if trainer.datamodule is not None:
            params.update({f"data.{key}": value for key, value in trainer.datamodule.hparams.items()
                           if not key.startswith("_")})
        params = {key: value if isinstance(value, (bool, int, float, str)) else str(value)
                  for key, value in params.items() if key.split(".")[-1] not in self.not_hyperparameters}
        # test/acc first: the HParams table shows metrics after 5 hyperparameter columns, and a narrow window
        # cuts the last one off
        metrics = sorted((key for key in trainer.callback_metrics if key.startswith("test/")),
                         key=lambda key: key != "test/acc")
        # NOTE: the HParams tab reads each metric from the run's own scalar of that tag (logged by the test)
        for summary in hparams_summary(params, dict.fromkeys(metrics, 0.0)):
            writer.file_writer.add_summary(summary)
        writer.flush()


# NOTE: both figures are drawn at the width of TensorBoard's image card (about 360 px), so they are shown unscaled
# and their labels stay legible


def confusion_figure(matrix):
    """(C, C) counts, rows true class, columns predicted class."""
    figure = Figure(figsize=(3.6, 3.6), dpi=100)
    axes = figure.add_subplot()
    axes.imshow(matrix.numpy(), cmap="Blues")
    classes = range(matrix.shape[0])
    axes.set_xticks(list(classes))
    axes.set_yticks(list(classes))
    axes.set_xlabel("predicted", fontsize=9)
    axes.set_ylabel("true", fontsize=9)
    axes.set_title("test confusion (counts)", fontsize=10)
    axes.tick_params(labelsize=8)
    threshold = matrix.max().item() / 2
    for true in classes:
        for pred in classes:
            count = int(matrix[true, pred])
            axes.text(pred, true, count, ha="center", va="center", fontsize=8 if count < 1000 else 6.5,
                      color="white" if count > threshold else "black")
    figure.tight_layout()
    return figure


def misclassified_figure(wrong, columns=4):
    """Digits with their predicted and (in brackets) true labels."""
    rows = (len(wrong) + columns - 1) // columns
    figure = Figure(figsize=(3.6, rows * 0.95 + 0.35), dpi=100)
    for index, (image, predicted, true) in enumerate(wrong):
        axes = figure.add_subplot(rows, columns, index + 1)
        axes.imshow(image.reshape(28, 28).float().numpy(), cmap="gray")
        axes.set_title(f"{predicted} ({true})", fontsize=12, color="tab:red", pad=2)
        axes.axis("off")
    figure.suptitle("predicted (true)", fontsize=10)
    figure.tight_layout()
    return figure
