"""The MNIST files: the IDX format (read with clear errors), where the four files may lie, torchvision's download.

`data_dir` may hold the four IDX files flat (gzipped or not), or torchvision's layout (`MNIST/raw/...`).
When they are absent, torchvision's own download fetches them (users with internet); when that fails the error
names the folder and the four files expected.
"""
import gzip
import math
import shutil
import zlib
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
IMAGE_SHAPE = (28, 28)
# NOTE: far above MNIST's and Fashion-MNIST's largest file (60,000 x 28 x 28 = 47,040,000 bytes), far below what would
# exhaust a machine's memory: a header declaring more is a corrupt or hostile file
MAX_IDX_BYTES = 2**28


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


def read_idx(path, dims, item_shape=None):
    """An IDX file of unsigned bytes as a uint8 tensor of the shape its header declares, with clear errors naming
    the file: truncated, foreign, empty, items not of `item_shape` (e.g. (28, 28)), or absurdly large.

    NOTE: the header is read first and checked, then exactly the bytes it declares (one more, to find trailing
    data): a small .gz file whose header declares gigabytes is refused before anything is decompressed.
    """
    path = Path(path)
    header_size = 4 * (1 + dims)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as file:
            header = file.read(header_size)
            if len(header) < header_size:
                raise DataFileError(f"{path}: truncated, {len(header)} bytes is shorter than an IDX header "
                                    f"({header_size} bytes)")
            shape = idx_shape(path, header, dims, item_shape)
            size = math.prod(shape)
            data = file.read(size + 1)
    except (OSError, EOFError, zlib.error) as error:  # EOFError: a gzip stream cut short
        raise DataFileError(f"{path}: cannot read ({error}); the file is corrupt or truncated") from error
    if len(data) != size:
        got = f"got {header_size + len(data)}" if len(data) < size else "it is longer"
        raise DataFileError(f"{path}: truncated or corrupt, expected {header_size + size} bytes for shape "
                            f"{tuple(shape)}, {got}")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).reshape(shape)


def idx_shape(path, header, dims, item_shape):
    """The shape an IDX header declares, checked: the magic number, at least one item, each of item_shape, and at
    most MAX_IDX_BYTES in all."""
    magic = int.from_bytes(header[0:4], "big")
    if magic != IDX_MAGIC[dims]:
        raise DataFileError(f"{path}: not an IDX file of {dims}-D unsigned bytes (magic {magic:#010x}, "
                            f"expected {IDX_MAGIC[dims]:#010x})")
    shape = [int.from_bytes(header[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    if shape[0] == 0:
        raise DataFileError(f"{path}: holds no items (its header declares shape {tuple(shape)})")
    if item_shape is not None and tuple(shape[1:]) != tuple(item_shape):
        declared, expected = "x".join(map(str, shape[1:])), "x".join(map(str, item_shape))
        raise DataFileError(f"{path}: holds images of {declared} pixels, expected {expected} (the MNIST format); "
                            "convert the images to that size first")
    if math.prod(shape) > MAX_IDX_BYTES:
        raise DataFileError(f"{path}: its header declares shape {tuple(shape)}, {math.prod(shape):,} bytes, more "
                            f"than {MAX_IDX_BYTES:,}: not an MNIST-like file (MNIST's largest holds 47,040,000)")
    return shape


class DataNotFoundError(FileNotFoundError):
    """The four files are not in the folder and could not be downloaded; the message names folder and files."""


def download(data_dir, dataset):
    """torchvision's download into data_dir/<MNIST|FashionMNIST>/raw; a clear error when it cannot, and then no
    folder left behind that the attempt created."""
    from torchvision import datasets

    cls = datasets.MNIST if dataset == "mnist" else datasets.FashionMNIST
    raw = Path(data_dir) / TORCHVISION_FOLDERS[dataset] / "raw"
    # NOTE: data_dir's own parents too (data/mnist in a folder without data/): torchvision makes them all
    new_folders = [folder for folder in (raw, raw.parent, Path(data_dir), *Path(data_dir).parents)
                   if not folder.exists()]
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
