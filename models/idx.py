"""The MNIST files: the IDX format (read with clear errors), where the four files may lie, torchvision's download.

`data_dir` may hold the four IDX files flat (gzipped or not), or torchvision's layout (`MNIST/raw/...`).
When they are absent, torchvision's own download fetches them (users with internet); when that fails the error
names the folder and the four files expected.
"""
import gzip
import math
import shutil
from pathlib import Path

import torch

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
TORCHVISION_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
IDX_MAGIC = {3: 0x00000803, 1: 0x00000801}  # images (N, 28, 28), labels (N,): unsigned bytes


class DataFileError(ValueError):
    """A data file is truncated, not an IDX file or holds impossible data; the message names the file."""


def find_idx_files(data_dir, dataset):
    """{key: path} of the four IDX files in data_dir (flat) or data_dir/<MNIST|FashionMNIST>/raw, or None."""
    data_dir = Path(data_dir)
    for folder in (data_dir, data_dir / TORCHVISION_FOLDERS[dataset] / "raw"):
        found = {}
        for key, name in IDX_FILES.items():
            candidates = [folder / name, folder / f"{name}.gz"]
            found[key] = next((path for path in candidates if path.is_file()), None)
        if all(found.values()):
            return found
    return None


def read_idx(path, dims):
    """An IDX file of unsigned bytes as a uint8 tensor; clear errors for truncated or foreign files."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as file:
            data = file.read()
    except (OSError, EOFError) as error:  # EOFError: a gzip stream cut short
        raise DataFileError(f"{path}: cannot read ({error}); the file is corrupt or truncated") from error
    header = 4 * (1 + dims)
    if len(data) < header:
        raise DataFileError(f"{path}: truncated, {len(data)} bytes is shorter than an IDX header ({header} bytes)")
    magic = int.from_bytes(data[0:4], "big")
    if magic != IDX_MAGIC[dims]:
        raise DataFileError(f"{path}: not an IDX file of {dims}-D unsigned bytes (magic {magic:#010x}, "
                            f"expected {IDX_MAGIC[dims]:#010x})")
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    expected = header + math.prod(shape)
    if len(data) != expected:
        raise DataFileError(f"{path}: truncated or corrupt, expected {expected} bytes for shape {tuple(shape)}, "
                            f"got {len(data)}")
    return torch.frombuffer(bytearray(data[header:]), dtype=torch.uint8).reshape(shape)


class DataNotFoundError(FileNotFoundError):
    """The four files are not in the folder and could not be downloaded; the message names folder and files."""


def download(data_dir, dataset):
    """torchvision's download into data_dir/<MNIST|FashionMNIST>/raw; a clear error when it cannot, and then no
    folder left behind that the attempt created."""
    from torchvision import datasets

    cls = datasets.MNIST if dataset == "mnist" else datasets.FashionMNIST
    raw = Path(data_dir) / TORCHVISION_FOLDERS[dataset] / "raw"
    new_folders = [folder for folder in (raw, raw.parent, Path(data_dir)) if not folder.exists()]
    try:
        for train in (True, False):
            cls(str(data_dir), train=train, download=True)
    except Exception as error:  # urllib, socket, HTTP and checksum errors alike
        for folder in new_folders:  # innermost first; partial downloads inside go with them
            shutil.rmtree(folder, ignore_errors=True)
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise DataNotFoundError(missing_message(data_dir, dataset) + f"; the download failed: {reason}") from error


def missing_message(data_dir, dataset):
    names = ", ".join(IDX_FILES.values())
    return (f"{dataset} not found in {Path(data_dir).resolve()}: expected the four IDX files {names} "
            f"(each may end in .gz), directly in that folder or in {TORCHVISION_FOLDERS[dataset]}/raw/ below it")
