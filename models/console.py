"""What a run prints: one permanent line per epoch, as Keras and Lightning's examples print, on a terminal or not.

    epoch  3/12  train loss 0.0712 acc 97.81%  val loss 0.0655 acc 98.02%  5.2 s
"""
import sys
import time

import pytorch_lightning as pl
from pytorch_lightning.callbacks import TQDMProgressBar
from pytorch_lightning.callbacks.progress.tqdm_progress import Tqdm


class EpochSummary(pl.Callback):
    """After each training epoch (and its validation): epoch, train and val loss and accuracy, seconds.

    The line goes above Lightning's progress bar where one is shown (the bar itself is redrawn each epoch), else
    straight to stdout, so a log file or `| tee` holds the same history as the screen.
    """

    def __init__(self):
        self.started = None

    def on_train_epoch_start(self, trainer, pl_module):
        self.started = time.monotonic()

    def on_train_epoch_end(self, trainer, pl_module):
        if not trainer.is_global_zero or self.started is None:
            return
        metrics = trainer.callback_metrics
        parts = [epoch_label(trainer)]
        for stage in ("train", "val"):
            loss, acc = metrics.get(f"loss/{stage}"), metrics.get(f"acc/{stage}")
            if loss is not None or acc is not None:
                parts.append(" ".join([stage] + ([f"loss {float(loss):.4f}"] if loss is not None else [])
                                      + ([f"acc {100 * float(acc):.2f}%"] if acc is not None else [])))
        parts.append(f"{time.monotonic() - self.started:.1f} s")
        line = "  ".join(parts)
        bar = trainer.progress_bar_callback
        if bar is not None and bar.is_enabled:
            bar.print(line)  # NOTE: through the bar, so the line stays above it instead of breaking it
        else:
            print(line, flush=True)


class EpochProgressBar(TQDMProgressBar):
    """Lightning's progress bar (train.py's on a terminal), named by the epoch as the epoch lines count it: "epoch 1/12",
    not Lightning's 0-based "Epoch 0"."""

    def init_train_tqdm(self):
        # Lightning's training bar (TQDMProgressBar.init_train_tqdm), but for its description
        return EpochBar(lambda: epoch_label(self.trainer), desc=epoch_label(self.trainer),
                        position=2 * self.process_position, disable=self.is_disabled, leave=True, dynamic_ncols=True,
                        file=sys.stdout, smoothing=0, bar_format=self.BAR_FORMAT)

    def on_train_epoch_start(self, trainer, *args):
        self.train_progress_bar.set_description(refresh=False)  # NOTE: the new epoch's, before Lightning redraws
        super().on_train_epoch_start(trainer, *args)


class EpochBar(Tqdm):
    """A training bar whose description is always describe(): Lightning sets its own ("Epoch 0") each epoch."""

    def __init__(self, describe, **kwargs):
        self.describe = describe
        super().__init__(**kwargs)

    def set_description(self, desc=None, refresh=True):
        super().set_description(self.describe(), refresh)


def epoch_label(trainer):
    """"epoch  3/12": the epoch running, counted from 1, and how many the run has (unknown where max_steps rules)."""
    epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None  # -1: max_steps rules
    number = trainer.current_epoch + 1
    return f"epoch {number:>{len(str(epochs))}}/{epochs}" if epochs else f"epoch {number}"
