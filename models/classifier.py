"""LightningModule: an MLP of manual_bp layers (or its torch.nn twin) classifying 28x28 images into 10 classes."""
from typing import Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info
from pytorch_lightning.utilities.model_helpers import is_overridden
from torchmetrics.classification import MulticlassAccuracy

from models.fast_step import FastTrainStep, add_training_sums
from models.mlp import build_mlp, classification_loss
from models.reliability import non_finite_error

# Callback hooks that run inside a training step; a step that must call them cannot be a graph replay.
STEP_HOOKS = ("on_before_backward", "on_after_backward", "on_before_zero_grad", "on_before_optimizer_step")
WARM_UP_STEPS = 2  # eager steps at the start of every fit (optimizer state exists before a graph is captured)


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
        step_mode: how a training step runs. "eager": through Lightning's optimizer step with every callback
            hook. "fast": the whole step (forward, backward, optimizer, metric sums) as one function on static
            buffers, captured as a CUDA graph on CUDA (models/fast_step.py); steps where a callback needs its
            per-step hooks (gradient statistics, the native gradient check), the first steps and a smaller last
            batch still run eagerly. "auto": fast for a single process in 32-bit precision, else eager.
    """

    def __init__(self, hidden_sizes: tuple[int, ...] = (800,), activation: Literal["relu", "sigmoid", "tanh"] = "relu",
                 loss: Literal["cross_entropy", "mse", "bce"] = "cross_entropy",
                 backend: Literal["manual", "native"] = "manual", dropout: float = 0.0,
                 optimizer: Literal["sgd", "adam"] = "adam", lr: float = 1e-3, momentum: float = 0.9,
                 weight_decay: float = 0.0, lr_schedule: Literal["none", "onecycle", "cosine"] = "none",
                 input_size: int = 784, num_classes: int = 10,
                 step_mode: Literal["auto", "fast", "eager"] = "auto"):
        super().__init__()
        check_hyperparameters(hidden_sizes, dropout, lr, momentum, weight_decay, input_size, num_classes)
        self.save_hyperparameters()
        self.net = build_mlp(input_size, hidden_sizes, num_classes, activation, backend, dropout)
        self.accuracy = torch.nn.ModuleDict({f"{stage}_acc": MulticlassAccuracy(num_classes, average="micro")
                                             for stage in ("val", "test")})
        self.automatic_optimization = False  # NOTE: training_step runs the step itself (eagerly or as a replay)
        self._train_sums = None  # (loss sum, correct, count) over this epoch's training batches
        self.fast_step = None  # FastTrainStep, built at the first fast-eligible batch
        self._hook_callbacks = None  # (callbacks asked per step, whether one always needs the hooks)
        self._steps_this_fit = 0

    def forward(self, images):
        return self.net(images.flatten(1))  # (B, 28, 28) -> (B, 784) -> (B, 10)

    def _common_step(self, batch, stage):
        images, labels = batch
        logits = self(images)
        loss = self._loss(logits, labels)
        preds = logits.argmax(dim=-1)
        self.accuracy[f"{stage}_acc"](preds, labels)
        self.log(f"{stage}/loss", loss, on_epoch=True, sync_dist=True, batch_size=len(labels))
        self.log(f"{stage}/acc", self.accuracy[f"{stage}_acc"], on_epoch=True, prog_bar=stage == "val")
        return {"loss": loss, "preds": preds.detach()}

    def _loss(self, logits, labels):
        return classification_loss(logits, labels, self.hparams.loss, self.hparams.backend)

    def training_step(self, batch, batch_idx):
        images, labels = batch
        optimizer, step = self.optimizers(), self.trainer.global_step
        if self._fast_step_for(images, labels) is not None and not self._step_hooks_wanted():
            self.fast_step(images, labels, step)
            count_optimizer_step(optimizer)
            loss, output = self.fast_step.loss, None
            if not self.fast_step.use_graph or step % self.trainer.log_every_n_steps == 0:  # CPU: reading is free
                self._raise_if_non_finite()
        else:
            if self.fast_step is not None:
                self._raise_if_non_finite()  # an earlier fast step went non-finite: no eager update after it
            loss = output = self._eager_step(optimizer, images, labels)
        self._steps_this_fit += 1
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()
        if step % self.trainer.log_every_n_steps == 0:
            self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)
        return output

    def _eager_step(self, optimizer, images, labels):
        """Lightning's way: the closure runs forward and backward, then every on_before_optimizer_step hook."""
        def closure():
            optimizer.zero_grad(set_to_none=True)
            logits = self(images)
            loss = self._loss(logits, labels)
            self.manual_backward(loss)
            add_training_sums(self._train_sums, loss, logits, labels)
            return loss
        loss = optimizer.step(closure=closure)
        return loss.detach()

    def _fast_step_for(self, images, labels):
        """The FastTrainStep for this batch, or None where this batch (or this run) goes eagerly."""
        if self.fast_step is None:
            mode = self.hparams.step_mode
            eligible = self.trainer.world_size == 1 and str(self.trainer.precision) in ("32-true", "32")
            if mode == "fast" and not eligible:
                raise ValueError(f"step_mode 'fast' needs one process in 32-bit precision, got world size "
                                 f"{self.trainer.world_size} and precision {self.trainer.precision!r}")
            if mode == "eager" or not eligible or self._steps_this_fit < WARM_UP_STEPS:
                return None
            optimizer = self.optimizers().optimizer
            self.fast_step = FastTrainStep(self.forward, self._loss, optimizer, self._train_sums, images,
                                           labels, use_graph=images.is_cuda)
            rank_zero_info(f"training steps: fast path ({'CUDA graph' if images.is_cuda else 'static buffers'})")
        return self.fast_step if self.fast_step.fits(images, labels) else None

    def _step_hooks_wanted(self):
        """Whether a callback needs this step's backward/optimizer hooks (then the step runs eagerly)."""
        if self._hook_callbacks is None:
            asked, always = [], False
            for callback in self.trainer.callbacks:
                if hasattr(callback, "wants_step_hooks"):
                    asked.append(callback)
                elif any(is_overridden(hook, callback, pl.Callback) for hook in STEP_HOOKS):
                    always = True  # a callback that does not say when: every step eager
            self._hook_callbacks = (asked, always)
        asked, always = self._hook_callbacks
        return always or any(callback.wants_step_hooks(self.trainer, self) for callback in asked)

    def _raise_if_non_finite(self):
        step = self.fast_step.first_non_finite_step()
        if step is not None:
            raise non_finite_error(self.trainer, self, "the loss or the gradient", step)

    def on_fit_start(self):
        self.fast_step, self._hook_callbacks = None, None
        self._steps_this_fit = 0
        # NOTE: one tensor for the whole fit (zeroed each epoch): the captured fast step adds to this very memory.
        # A run resumed mid-epoch starts its sums at the resume point (on_train_epoch_start is not called then).
        self._train_sums = torch.zeros(3, device=self.device)

    def on_train_epoch_start(self):
        self._train_sums.zero_()

    def on_train_epoch_end(self):
        if self.fast_step is not None:
            self._raise_if_non_finite()
        loss_sum, correct, count = self.trainer.strategy.reduce(self._train_sums.clone(), reduce_op="sum")
        if count > 0:
            self.log_dict({"train/loss_epoch": loss_sum / count, "train/acc": correct / count})

    def validation_step(self, batch, batch_idx):
        return self._common_step(batch, "val")

    def test_step(self, batch, batch_idx):
        return self._common_step(batch, "test")

    def configure_optimizers(self):
        hp = self.hparams
        # NOTE: fused: one kernel per step for all parameters (on this 2-core CPU Adam's step takes 0.4 ms instead
        # of 1.5 ms), and the fused kernels skip a step on the device when told to (found_inf, see fast_step.py).
        # capturable: the step counters stay on the GPU, so the step can be captured in a CUDA graph.
        adam = {"fused": True, "capturable": self.device.type == "cuda"}
        if hp.optimizer == "sgd":
            optimizer = torch.optim.SGD(self.parameters(), lr=hp.lr, momentum=hp.momentum,
                                        weight_decay=hp.weight_decay, fused=True)
        elif hp.weight_decay > 0:
            optimizer = torch.optim.AdamW(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay, **adam)
        else:
            optimizer = torch.optim.Adam(self.parameters(), lr=hp.lr, **adam)
        if hp.lr_schedule == "none":
            return optimizer
        steps = self.trainer.estimated_stepping_batches
        if hp.lr_schedule == "onecycle":
            # NOTE: the learning rate alone follows the cycle (not Adam's beta1 / SGD's momentum), so a captured
            # step only needs its lr refreshed between replays
            scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=hp.lr, total_steps=steps,
                                                            cycle_momentum=False)
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


def count_optimizer_step(optimizer):
    """Advance Lightning's step counter (global_step) for a step that did not go through optimizer.step().

    NOTE: exactly what LightningOptimizer.step does around the step in manual optimization; checkpoints every N
    steps, logging intervals and max_steps all count on it.
    """
    optimizer._on_before_step()
    optimizer._on_after_step()
