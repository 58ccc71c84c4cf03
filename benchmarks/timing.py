"""A Lightning callback that records the wall time of each training epoch (used by the pipeline benchmark)."""
import time

import pytorch_lightning as pl


class EpochTimer(pl.Callback):
    seconds = []  # class-level: read back after LightningCLI has run

    def on_train_epoch_start(self, trainer, pl_module):
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        EpochTimer.seconds.append(time.perf_counter() - self.start)
