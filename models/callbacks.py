"""TensorBoard extras as Lightning callbacks: gradient statistics, a live check of the handwritten backward against
native autograd, and a test report (misclassified digits, confusion matrix, hyperparameters with final metrics)."""
import pytorch_lightning as pl
import torch
from matplotlib.figure import Figure
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import grad_norm, rank_zero_only
from torchmetrics.classification import MulticlassConfusionMatrix

from models.mlp import build_mlp, classification_loss


def tensorboard(trainer):
    """The run's SummaryWriter, or None when TensorBoard is not among the loggers."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


class GradientStatistics(pl.Callback):
    """Per-layer gradient L2 norms every `log_every_n_steps`; weight and gradient histograms once per epoch."""

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if trainer.global_step % trainer.log_every_n_steps == 0:
            pl_module.log_dict(grad_norm(pl_module, norm_type=2))
        writer = tensorboard(trainer)
        if trainer.is_last_batch and writer is not None and trainer.is_global_zero:
            for name, parameter in pl_module.named_parameters():
                writer.add_histogram(f"weights/{name}", parameter.detach(), trainer.current_epoch)
                if parameter.grad is not None:
                    writer.add_histogram(f"gradients/{name}", parameter.grad, trainer.current_epoch)


class NativeGradientCheck(pl.Callback):
    """Every `every_n_steps`, the gradient of the current batch from the manual layers and from native autograd.

    Both are computed on the current weights with dropout off (so the two see the same function), and
    `grad_check/max_rel_diff` = max over parameters of max|g_manual − g_native| / max|g_native| is logged:
    a live proof that the handwritten backward is right while the network trains.
    """

    def __init__(self, every_n_steps: int = 100):
        self.every_n_steps = every_n_steps
        self.batch = None
        self.nets = None  # {backend: network}; their own weights are never used, functional_call swaps them

    def twins(self, hp, device):
        if self.nets is None:
            # NOTE: built once, with the random state forked, so monitoring never changes the training run's
            # random numbers (initialisation draws them); dropout off so both backends see the same function.
            with torch.random.fork_rng(devices=[]):
                self.nets = {backend: build_mlp(hp.input_size, hp.hidden_sizes, hp.num_classes, hp.activation,
                                                backend, hp.dropout, hp.get("norm", "none")).to(device).eval()
                             for backend in ("manual", "native")}
        return self.nets

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batch = batch

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if pl_module.hparams.get("backend") != "manual" or trainer.global_step % self.every_n_steps:
            return
        hp = pl_module.hparams
        images, labels = self.batch
        params = {name: p.detach().requires_grad_() for name, p in pl_module.net.named_parameters()}
        gradients = []
        for backend, net in self.twins(hp, pl_module.device).items():
            logits = torch.func.functional_call(net, params, (images.flatten(1),))
            loss = classification_loss(logits, labels, hp.loss, backend)
            gradients.append(torch.autograd.grad(loss, list(params.values())))
        differences = [(m - n).abs().max() / n.abs().max().clamp(min=1e-30) for m, n in zip(*gradients)]
        pl_module.log("grad_check/max_rel_diff", torch.stack(differences).max())


class TestReport(pl.Callback):
    """After testing: a grid of misclassified digits (predicted / true), a confusion-matrix image, and the
    hyperparameters of model and data with the final test metrics (TensorBoard's HPARAMS tab)."""

    def __init__(self, max_images: int = 64):
        self.max_images = max_images

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
        metrics = {f"hp/{key.replace('/', '_')}": float(value) for key, value in trainer.callback_metrics.items()
                   if key.startswith("test/")}
        params = dict(pl_module.hparams)
        if trainer.datamodule is not None:
            params.update({f"data.{key}": value for key, value in trainer.datamodule.hparams.items()})
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.log_hyperparams(params, metrics)


def confusion_figure(matrix):
    """(C, C) counts, rows true class, columns predicted class."""
    figure = Figure(figsize=(6, 5.5))
    axes = figure.add_subplot()
    image = axes.imshow(matrix.numpy(), cmap="Blues")
    figure.colorbar(image, ax=axes)
    classes = range(matrix.shape[0])
    axes.set(xticks=list(classes), yticks=list(classes), xlabel="predicted", ylabel="true", title="test confusion")
    threshold = matrix.max().item() / 2
    for true in classes:
        for pred in classes:
            count = int(matrix[true, pred])
            axes.text(pred, true, count, ha="center", va="center", fontsize=7,
                      color="white" if count > threshold else "black")
    return figure


def misclassified_figure(wrong):
    columns = 8
    rows = (len(wrong) + columns - 1) // columns
    figure = Figure(figsize=(columns * 1.2, rows * 1.4))
    for index, (image, predicted, true) in enumerate(wrong):
        axes = figure.add_subplot(rows, columns, index + 1)
        axes.imshow(image.reshape(28, 28).float().numpy(), cmap="gray")
        axes.set_title(f"pred {predicted} / true {true}", fontsize=7)
        axes.axis("off")
    figure.tight_layout()
    return figure
