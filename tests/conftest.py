"""Shared fixtures: the offline MNIST copy beside the project, and small slices of it written as IDX files."""
import gzip
import os
from pathlib import Path

import pytest
import torch

from models.data import IDX_FILES, IDX_MAGIC, read_idx

ROOT = Path(__file__).resolve().parents[1]
MNIST_DIR = Path(os.environ.get("MNIST_DIR", ROOT.parent / "shared" / "datasets" / "mnist"))


def write_idx(path, tensor, compress=True):
    """Write a uint8 tensor as an IDX file (the format of the MNIST files), gzipped if compress."""
    header = IDX_MAGIC[tensor.dim()].to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in tensor.shape)
    data = header + tensor.contiguous().numpy().tobytes()
    path.write_bytes(gzip.compress(data, compresslevel=1) if compress else data)


@pytest.fixture(scope="session")
def mnist_dir():
    if not all((MNIST_DIR / f"{name}.gz").is_file() for name in IDX_FILES.values()):
        pytest.fail(f"the offline MNIST copy is missing: expected {list(IDX_FILES.values())} (.gz) in {MNIST_DIR} "
                    "(set MNIST_DIR to another folder holding them)")
    return MNIST_DIR


def make_slice(folder, mnist_dir, train_count, test_count, compress=True):
    folder.mkdir(parents=True, exist_ok=True)
    counts = {"train": train_count, "test": test_count}
    for key, name in IDX_FILES.items():
        tensor = read_idx(mnist_dir / f"{name}.gz", 3 if key.endswith("images") else 1)
        write_idx(folder / (f"{name}.gz" if compress else name), tensor[: counts[key.split("_")[0]]], compress)
    return folder


@pytest.fixture(scope="session")
def mnist_slice(tmp_path_factory, mnist_dir):
    """3,000 training and 1,000 test digits of the real MNIST, flat and gzipped (use val_size=500)."""
    return make_slice(tmp_path_factory.mktemp("mnist_slice"), mnist_dir, 3000, 1000)


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
