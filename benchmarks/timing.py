"""A Lightning callback that records the wall time of each training epoch (used by the pipeline benchmark)."""
import time

import pytorch_lightning as pl
import torch

from models.callback_group import CallbackGroup


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # the GPU's queue finished: the time is the work's, not its launches'


class EpochTimer(pl.Callback):
    """Wall time of each training epoch (validation excluded)."""

    seconds = []  # class-level: read back after LightningCLI has run

    def on_train_epoch_start(self, trainer, pl_module):
        synchronize(pl_module.device)
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        synchronize(pl_module.device)
        EpochTimer.seconds.append(time.perf_counter() - self.start)


class Without(pl.Callback):
    """Takes the callbacks of the named classes out of the trainer at setup (benchmarks/host_time.py: what each
    callback costs a step)."""

    def __init__(self, names: list = ()):
        self.names = set(names)

    def named(self, callback):
        return of_classes(callback, self.names)

    def setup(self, trainer, pl_module, stage):
        trainer.callbacks[:] = [callback for callback in trainer.callbacks if not self.named(callback)]
        for callback in trainer.callbacks:
            if isinstance(callback, CallbackGroup):  # train.py's, which holds this one too
                callback.remove(self.named)


def of_classes(callback, names):
    """Whether callback is of one of the classes named, a subclass too (ModelCheckpoint names train.py's
    CachedKeyModelCheckpoint)."""
    return any(kind.__name__ in names for kind in type(callback).__mro__)
