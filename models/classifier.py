"""LightningModule: an MLP of manual_bp layers (or its torch.nn twin) classifying 28x28 images into 10 classes."""
from typing import Literal

import pytorch_lightning as pl
import torch
from torchmetrics.classification import MulticlassAccuracy

from models.mlp import build_mlp, classification_loss


class MNISTClassifier(pl.LightningModule):
    """Thin wrapper: the network comes from `build_mlp`, the loss from `classification_loss`.

    Args:
        hidden_sizes: width of each hidden layer, e.g. [800] or [1024, 1024].
        activation: hidden nonlinearity.
        loss: cross_entropy on the scores, or mse / bce of sigmoid outputs against one-hot targets (the lecture's).
        backend: "manual" (manual_bp layers) or "native" (the identical torch.nn twin).
        dropout: dropout probability after each hidden activation (0: none).
        optimizer: "sgd" (with momentum) or "adam" (AdamW when weight_decay > 0: decoupled decay).
        lr: learning rate (the peak rate for onecycle).
        momentum: SGD momentum (0: plain gradient descent).
        weight_decay: L2 penalty (SGD) or decoupled weight decay (AdamW).
        lr_schedule: "none", "onecycle" (warm up then anneal, per step) or "cosine" (anneal per step to 0).
        input_size: pixels per image; num_classes: scores per image.
    """

    def __init__(self, hidden_sizes: tuple[int, ...] = (800,), activation: Literal["relu", "sigmoid", "tanh"] = "relu",
                 loss: Literal["cross_entropy", "mse", "bce"] = "cross_entropy",
                 backend: Literal["manual", "native"] = "manual", dropout: float = 0.0,
                 optimizer: Literal["sgd", "adam"] = "adam", lr: float = 1e-3, momentum: float = 0.9,
                 weight_decay: float = 0.0, lr_schedule: Literal["none", "onecycle", "cosine"] = "none",
                 input_size: int = 784, num_classes: int = 10):
        super().__init__()
        check_hyperparameters(hidden_sizes, dropout, lr, momentum, weight_decay, input_size, num_classes)
        self.save_hyperparameters()
        self.net = build_mlp(input_size, hidden_sizes, num_classes, activation, backend, dropout)
        self.accuracy = torch.nn.ModuleDict({f"{stage}_acc": MulticlassAccuracy(num_classes, average="micro")
                                             for stage in ("val", "test")})
        self._train_sums = None  # (loss sum, correct, count) over this epoch's training batches

    def forward(self, images):
        return self.net(images.flatten(1))  # (B, 28, 28) -> (B, 784) -> (B, 10)

    def _common_step(self, batch, stage):
        images, labels = batch
        logits = self(images)
        loss = classification_loss(logits, labels, self.hparams.loss, self.hparams.backend)
        preds = logits.argmax(dim=-1)
        if stage == "train":
            self._accumulate_train_metrics(loss, preds, labels)
        else:
            self.accuracy[f"{stage}_acc"](preds, labels)
            self.log(f"{stage}/loss", loss, on_epoch=True, sync_dist=True, batch_size=len(labels))
            self.log(f"{stage}/acc", self.accuracy[f"{stage}_acc"], on_epoch=True, prog_bar=stage == "val")
        return {"loss": loss, "preds": preds.detach()}

    def _accumulate_train_metrics(self, loss, preds, labels):
        # NOTE: self.log costs about a millisecond of Python per call, as much as a tenth of a CPU training step,
        # so training sums are kept in one tensor (no host-device sync) and logged at the logging interval and at
        # the end of the epoch only.
        count = len(labels)
        sums = torch.stack([loss.detach() * count, (preds == labels).sum().to(loss.dtype), loss.new_tensor(count)])
        self._train_sums = sums if self._train_sums is None else self._train_sums + sums
        if self.trainer.global_step % self.trainer.log_every_n_steps == 0:
            self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)

    def on_train_epoch_start(self):
        self._train_sums = None

    def on_train_epoch_end(self):
        if self._train_sums is not None:
            loss_sum, correct, count = self.trainer.strategy.reduce(self._train_sums, reduce_op="sum")  # all ranks
            self.log_dict({"train/loss_epoch": loss_sum / count, "train/acc": correct / count})

    def training_step(self, batch, batch_idx):
        return self._common_step(batch, "train")

    def validation_step(self, batch, batch_idx):
        return self._common_step(batch, "val")

    def test_step(self, batch, batch_idx):
        return self._common_step(batch, "test")

    def configure_optimizers(self):
        hp = self.hparams
        fused = self.device.type == "cuda"  # NOTE: one fused kernel per step instead of one per parameter
        if hp.optimizer == "sgd":
            optimizer = torch.optim.SGD(self.parameters(), lr=hp.lr, momentum=hp.momentum,
                                        weight_decay=hp.weight_decay)
        elif hp.weight_decay > 0:
            optimizer = torch.optim.AdamW(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay, fused=fused)
        else:
            optimizer = torch.optim.Adam(self.parameters(), lr=hp.lr, fused=fused)
        if hp.lr_schedule == "none":
            return optimizer
        steps = self.trainer.estimated_stepping_batches
        if hp.lr_schedule == "onecycle":
            scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=hp.lr, total_steps=steps)
        else:
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def check_hyperparameters(hidden_sizes, dropout, lr, momentum, weight_decay, input_size, num_classes):
    """Reject impossible values before anything is built, naming the argument, the expected and the given."""
    if not hidden_sizes or any(not isinstance(w, int) or w < 1 for w in hidden_sizes):
        raise ValueError(f"hidden_sizes must be a non-empty list of positive integers, got {list(hidden_sizes)}")
    for name, value, valid, expected in (
        ("lr", lr, lr > 0, "> 0"),
        ("momentum", momentum, 0 <= momentum < 1, "in [0, 1)"),
        ("weight_decay", weight_decay, weight_decay >= 0, ">= 0"),
        ("dropout", dropout, 0 <= dropout < 1, "in [0, 1)"),
        ("input_size", input_size, input_size >= 1, ">= 1"),
        ("num_classes", num_classes, num_classes >= 2, ">= 2"),
    ):
        if not valid:
            raise ValueError(f"{name} must be {expected}, got {value}")
