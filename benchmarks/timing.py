"""A Lightning callback that records the wall time of each training epoch (used by the pipeline benchmark)."""
import time

import pytorch_lightning as pl
import torch


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
