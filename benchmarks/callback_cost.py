"""What a callback costs a training step in Lightning's loop: `python -m benchmarks.host_time --callbacks` and
`--toggle`.

Lightning calls six hooks of every callback it holds on every step, each through its profiler with the callback's
state_key for a label, whether the callback overrides the hook or not. Each set of callbacks below is added to one
fit of the thin module (benchmarks.host_time.thin_epoch, 3 epochs), and taken out of `trainer.callbacks` and put back
every `window` steps: its cost is the median window with it less the median window without, two sides timed
milliseconds apart whatever the VM's speed does in between. `--toggle` does the same inside train.py itself (Toggle),
with each of train.py's own callbacks: what it costs a step, Lightning's calls included. A median window is a
step's steady cost: the work a callback does once every N steps (norms, the native check, a checkpoint written)
falls outside it (`--hooks` counts that).
"""
import statistics
import sys
import tempfile
import time

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint

from benchmarks.host_time import thin_epoch
from benchmarks.timing import of_classes
from models.callback_group import CallbackGroup
from models.checkpoints import CachedKeyModelCheckpoint
from train import CHECKPOINTS

TOGGLE_WINDOW = 10  # --toggle: steps a window


class Alternate(pl.Callback):
    """Takes `extra` out every other `window` steps and puts it back (it starts in, so that Lightning sets it up):
    out of `trainer.callbacks`, and a member of a CallbackGroup out of the group's hooks; times each window of steps
    with and without it in `windows`."""

    def __init__(self, extra, window):
        self.extra, self.window = list(extra), window
        self.windows, self.start, self.present = {True: [], False: []}, None, True
        self.kept = None  # (trainer.callbacks, {group: its hooks}) as Lightning set them up

    def taken_out(self, callback):
        return any(callback is extra for extra in self.extra)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step % self.window or trainer.is_last_batch:  # NOTE: train.py logs its sums at the last
            return
        now = time.perf_counter()
        if self.start is not None:
            self.windows[self.present].append(now - self.start)
        if self.kept is None:
            self.kept = (list(trainer.callbacks),
                         {group: dict(group.hooks) for group in trainer.callbacks if isinstance(group, CallbackGroup)})
        callbacks, hooks = self.kept
        self.present = (trainer.global_step // self.window) % 2 == 1
        # NOTE: new lists: Lightning and the group are iterating over the old ones right now
        trainer.callbacks = [callback for callback in callbacks if self.present or not self.taken_out(callback)]
        for group, methods in hooks.items():
            group.hooks = {hook: [method for method in members if self.present or not self.taken_out(method.__self__)]
                           for hook, members in methods.items()}
        self.start = time.perf_counter()


def seconds_per_step(windows, window):
    """The median window with the callbacks less the median window without, per step."""
    return (statistics.median(windows[True]) - statistics.median(windows[False])) / window


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
        costs[name] = seconds_per_step(alternate.windows, window) * 1e6
    return costs


class Toggle(Alternate):
    """Added to train.py's callbacks (`--trainer.callbacks+=benchmarks.callback_cost.Toggle`, which makes it a member
    of train.py's CallbackGroup): Alternate with the callbacks of the named classes, the group's members (from its
    hooks) and the others (the checkpoints, from `trainer.callbacks`). `Toggle.windows` holds the last one's windows,
    read back after LightningCLI has run."""

    def __init__(self, names: list = (), window: int = TOGGLE_WINDOW):
        super().__init__((), window)
        self.names = set(names)
        Toggle.windows = self.windows

    def taken_out(self, callback):
        return callback is not self and of_classes(callback, self.names)


TOGGLE_SCRIPT = """
import json, sys, tempfile, warnings
warnings.filterwarnings("ignore")
import torch
from benchmarks.callback_cost import Toggle
from benchmarks.run import train_py_epoch
data_dir, hidden, device, epochs, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
with tempfile.TemporaryDirectory() as tmp:
    train_py_epoch(data_dir, tmp, 10**9, torch.device(device),
                   extra=["--model.hidden_sizes", hidden, "--trainer.max_epochs", epochs,
                          "--trainer.callbacks+=benchmarks.callback_cost.Toggle",
                          "--trainer.callbacks.names=[" + ", ".join(names) + "]"])
print("TOGGLE", json.dumps(Toggle.windows))
"""
# train.py's callbacks that act during a step, and sets of them (class names; ModelCheckpoint: both checkpoints)
TOGGLE_SETS = {
    "all of them": ["TrainingSteps", "GradientStatistics", "NativeGradientCheck", "LayerStatistics",
                    "LearningRateMonitor", "ModelCheckpoint", "GracefulInterrupt"],
    "TrainingSteps": ["TrainingSteps"],
    "GradientStatistics": ["GradientStatistics"],
    "NativeGradientCheck": ["NativeGradientCheck"],
    "LearningRateMonitor": ["LearningRateMonitor"],
    "the two checkpoints (CachedKeyModelCheckpoint)": ["ModelCheckpoint"],
    "GracefulInterrupt and LayerStatistics (off)": ["GracefulInterrupt", "LayerStatistics"],
}


def train_py_costs(data_dir, hidden, device="cpu", epochs=8):
    """{set of train.py's callbacks: µs a step of steady cost} (Toggle, one train.py run of `epochs` each, in a fresh
    process)."""
    from benchmarks.host_time import run_script

    costs = {}
    for name, names in TOGGLE_SETS.items():
        windows = run_script(TOGGLE_SCRIPT, "TOGGLE", [str(data_dir), hidden, device, str(epochs), *names], name)
        costs[name] = seconds_per_step({True: windows["true"], False: windows["false"]}, TOGGLE_WINDOW) * 1e6
        print(f"{name}: {costs[name]:+.1f} µs/step", file=sys.stderr, flush=True)
    return costs
