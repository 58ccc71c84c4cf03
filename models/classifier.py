"""LightningModule: an MLP of manual_bp layers (or its torch.nn twin) classifying 28x28 images into 10 classes."""
from typing import Literal

import pytorch_lightning as pl
import torch

import manual_bp.optim
from models.callbacks import metric_tag
from models.mlp import build_mlp, classification_loss


class MNISTClassifier(pl.LightningModule):
    """An MLP of manual_bp layers (or their torch.nn twin) that classifies 28x28 images into 10 classes.

    The network comes from `build_mlp`, the loss from `classification_loss`. A training step returns the loss
    (Lightning runs its backward and the optimizer step) and the predictions, from which the TrainingSteps callback
    sums the epoch's loss and accuracy on the device (models/training_steps.py, which also makes the forward and
    backward a CUDA graph on one GPU): without that callback a fit logs no loss/train and acc/train.

    Args:
        hidden_sizes: width of each hidden layer, e.g. [800] or [1024, 1024].
        activation: hidden nonlinearity.
        loss: cross_entropy on the scores, or mse / bce of sigmoid outputs against one-hot targets (the lecture's).
        init: the Linear weights' initialisation: "default" (torch.nn.Linear's, U(±1/√fan_in)), xavier_uniform /
            xavier_normal (Var(W) = g²·2/(fan_in + fan_out)), kaiming_uniform / kaiming_normal (Var(W) = g²/fan_in)
            or orthogonal, with the activation's gain g and zero biases (models/mlp.py `initialise`).
        backend: "manual" (manual_bp layers) or "native" (the identical torch.nn twin).
        dropout: dropout probability after each hidden activation (0: none).
        norm: "batch" (BatchNorm1d) or "layer" (LayerNorm) after each hidden Linear, before its activation.
        optimizer: "sgd" (with momentum) or "adam" (AdamW when weight_decay > 0: decoupled decay).
        optimizer_backend: "native" (torch.optim's fused kernel) or "manual" (manual_bp.optim: the update rule
            written out by hand; the same result, a slower step: docs/optimisation.md). A resume keeps it.
        lr: learning rate (the peak rate for onecycle).
        momentum: SGD momentum (0: plain gradient descent).
        weight_decay: L2 penalty (SGD) or decoupled weight decay (AdamW).
        lr_schedule: "none", "onecycle" (warm up then anneal, per step) or "cosine" (anneal per step to 0).
        input_size: pixels per image; num_classes: scores per image.
    """

    def __init__(self, hidden_sizes: tuple[int, ...] = (800,), activation: Literal["relu", "sigmoid", "tanh"] = "relu",
                 loss: Literal["cross_entropy", "mse", "bce"] = "cross_entropy",
                 init: Literal["default", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal",
                               "orthogonal"] = "default",
                 backend: Literal["manual", "native"] = "manual", dropout: float = 0.0,
                 norm: Literal["none", "batch", "layer"] = "none", optimizer: Literal["sgd", "adam"] = "adam",
                 optimizer_backend: Literal["native", "manual"] = "native", lr: float = 1e-3, momentum: float = 0.9,
                 weight_decay: float = 0.0,
                 lr_schedule: Literal["none", "onecycle", "cosine"] = "none", input_size: int = 784,
                 num_classes: int = 10):
        super().__init__()
        check_hyperparameters(hidden_sizes, dropout, lr, momentum, weight_decay, input_size, num_classes)
        self.save_hyperparameters()
        self.net = build_mlp(input_size, hidden_sizes, num_classes, activation, backend, dropout, norm, init)

    def forward(self, images):
        return self.net(images.flatten(1))  # (B, 28, 28) -> (B, 784) -> (B, 10)

    def _common_step(self, batch, stage):
        images, labels = batch
        scores = self(images)  # (B, 10)
        loss = classification_loss(scores, labels, self.hparams.loss, self.hparams.backend)
        preds = scores.argmax(dim=-1)  # (B, 10) -> (B,)
        if stage != "train":  # NOTE: training's loss and accuracy are summed on the device by TrainingSteps
            batch_size = len(labels)
            self.log(metric_tag("loss", stage), loss, on_epoch=True, sync_dist=True, batch_size=batch_size)
            self.log(metric_tag("acc", stage), (preds == labels).float().mean(), on_epoch=True, sync_dist=True,
                     batch_size=batch_size, prog_bar=stage == "val")
        return {"loss": loss, "preds": preds}

    def training_step(self, batch, batch_idx):
        return self._common_step(batch, "train")

    def validation_step(self, batch, batch_idx):
        return self._common_step(batch, "val")

    def test_step(self, batch, batch_idx):
        return self._common_step(batch, "test")

    def configure_optimizers(self):
        hp = self.hparams
        # NOTE: native: torch.optim's fused kernel, one for all parameters (on a 2-core CPU Adam's step takes 0.4 ms
        # instead of 1.5 ms); manual: manual_bp.optim's loop over the parameters, the equations one op each
        native = hp.optimizer_backend == "native"
        optim, speed_flags = (torch.optim, {"fused": True}) if native else (manual_bp.optim, {})
        if hp.optimizer == "sgd":
            optimizer = optim.SGD(self.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay,
                                  **speed_flags)
        elif hp.weight_decay > 0:
            optimizer = optim.AdamW(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay, **speed_flags)
        else:
            optimizer = optim.Adam(self.parameters(), lr=hp.lr, **speed_flags)
        if hp.lr_schedule == "none":
            return optimizer
        steps = self.trainer.estimated_stepping_batches
        if hp.lr_schedule == "onecycle":
            # NOTE: the learning rate alone follows the cycle (not Adam's beta1 / SGD's momentum): the set-up the
            # figures in docs/benchmarks.md were measured with
            scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=hp.lr, total_steps=steps,
                                                            cycle_momentum=False)
        else:
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        # NOTE: stepped after every optimizer step; "name" is the tag of its curve (LearningRateMonitor)
        schedule = {"scheduler": scheduler, "interval": "step", "name": "steps/lr"}
        return {"optimizer": optimizer, "lr_scheduler": schedule}

    def on_save_checkpoint(self, checkpoint):
        # NOTE: a schedule spans the steps the trainer's limits planned at the start; a resume with other limits
        # would step past its end (OneCycleLR raises) or stop short of it, so the checkpoint says what was planned
        if self.hparams.lr_schedule != "none":
            checkpoint["schedule_limits"] = {"lr_schedule": self.hparams.lr_schedule,
                                             "max_epochs": self.trainer.max_epochs, "max_steps": self.trainer.max_steps}


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
