"""Fixtures only: the slice of MNIST shipped in tests/data, the full set where present, a fixed seed, small tmpfs
disks; the hypothesis profile of CI. Helpers the tests import live in tests/helpers.py."""
import os
import subprocess

import pytest
import torch
from hypothesis import settings

from models.idx import IDX_FILES
from tests.helpers import MNIST_DIR, SLICE_DIR

# NOTE: under CI (CI=true) hypothesis draws the same examples every run, so a landing never depends on a lucky draw;
# elsewhere each run explores new ones (and keeps what it finds in .hypothesis/)
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def mnist_dir():
    """The full MNIST (four .gz IDX files); the few tests that need all 70,000 digits skip without it."""
    if not all((MNIST_DIR / f"{name}.gz").is_file() for name in IDX_FILES.values()):
        pytest.skip(f"needs the full MNIST in {MNIST_DIR}: set MNIST_DIR to a folder with the four .gz IDX files, "
                    "or run `python train.py` once online (it downloads them to data/MNIST/raw) and set "
                    "MNIST_DIR=data/MNIST/raw")
    return MNIST_DIR


@pytest.fixture(scope="session")
def mnist_slice():
    """3,000 training and 1,000 test digits of the real MNIST, flat and gzipped (use val_size=500); read-only."""
    return SLICE_DIR


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


@pytest.fixture
def tmpfs(tmp_path):
    """mount(size) -> a folder on a new tmpfs of that size (skips where this process may not mount one)."""
    mounted = []

    def mount(name, size):
        folder = tmp_path / name
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here to fill a disk for real: {done.stderr.strip() or done.returncode}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)
