"""Run folders: each owned by one process at a time, new ones claimed atomically.

A run writes <save_dir>/<name>/version_<n>/. Two processes must never write into one: a new run claims its folder
with `os.mkdir` (atomic: of two runs starting at once, one gets version_<n>, the other version_<n+1>), and the process
that writes into a run folder holds an OS lock (`fcntl.flock`) on `<folder>/.lock` while it runs. The OS releases
the lock when the process ends, however it ends (`kill -9` included), so a stopped run's folder is free for its
resume, and a resume started while the run still trains there is refused. A folder claimed by a run that ends before
writing anything into it (a missing data folder, a bad option) is removed again, with the folders made for it.
"""
import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; folders are still claimed atomically
    fcntl = None

LOCK_NAME = ".lock"
# {folder: descriptor} locked by this process. NOTE: a second open + flock of the same file by the same process
# would conflict with its own lock, so a folder is locked once and kept until release_run_folders()
_held = {}
_claimed = {}  # {folder: [the folders above it made for it, innermost first]}, removed again if left empty


class RunFolderError(RuntimeError):
    """A run folder cannot be used: another process writes in it, or it cannot be created (one line)."""


def claim_version(root, option):
    """n of a new, empty folder root/version_n created here: one more than the largest there, or the next free one
    when another process creates that one first. RunFolderError when root cannot hold folders (naming `option`, the
    command-line option that gives root)."""
    root = Path(root)
    made = [folder for folder in (root, *root.parents) if not folder.exists()]
    try:
        root.mkdir(parents=True, exist_ok=True)
        numbers = [int(path.name[8:]) for path in root.iterdir()
                   if path.name.startswith("version_") and path.name[8:].isdigit()]
        number = max(numbers, default=-1) + 1
        while True:
            try:
                (root / f"version_{number}").mkdir()  # NOTE: atomic, FileExistsError if another run made it first
                _claimed[(root / f"version_{number}").resolve()] = [folder.resolve() for folder in made]
                return number
            except FileExistsError:
                number += 1
    except OSError as error:  # not writable, a file in the way, ...
        raise RunFolderError(f"cannot create a run folder in {root}: {error.strerror or error}; give a writable "
                             f"folder with {option}") from None


def lock_run_folder(folder):
    """Hold the lock of the run folder `folder` until this process ends (or release_run_folders()); RunFolderError
    naming the process that holds it already."""
    folder = Path(folder).resolve()
    if fcntl is None or folder in _held:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)  # NOTE: not inherited by children
    except OSError as error:
        raise RunFolderError(f"cannot use the run folder {folder}: {error.strerror or error}; give a writable "
                             "folder with --trainer.logger.init_args.save_dir") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(descriptor, 20, 0).decode(errors="replace").strip()
        os.close(descriptor)
        raise RunFolderError(f"{folder} is in use by another process{f' (pid {owner})' if owner else ''} that is "
                             "still writing in it: wait until it ends or stop it, then run this again") from None
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
    _held[folder] = descriptor


def release_run_folders():
    """Release every run folder this process holds (closing the descriptor releases the lock); remove those it
    claimed and left empty."""
    while _held:
        os.close(_held.popitem()[1])
    while _claimed:
        folder, made = _claimed.popitem()
        try:
            if {path.name for path in folder.iterdir()} <= {LOCK_NAME}:
                (folder / LOCK_NAME).unlink(missing_ok=True)
                for empty in (folder, *made):
                    empty.rmdir()
        except OSError:  # written into meanwhile, or gone
            pass
