"""What a run prints: where it writes, then one permanent line per epoch, as Keras and Lightning's examples print, on a
terminal or not.

    run folder: /home/me/manual_bp/runs/mnist/version_3
    epoch  3/12  train loss 0.0712 acc 97.81%  val loss 0.0655 acc 98.02%  5.2 s
"""
import logging
import sys
import time

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelSummary, TQDMProgressBar
from pytorch_lightning.callbacks.progress.tqdm_progress import Tqdm
from pytorch_lightning.utilities.model_summary import get_formatted_model_size, get_human_readable_count


class EpochSummary(pl.Callback):
    """At the start, the run folder (absolute); after each training epoch (and its validation): epoch, train and val
    loss and accuracy, seconds.

    The line goes above Lightning's progress bar where one is shown (the bar itself is redrawn each epoch), else
    straight to stdout, so a log file or `| tee` holds the same history as the screen.
    """

    def __init__(self):
        self.started = None

    def setup(self, trainer, pl_module, stage):
        if stage != "fit":
            return
        # NOTE: at setup, before Lightning's model summary and "Loading `train_dataloader`" lines: the first line
        folder = trainer.log_dir if trainer.logger is not None else None  # NOTE: on every rank (a collective in DDP)
        if folder and trainer.is_global_zero:
            print(f"run folder: {folder}", flush=True)  # where TensorBoard's events, config.yaml and checkpoints go

    def on_train_start(self, trainer, pl_module):
        self.started = time.monotonic()  # NOTE: a run resumed mid-epoch continues its epoch without an epoch start

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
    not Lightning's 0-based "Epoch 0"; without the logger's version number (v_num)."""

    def init_train_tqdm(self):
        # Lightning's training bar (TQDMProgressBar.init_train_tqdm), but for its description
        return EpochBar(lambda: epoch_label(self.trainer), desc=epoch_label(self.trainer),
                        position=2 * self.process_position, disable=self.is_disabled, leave=True, dynamic_ncols=True,
                        file=sys.stdout, smoothing=0, bar_format=self.BAR_FORMAT)

    def on_train_epoch_start(self, trainer, *args):
        self.train_progress_bar.set_description(refresh=False)  # NOTE: the new epoch's, before Lightning redraws
        super().on_train_epoch_start(trainer, *args)

    def get_metrics(self, trainer, pl_module):
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)  # the run folder's version number: the folder is named when the run starts
        return metrics


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


class LayerTable(ModelSummary):
    """Lightning's model summary (layers, parameters, size) without its FLOPs column and "Total Flops" line: the
    handwritten layers are autograd Functions that torch's FLOP counter does not see into, so it would read 0."""

    @staticmethod
    def summarize(summary_data, total_parameters, trainable_parameters, model_size, total_training_modes,
                  total_flops, **summarize_kwargs):
        columns = [(name, [str(value) for value in values]) for name, values in summary_data if name != "FLOPs"]
        widths = [max([len(name)] + [len(value) for value in values]) for name, values in columns]
        rows = [" | ".join(f"{name:<{width}}" for (name, _), width in zip(columns, widths))]
        rows += [" | ".join(f"{values[row]:<{width}}" for (_, values), width in zip(columns, widths))
                 for row in range(len(columns[0][1]) if columns else 0)]
        rule = "-" * (sum(widths) + 3 * len(widths))
        totals = [(get_human_readable_count(trainable_parameters), "Trainable params"),
                  (get_human_readable_count(total_parameters - trainable_parameters), "Non-trainable params"),
                  (get_human_readable_count(total_parameters), "Total params"),
                  (get_formatted_model_size(model_size), "Total estimated model params size (MB)"),
                  (total_training_modes["train"], "Modules in train mode"),
                  (total_training_modes["eval"], "Modules in eval mode")]
        table = [rows[0], rule, *rows[1:], rule, *(f"{value:<10}{name}" for value, name in totals)]
        logging.getLogger(ModelSummary.__module__).info("\n" + "\n".join(table))  # where Lightning's goes
