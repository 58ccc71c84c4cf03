"""Checkpoints on disk: written so that a checkpoint's name only ever holds a complete file, read with clear errors.

`AtomicCheckpointIO` is a Lightning `CheckpointIO` plugin (`Trainer(plugins=[AtomicCheckpointIO()])`); the readers
below load with `weights_only=True` (no code in a file runs) and turn a damaged file into one clear error.
"""
import errno
import functools
import inspect
import io
import os
import shutil
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.plugins import TorchCheckpointIO


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (e.g. the disk is full); the message names the folder and the size."""


class DamagedCheckpointError(ValueError):
    """A file that should hold a checkpoint cannot be read as one (truncated, empty, overwritten)."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file in its own folder, flushes and fsyncs it, then renames it onto the
    checkpoint's name (`os.replace`, atomic within a filesystem) and fsyncs the folder.

    Whatever stops the write (a full disk, `kill -9`, a power cut), the name holds the previous complete checkpoint
    or the new one. A full disk raises `CheckpointWriteError` naming the folder and the bytes needed, after removing
    the temporary file. NOTE: the temporary file is `.<name>.<pid>.tmp`: two processes writing the same name never
    share one (each renames its own); after a save, those of that name whose writer has died (a `kill -9` mid-write)
    are removed, so they do not pile up.
    Remote paths (`s3://...`) go to Lightning's own writer.
    """

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        data = buffer.getbuffer()
        # NOTE: the same folder, so the rename stays within one filesystem
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(temporary, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException as error:
            temporary.unlink(missing_ok=True)
            if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
                free = shutil.disk_usage(path.parent).free
                raise CheckpointWriteError(
                    f"no space left in {path.parent} to write {path.name}: it needs {len(data):,} bytes, "
                    f"{free:,} are free") from error
            raise
        sync_folder(path.parent)
        remove_orphans(path)


def remove_orphans(path):
    """Remove the temporary files of checkpoint `path` (.<name>.<pid>.tmp) whose writing process no longer runs."""
    for temporary in path.parent.glob(f".{path.name}.*.tmp"):
        pid = temporary.name[len(path.name) + 2: -len(".tmp")]
        if pid.isdigit() and not process_runs(int(pid)):
            temporary.unlink(missing_ok=True)


def process_runs(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def sync_folder(folder):
    """fsync a folder, so that a rename in it survives a power cut (a no-op where folders cannot be opened)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def read_checkpoint(path):
    """The Lightning checkpoint at path (on the CPU, `weights_only=True`); DamagedCheckpointError if it is not one.

    NOTE: torch's own errors are not repeated: for a file of random bytes they advise `weights_only=False`, which
    would run whatever code the file holds.
    """
    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except OSError:  # missing, unreadable: not a damaged file
        raise
    except Exception:  # a truncated zip, random bytes, an empty file: each fails differently inside torch
        raise DamagedCheckpointError(f"{path} is damaged: it cannot be read as a checkpoint (truncated, empty or "
                                     "overwritten)") from None
    if not isinstance(checkpoint, dict) or not {"state_dict", "global_step"} <= checkpoint.keys():
        raise DamagedCheckpointError(f"{path} is damaged: it holds no Lightning checkpoint (no state_dict or "
                                     "global_step)")
    return checkpoint


def newest_good_checkpoint(folder, skip=None):
    """(path, global step) of the readable checkpoint of folder (*.ckpt) trained furthest, or None."""
    newest = None
    for candidate in Path(folder).glob("*.ckpt"):
        if skip is not None and candidate == Path(skip):
            continue
        try:
            step = read_checkpoint(candidate)["global_step"]
        except (OSError, DamagedCheckpointError):
            continue
        key = (step, candidate.stat().st_mtime)
        if newest is None or key > newest[0]:
            newest = (key, candidate)
    return None if newest is None else (newest[1], newest[0][0])


class CachedKeyModelCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint (the same arguments, files and state): saves every N steps or epochs, or the best.

    Args beyond ModelCheckpoint's:
        save_on_train_end: also write the checkpoint when training ends, at its last step: a step-wise `last.ckpt`
            then holds the fit's final weights, not those of its last multiple of every_n_train_steps (nor those of
            the last new best, which Lightning's save_last writes), and resuming a finished run has nothing to redo.

    Two things differ, both for speed: its `state_key` (the name its state is saved under in a checkpoint) is formed
    once, not on every call, and on a step where no save is due its on_train_batch_end returns at once.
    NOTE: Lightning reads a callback's state_key on every call of every hook (for the profiler's label), six or more
    times a training step, and ModelCheckpoint's is the repr of a dict of its settings: train.py's two cost a
    host-bound step 74–80 µs as ModelCheckpoint and 9–28 µs as this class, in three runs whose other rows moved
    by up to 18 µs (`python -m benchmarks.host_time --callbacks`). The settings in the key (monitor, mode, the
    step, epoch and time intervals) are fixed when it is made. The key is the one Lightning forms for a
    ModelCheckpoint of the same settings, under ModelCheckpoint's own name, so that a checkpoint written with either
    class restores into the other. A model whose `configure_callbacks` returns Lightning's ModelCheckpoint adds it
    beside this one rather than replacing it (Lightning replaces a trainer's callback only by one of its class or a
    subclass).
    """

    def __init__(self, *args, save_on_train_end: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.save_on_train_end = save_on_train_end
        bound = inspect.signature(ModelCheckpoint).bind(*args, **kwargs).arguments
        # the step interval (0: none) and time interval (None: none) as ModelCheckpoint takes them
        self.step_interval = bound.get("every_n_train_steps") or 0
        self.time_interval = bound.get("train_time_interval")

    @functools.cached_property
    def state_key(self):
        # "<class name>{settings}", with ModelCheckpoint's name
        return ModelCheckpoint.__qualname__ + super().state_key.removeprefix(type(self).__qualname__)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        # NOTE: ModelCheckpoint reads the trainer's state (four property chains) before it finds, on nearly every
        # step, that no save is due: no time interval, and no step interval or a step that is not a multiple of it.
        # That test comes first here; a step on which it may save goes to ModelCheckpoint's own hook.
        if self.time_interval is None and (self.step_interval < 1 or trainer.global_step % self.step_interval):
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_end(self, trainer, pl_module):
        super().on_train_end(trainer, pl_module)
        if self.save_on_train_end and not trainer.fast_dev_run:  # NOTE: a fast_dev_run writes no checkpoint
            # NOTE: Trainer.save_checkpoint, the public way: every process calls it, the first one writes
            metrics = {"epoch": trainer.current_epoch, "step": trainer.global_step}  # NOTE: for a templated name
            trainer.save_checkpoint(self.format_checkpoint_name(metrics), weights_only=self.save_weights_only)


class FollowMovedRunFolder(pl.Callback):
    """A run folder moved (or copied) since its checkpoint was written, and resumed where it is now: ModelCheckpoint's
    bookkeeping (best score, best and last paths) names the folder it was written in, and Lightning would drop it
    (the folder differs) and keep a best path into the old place. Before it is restored, the paths of the checkpoint
    being loaded are rewritten into the folder it is loaded from, so the resumed run keeps its best checkpoint."""

    KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")

    def on_load_checkpoint(self, trainer, pl_module, checkpoint):
        loaded_from = Path(trainer.ckpt_path).resolve().parent if trainer.ckpt_path else None
        for callback in trainer.checkpoint_callbacks:
            state = checkpoint.get("callbacks", {}).get(callback.state_key)
            old, new = (state or {}).get("dirpath"), callback.dirpath
            if not old or not new or old == new or Path(new).resolve() != loaded_from:
                continue

            def moved(path):
                return new + path[len(old):] if path and path.startswith(old + os.sep) else path

            state.update({key: moved(state[key]) for key in self.KEYS if key in state}, dirpath=new)
            if "best_k_models" in state:
                state["best_k_models"] = {moved(path): score for path, score in state["best_k_models"].items()}
