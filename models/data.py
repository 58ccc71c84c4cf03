"""MNIST / Fashion-MNIST as a LightningDataModule that serves shuffled batches from tensors on the training device.

`data_dir` may hold the four IDX files flat (gzipped or not), or torchvision's layout (`MNIST/raw/...`).
When they are absent, torchvision's own download fetches them (users with internet); when that fails the error
names the folder and the four files expected.
"""
import gzip
import math
from pathlib import Path
from typing import Literal, Optional

import pytorch_lightning as pl
import torch

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
TORCHVISION_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
IDX_MAGIC = {3: 0x00000803, 1: 0x00000801}  # images (N, 28, 28), labels (N,): unsigned bytes
NORMALIZATION = {"mnist": (0.1307, 0.3081), "fashion_mnist": (0.2860, 0.3530)}  # pixel mean, std of the train set


class DataFileError(ValueError):
    """A data file is missing, truncated or not an IDX file; the message names the file."""


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


def download(data_dir, dataset):
    """torchvision's download into data_dir/<MNIST|FashionMNIST>/raw; a clear error when it cannot."""
    from torchvision import datasets

    cls = datasets.MNIST if dataset == "mnist" else datasets.FashionMNIST
    try:
        for train in (True, False):
            cls(str(data_dir), train=train, download=True)
    except Exception as error:  # urllib, socket, HTTP and checksum errors alike
        raise FileNotFoundError(missing_message(data_dir, dataset) + f"; the download failed: {error}") from error


def missing_message(data_dir, dataset):
    names = ", ".join(IDX_FILES.values())
    return (f"{dataset} not found in {Path(data_dir).resolve()}: expected the four IDX files {names} "
            f"(each may end in .gz), directly in that folder or in {TORCHVISION_FOLDERS[dataset]}/raw/ below it")


class TensorBatches:
    """Batches of (images, labels) served by index from tensors already on the device.

    Training: a fresh permutation each epoch from (seed, epoch), so a run is reproducible and a resumed run sees
    the same order. Under data parallelism each global batch of batch_size * world_size samples is split across
    the ranks (rank r takes every world_size-th sample), so every sample is seen once per epoch and the averaged
    gradient equals that of one process with the global batch.
    """

    def __init__(self, images, labels, batch_size, shuffle=False, seed=0, epoch_fn=lambda: 0,
                 rank=0, world_size=1, max_shift=0, progress_fn=lambda: 0):
        self.images, self.labels = images, labels  # (N, 28, 28) float, (N,) int64
        self.batch_size, self.shuffle, self.seed, self.epoch_fn = batch_size, shuffle, seed, epoch_fn
        self.rank, self.world_size, self.max_shift = rank, world_size, max_shift
        self.global_batch = batch_size * world_size
        self.progress_fn = progress_fn  # batches of the current epoch already trained on
        self.resume_at = None  # (epoch, batches to skip) from a mid-epoch checkpoint

    def __len__(self):
        return math.ceil(len(self.labels) / self.global_batch)

    # Lightning saves and restores these with every checkpoint (a "stateful" loader), so a run resumed from a
    # mid-epoch checkpoint continues with the very next batch of the same order.
    def state_dict(self):
        return {"epoch": self.epoch_fn(), "batches_done": self.progress_fn()}

    def load_state_dict(self, state):
        self.resume_at = (state["epoch"], state["batches_done"])

    def __iter__(self):
        epoch = self.epoch_fn()
        count, generator = len(self.labels), torch.Generator().manual_seed(self.seed + epoch)
        order = torch.randperm(count, generator=generator) if self.shuffle else torch.arange(count)
        order = order.to(self.labels.device)
        skip = self.resume_at[1] if self.resume_at is not None and self.resume_at[0] == epoch else 0
        self.resume_at = None
        for batch_number, start in enumerate(range(0, count, self.global_batch)):
            global_index = order[start: start + self.global_batch]
            offsets = None
            if self.max_shift:
                # NOTE: drawn for the whole global batch, then split like the samples, so the shifts (and the
                # random stream after them) are the same whatever the number of ranks, and skipped batches
                # still draw theirs.
                offsets = torch.randint(0, 2 * self.max_shift + 1, (2, len(global_index), 1), generator=generator)
            if batch_number < skip:
                continue
            index = global_index[self.rank:: self.world_size]
            images = self.images.index_select(0, index)  # NOTE: 10x faster than images[index] on the CPU
            if offsets is not None:
                images = random_shift(images, self.max_shift, offsets[:, self.rank:: self.world_size])
            yield images, self.labels.index_select(0, index)


def random_shift(images, max_shift, offsets):
    """Translate image b by offsets[:, b] − max_shift pixels (rows, columns), zero fill: (B, H, W) -> (B, H, W).

    offsets: integers in [0, 2·max_shift] of shape (2, B, 1).
    """
    batch, height, width = images.shape
    padded = torch.nn.functional.pad(images, (max_shift,) * 4)  # (B, H + 2s, W + 2s)
    if images.is_cuda:  # NOTE: a blocking host-to-device copy would synchronise with the GPU at every batch
        offsets = offsets.pin_memory()
    offsets = offsets.to(images.device, non_blocking=True)
    rows = offsets[0] + torch.arange(height, device=images.device)  # (B, H)
    cols = offsets[1] + torch.arange(width, device=images.device)  # (B, W)
    batch_index = torch.arange(batch, device=images.device)[:, None, None]
    return padded[batch_index, rows[:, :, None], cols[:, None, :]]  # (B, H, W)


class MNISTDataModule(pl.LightningDataModule):
    """MNIST (or Fashion-MNIST): a seeded 55,000 / 5,000 train / validation split and the 10,000 test images.

    Args:
        data_dir: folder with the four IDX files (flat, gzipped or not) or torchvision's layout below it.
        dataset: "mnist" or "fashion_mnist".
        batch_size: training batch size per process.
        eval_batch_size: batch size for validation and test (no gradients, so larger is faster).
        val_size: images of the training file held out for validation.
        split_seed: seed of the train / validation split and of the shuffling.
        download: use torchvision's download when the files are absent.
        train_subset: use only the first N training images (after the split); for quick runs and tests.
        max_shift: random translation of training images by up to this many pixels (0: off).
    """

    def __init__(self, data_dir: str = "data", dataset: Literal["mnist", "fashion_mnist"] = "mnist",
                 batch_size: int = 128, eval_batch_size: int = 1000, val_size: int = 5000, split_seed: int = 42,
                 download: bool = True, train_subset: Optional[int] = None, max_shift: int = 0):
        super().__init__()
        for name, value, low in (("batch_size", batch_size, 1), ("eval_batch_size", eval_batch_size, 1),
                                 ("val_size", val_size, 1), ("max_shift", max_shift, 0)):
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        if train_subset is not None and train_subset < 1:
            raise ValueError(f"train_subset must be >= 1 or null, got {train_subset}")
        self.save_hyperparameters()
        self.splits = {}
        self.train_batches = None  # the training loader, whose position goes into checkpoints
        self.pending_state = None  # a checkpointed position, for the next training loader

    def prepare_data(self):
        if find_idx_files(self.hparams.data_dir, self.hparams.dataset) is None:
            if not self.hparams.download:
                raise FileNotFoundError(missing_message(self.hparams.data_dir, self.hparams.dataset)
                                        + " (download=False)")
            download(self.hparams.data_dir, self.hparams.dataset)

    def load(self):
        """{"train" | "val" | "test": (images (N, 28, 28) normalised float32, labels (N,) int64)} on the CPU."""
        files = find_idx_files(self.hparams.data_dir, self.hparams.dataset)
        if files is None:
            raise FileNotFoundError(missing_message(self.hparams.data_dir, self.hparams.dataset))
        mean, std = NORMALIZATION[self.hparams.dataset]
        tensors = {}
        for part in ("train", "test"):
            images, labels = read_idx(files[f"{part}_images"], 3), read_idx(files[f"{part}_labels"], 1)
            if len(images) != len(labels):
                raise DataFileError(f"{files[f'{part}_images']} holds {len(images)} images but "
                                    f"{files[f'{part}_labels']} holds {len(labels)} labels")
            tensors[part] = ((images.float() / 255 - mean) / std, labels.long())
        images, labels = tensors["train"]
        if self.hparams.val_size >= len(labels):
            raise ValueError(f"val_size must be < {len(labels)} training images, got {self.hparams.val_size}")
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(self.hparams.split_seed))
        val, train = order[: self.hparams.val_size], order[self.hparams.val_size:]
        train = train[: self.hparams.train_subset]
        return {"train": (images[train], labels[train]), "val": (images[val], labels[val]), "test": tensors["test"]}

    def setup(self, stage=None):
        if self.splits:
            return
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        self.splits = {name: (x.to(device), y.to(device)) for name, (x, y) in self.load().items()}

    def _batches(self, split, batch_size, shuffle, max_shift=0):
        trainer = self.trainer
        images, labels = self.splits[split]
        if trainer is None:
            return TensorBatches(images, labels, batch_size, shuffle, self.hparams.split_seed, max_shift=max_shift)
        return TensorBatches(
            images, labels, batch_size, shuffle=shuffle, seed=self.hparams.split_seed,
            epoch_fn=lambda: trainer.current_epoch, rank=trainer.global_rank, world_size=trainer.world_size,
            max_shift=max_shift, progress_fn=lambda: trainer.fit_loop.epoch_loop.batch_progress.current.processed,
        )

    def train_dataloader(self):
        self.train_batches = self._batches("train", self.hparams.batch_size, shuffle=True,
                                           max_shift=self.hparams.max_shift)
        if self.pending_state:
            self.train_batches.load_state_dict(self.pending_state)
            self.pending_state = None
        return self.train_batches

    # NOTE: the training loader's resume position is also checkpointed here, by the DataModule, because Lightning
    # restores a stateful loader only if the loader did not exist before the checkpoint was loaded, and a OneCycle
    # schedule (estimated_stepping_batches) creates it earlier. DataModule state is always restored before that.
    def state_dict(self):
        return self.train_batches.state_dict() if self.train_batches is not None else {}

    def load_state_dict(self, state_dict):
        self.pending_state = state_dict or None

    def val_dataloader(self):
        return self._batches("val", self.hparams.eval_batch_size, shuffle=False)

    def test_dataloader(self):
        return self._batches("test", self.hparams.eval_batch_size, shuffle=False)
