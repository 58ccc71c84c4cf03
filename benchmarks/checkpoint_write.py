"""What one checkpoint write of the default network costs, and which part: serialising, writing, the fsyncs.

    python -m benchmarks.checkpoint_write [--device cuda] [--writes 10]

The checkpoint is the default MNISTClassifier's weights and its Adam state (after one step), the bulk of what
train.py's `last.ckpt` holds (without the loops' and callbacks' state, and without the wait for the GPU that
Lightning's dump of the trainer's state can include). Five ways of writing it, in alternating rounds, median ms:
- serialise: torch.save into memory (on CUDA this includes copying every tensor to the host);
- serialise and write: torch.save into memory, then the bytes into a file (no fsync);
- Lightning's writer: TorchCheckpointIO.save_checkpoint (fsspec, no fsync);
- train.py's writer without its fsyncs: models.checkpoints.AtomicCheckpointIO with os.fsync a no-op;
- train.py's writer: AtomicCheckpointIO (serialise, write a temporary file, fsync it, rename, fsync the folder).
Files go to a temporary folder in benchmarks/results/ (git-ignored; on the disk run folders are on).
"""
import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch
from pytorch_lightning.plugins import TorchCheckpointIO

from models.checkpoints import AtomicCheckpointIO
from models.classifier import MNISTClassifier

ROOT = Path(__file__).resolve().parents[1]


def checkpoint_of_default_run(device):
    model = MNISTClassifier().to(device)
    optimizer = torch.optim.Adam(model.parameters(), fused=True)
    model(torch.randn(128, 28, 28, device=device)).sum().backward()
    optimizer.step()  # the Adam state exists, as in any checkpoint after the first step
    return {"state_dict": model.state_dict(), "optimizer_states": [optimizer.state_dict()]}


def serialise(checkpoint):
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return buffer.getbuffer()


def atomic_write_without_fsync(checkpoint, path):
    with mock.patch("os.fsync"):
        AtomicCheckpointIO().save_checkpoint(checkpoint, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--writes", type=int, default=10)
    args = parser.parse_args(argv)
    checkpoint = checkpoint_of_default_run(torch.device(args.device))
    writers = {"serialise (torch.save to memory)": lambda path: serialise(checkpoint),
               "serialise and write, no fsync": lambda path: path.write_bytes(serialise(checkpoint)),
               "Lightning's TorchCheckpointIO": lambda path: TorchCheckpointIO().save_checkpoint(checkpoint, path),
               "AtomicCheckpointIO, fsync a no-op": lambda path: atomic_write_without_fsync(checkpoint, path),
               "train.py's AtomicCheckpointIO": lambda path: AtomicCheckpointIO().save_checkpoint(checkpoint, path)}
    times = {name: [] for name in writers}
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=results) as folder:
        for number in range(args.writes + 1):
            for name, write in (writers.items() if number % 2 else reversed(writers.items())):
                start = time.perf_counter()
                write(Path(folder) / "last.ckpt")
                if number:  # NOTE: the first round warms up (allocator, file creation)
                    times[name].append((time.perf_counter() - start) * 1e3)
    size = sum(t.numel() * t.element_size() for t in checkpoint["state_dict"].values())
    print(f"one checkpoint write on {args.device} (weights {size / 1e6:.1f} MB and Adam's state), "
          f"median of {args.writes}:")
    for name, values in times.items():
        print(f"{name:<38}{statistics.median(values):>8.1f} ms  (range {min(values):.1f}-{max(values):.1f})")
    return times


if __name__ == "__main__":
    main()
