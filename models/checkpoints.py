"""Checkpoints on disk: written so that a checkpoint's name only ever holds a complete file.

`AtomicCheckpointIO` is a Lightning `CheckpointIO` plugin (`Trainer(plugins=[AtomicCheckpointIO()])`).
"""
import errno
import io
import os
import shutil
from pathlib import Path

import torch
from pytorch_lightning.plugins import TorchCheckpointIO


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (e.g. the disk is full); the message names the folder and the size."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file in its own folder, flushes and fsyncs it, then renames it onto the
    checkpoint's name (`os.replace`, atomic within a filesystem) and fsyncs the folder.

    Whatever stops the write (a full disk, `kill -9`, a power cut), the name holds the previous complete checkpoint
    or the new one. A full disk raises `CheckpointWriteError` naming the folder and the bytes needed, after removing
    the temporary file. NOTE: the temporary file is `.<name>.tmp`, one per checkpoint name (only rank 0 writes), so
    the one a `kill -9` leaves behind is overwritten by the next save of that name instead of piling up.
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
        temporary = path.with_name(f".{path.name}.tmp")  # NOTE: the same folder, so the rename stays one filesystem
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
