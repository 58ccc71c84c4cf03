"""What a run prints: one permanent line per epoch, as Keras and Lightning's examples print, on a terminal or not.

    epoch  3/12  train loss 0.0712 acc 97.81%  val loss 0.0655 acc 98.02%  5.2 s
"""
import time

import pytorch_lightning as pl


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
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None  # -1: max_steps rules
        parts = [f"epoch {trainer.current_epoch + 1:>{len(str(epochs))}}/{epochs}" if epochs
                 else f"epoch {trainer.current_epoch + 1}"]
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
