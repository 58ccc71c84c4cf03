"""What a callback costs a training step in Lightning's loop: `python -m benchmarks.host_time --callbacks`.

Lightning calls six hooks of every callback it holds on every step, each through its profiler with the callback's
state_key for a label, whether the callback overrides the hook or not. Each set of callbacks below is added to one
fit of the thin module (benchmarks.host_time.thin_epoch, 3 epochs), and taken out of `trainer.callbacks` and put back
every `window` steps: its cost is the median window with it less the median window without, two sides timed
milliseconds apart whatever the VM's speed does in between.
"""
import statistics
import tempfile
import time

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint

from benchmarks.host_time import thin_epoch
from models.callback_group import CallbackGroup
from models.checkpoints import CachedKeyModelCheckpoint
from train import CHECKPOINTS


class Alternate(pl.Callback):
    """Takes `extra` out of the trainer's callbacks every other `window` steps (they start in it, so that Lightning
    sets them up), and times each window of steps with and without them."""

    def __init__(self, extra, window):
        self.extra, self.window = list(extra), window
        self.windows, self.start, self.present = {True: [], False: []}, None, True

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step % self.window:
            return
        now = time.perf_counter()
        if self.start is not None:
            self.windows[self.present].append(now - self.start)
        self.present = (trainer.global_step // self.window) % 2 == 1
        # NOTE: a new list: Lightning is iterating over the old one right now
        kept = [callback for callback in trainer.callbacks if not any(callback is extra for extra in self.extra)]
        trainer.callbacks = kept + self.extra if self.present else kept
        self.start = time.perf_counter()

    def seconds_per_step(self):
        return (statistics.median(self.windows[True]) - statistics.median(self.windows[False])) / self.window


def train_py_checkpoints(kind, folder):
    """train.py's two checkpoints, with its settings (train.CHECKPOINTS), as class `kind`, in `folder`."""
    return [kind(dirpath=folder, **settings) for settings in CHECKPOINTS.values()]


SETS = {
    "4 callbacks that override no hook": lambda folder: [pl.Callback() for _ in range(4)],
    "the same 4 as one CallbackGroup": lambda folder: [CallbackGroup([pl.Callback() for _ in range(4)])],
    "train.py's two checkpoints, as ModelCheckpoint": lambda folder: train_py_checkpoints(ModelCheckpoint, folder),
    "the same two as CachedKeyModelCheckpoint": lambda folder: train_py_checkpoints(CachedKeyModelCheckpoint, folder),
}


def callback_costs(data_dir, hidden, device="cpu", window=10):
    """{set of callbacks: µs a step it adds to the thin module's step} (see the module docstring)."""
    costs = {}
    for name, make in SETS.items():
        with tempfile.TemporaryDirectory() as folder:
            extra = make(folder)
            alternate = Alternate(extra, window)
            thin_epoch(data_dir, hidden, device, [*extra, alternate], epochs=3)
        costs[name] = alternate.seconds_per_step() * 1e6
    return costs
