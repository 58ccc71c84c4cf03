"""Fixtures only: the slice of MNIST shipped in tests/data, the full set where present, a fixed seed, small tmpfs
disks; the hypothesis profile of CI. Helpers the tests import live in tests/helpers.py."""
import os
import subprocess

# NOTE: one intra-op thread in the tests and in the runs they start (set before torch is imported): their tensors
# are small, and two OpenMP threads per process on a busy 2-core machine (or beside a second pytest-xdist worker)
# wait on each other, up to 15x slower (the lecture's 500-step example: 0.2 s with one thread, 3.3 s with two,
# 36 s under load); results also no longer depend on the machine's number of cores
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, settings

from models.idx import IDX_FILES
from tests.helpers import MNIST_DIR, SLICE_DIR

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
# NOTE: under CI (CI=true) hypothesis draws the same examples every run, so a landing never depends on a lucky draw;
# elsewhere each run explores new ones (and keeps what it finds in .hypothesis/). In both, nothing depends on the
# machine's speed: no deadline per example, no health check on how slowly examples are drawn (a busy machine)
settings.register_profile("suite", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", parent=settings.get_profile("suite"), derandomize=True, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "suite")


@pytest.fixture(scope="session")
def mnist_dir():
    """The full MNIST (four .gz IDX files); the few tests that need all 70,000 digits skip without it."""
    if not all((MNIST_DIR / f"{name}.gz").is_file() for name in IDX_FILES.values()):
        pytest.skip(f"needs the full MNIST (the four .gz IDX files) in {MNIST_DIR}: put them in data/mnist, or set "
                    "MNIST_DIR to their folder")
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
