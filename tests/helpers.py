"""Helpers the tests share: IDX files and slices of MNIST, a quiet Trainer, one `fit` of the MNIST module, the
train.py arguments of a small real run, a callback that records each step's loss, one that records a signal handler,
and one that interrupts a run at a step the test chooses."""
import gzip
import json
import os
import re
import signal as signals
import time
from pathlib import Path

import pytorch_lightning as pl

from models.classifier import MNISTClassifier
from models.data import MNISTDataModule
from models.idx import IDX_FILES, IDX_MAGIC, read_idx
from models.training_steps import TrainingSteps

ROOT = Path(__file__).resolve().parents[1]
SLICE_DIR = ROOT / "tests" / "data" / "mnist_slice"  # shipped: 3,000 training and 1,000 test digits of the real MNIST
# the full MNIST for the few tests that need it: MNIST_DIR, else data/mnist, else the copy beside the project (CI's)
MNIST_DIR = Path(os.environ.get("MNIST_DIR") or next(
    (folder for folder in (ROOT / "data" / "mnist", ROOT.parent / "shared" / "datasets" / "mnist") if folder.is_dir()),
    ROOT / "data" / "mnist"))


def write_idx(path, tensor, compress=True):
    """Write a uint8 tensor as an IDX file (the format of the MNIST files), gzipped if compress."""
    header = IDX_MAGIC[tensor.dim()].to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in tensor.shape)
    data = header + tensor.contiguous().numpy().tobytes()
    path.write_bytes(gzip.compress(data, compresslevel=1) if compress else data)


def make_slice(folder, source, train_count, test_count, compress=True):
    """The first train_count / test_count digits of the IDX files in source, written to folder."""
    folder.mkdir(parents=True, exist_ok=True)
    counts = {"train": train_count, "test": test_count}
    for key, name in IDX_FILES.items():
        tensor = read_idx(source / f"{name}.gz", 3 if key.endswith("images") else 1)
        write_idx(folder / (f"{name}.gz" if compress else name), tensor[: counts[key.split("_")[0]]], compress)
    return folder


def quiet_trainer(**kwargs):
    """A Trainer on the CPU that writes and prints nothing (no logger, checkpoints, progress bar or summary)."""
    quiet = {"accelerator": "cpu", "devices": 1, "logger": False, "enable_checkpointing": False,
             "enable_progress_bar": False, "enable_model_summary": False}
    return pl.Trainer(**{**quiet, **kwargs})


def fit(data_dir, model_kwargs=(), callbacks=(), batch_size=64, ckpt_path=None, **trainer_kwargs):
    """Seed 7, MNISTClassifier(**model_kwargs) on the slice in data_dir (500 held out), fitted by a quiet Trainer
    with train.py's TrainingSteps (unless callbacks hold one), from ckpt_path if given."""
    pl.seed_everything(7, verbose=False)
    model = MNISTClassifier(**dict(model_kwargs))
    data = MNISTDataModule(str(data_dir), download=False, val_size=500, batch_size=batch_size)
    callbacks = list(callbacks)
    if not any(isinstance(callback, TrainingSteps) for callback in callbacks):
        callbacks.append(TrainingSteps())
    trainer = quiet_trainer(callbacks=callbacks, **trainer_kwargs)
    trainer.fit(model, data, ckpt_path=ckpt_path)
    return trainer, model, data


def cli_args(data_dir, save_dir, *extra, name="mnist"):
    """train.py arguments of a small real run on the slice in data_dir, writing runs under save_dir/name."""
    return ["--data.data_dir", str(data_dir), "--data.val_size", "500", "--data.download", "false",
            "--model.hidden_sizes", "[32]", "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false",
            "--trainer.logger.init_args.save_dir", str(save_dir), "--trainer.logger.init_args.name", name, *extra]


class StepLosses(pl.Callback):
    """Each training step's loss, as a Python float."""

    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(outputs["loss"].item())


class SignalHandlers(pl.Callback):
    """The SIGUSR1 handler (Lightning's SLURM requeue signal) while the run trains."""

    def on_train_start(self, trainer, pl_module):
        self.sigusr1 = signals.getsignal(signals.SIGUSR1)


class AtStep(pl.Callback):
    """Test-only, given to train.py with `at_step(...)`: at the end of training step `step` (rank 0), write `marker`
    (this process's id), then send `signal` to this process (SIGINT, SIGTERM, SIGKILL), or to its whole process group
    with `group`, or with signal "wait" wait until the file `proceed` exists. A run that finds `marker` written
    already (its resume, with the run's own config.yaml) does nothing.

    NOTE: so a test interrupts a run exactly where it means to, whatever the machine's speed or load, instead of
    sending a signal "soon" and hoping the run is mid-training.
    """

    def __init__(self, step: int, marker: str, signal: str = "SIGTERM", group: bool = False, proceed: str = ""):
        self.step, self.marker, self.signal, self.group, self.proceed = step, Path(marker), signal, group, proceed
        self.armed = not self.marker.exists()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if not (self.armed and trainer.global_step == self.step and trainer.is_global_zero):
            return
        self.armed = False
        self.marker.write_text(str(os.getpid()))
        if self.signal == "wait":
            while not Path(self.proceed).exists():
                time.sleep(0.01)
        elif self.group:
            os.killpg(os.getpgrp(), getattr(signals, self.signal))
        else:
            os.kill(os.getpid(), getattr(signals, self.signal))


def at_step(step, marker, signal="SIGTERM", group=False, proceed=""):
    """train.py arguments that add AtStep(step, marker, ...) to a run's callbacks."""
    init_args = {"step": step, "marker": str(marker), "signal": signal, "group": group, "proceed": str(proceed)}
    return ["--trainer.callbacks+=" + json.dumps({"class_path": "tests.helpers.AtStep", "init_args": init_args})]


def doc_text_after(doc, phrase, until="```"):
    """The text of docs/<doc> from just after `phrase` (matched across any line breaks and spaces) up to `until`:
    e.g. the lines of the fenced block that follows a sentence, as a doc shows what a command prints."""
    text = (ROOT / "docs" / doc).read_text()
    pattern = r"\s+".join(map(re.escape, phrase.split()))
    found = re.search(pattern + r"\s*(?:```\w*\n)?(.*?)" + re.escape(until), text, re.S)
    assert found, f"docs/{doc} no longer has {phrase!r}"
    return found.group(1)
