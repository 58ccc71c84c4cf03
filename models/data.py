"""MNIST / Fashion-MNIST as a LightningDataModule that serves shuffled batches from tensors on the training device.

The files are found and read by models/idx.py; here they become a seeded train / validation split, and batches.
"""
import math
from typing import Literal, Optional

import pytorch_lightning as pl
import torch

from models.idx import (IMAGE_SHAPE, DataFileError, DataNotFoundError, download, find_idx_files, missing_message,
                        read_idx)

NUM_CLASSES = 10  # the digits 0-9; Fashion-MNIST's ten kinds of clothing
NORMALIZATION = {"mnist": (0.1307, 0.3081), "fashion_mnist": (0.2860, 0.3530)}  # pixel mean, std of the train set


class DataSplitError(ValueError):
    """The validation split does not fit the training file (e.g. the default 5,000 on a slice of 3,000)."""


class TensorBatches:
    """Batches of (images, labels) served by index from tensors already on the device.

    Training: a fresh permutation each epoch from (seed, epoch), so a run is reproducible and a resumed run sees
    the same order. Under data parallelism each global batch of batch_size * world_size samples is split across
    the ranks (rank r takes every world_size-th sample), so every sample is seen once per epoch and the averaged
    gradient equals that of one process with the global batch.

    resume_at: (epoch, batches already trained on); the first pass over that epoch starts after them.
    """

    def __init__(self, images, labels, batch_size, shuffle=False, seed=0, epoch_fn=lambda: 0,
                 rank=0, world_size=1, max_shift=0, resume_at=None):
        self.images, self.labels = images, labels  # (N, 28, 28) float, (N,) int64
        self.batch_size, self.shuffle, self.seed, self.epoch_fn = batch_size, shuffle, seed, epoch_fn
        self.rank, self.world_size, self.max_shift = rank, world_size, max_shift
        self.global_batch = batch_size * world_size
        self.resume_at = resume_at

    def __len__(self):
        return math.ceil(len(self.labels) / self.global_batch)

    def __iter__(self):
        epoch = self.epoch_fn()
        count, generator = len(self.labels), torch.Generator().manual_seed(self.seed + epoch)
        order = torch.randperm(count, generator=generator) if self.shuffle else torch.arange(count)
        starts = range(0, count, self.global_batch)
        if self.max_shift:
            # NOTE: drawn per global batch (then split like the samples), so the shifts are the same whatever the
            # number of ranks; all of an epoch's at once, so they reach the device in one copy, not one per batch
            offsets = torch.cat([torch.randint(0, 2 * self.max_shift + 1, (2, len(order[start: start + self.global_batch]), 1),
                                               generator=generator) for start in starts], dim=1)
            offsets = offsets.to(self.labels.device)  # (2, N, 1)
        order = order.to(self.labels.device)
        skip = self.resume_at[1] if self.resume_at is not None and self.resume_at[0] == epoch else 0
        self.resume_at = None
        for start in starts[skip:]:
            index = order[start: start + self.global_batch][self.rank:: self.world_size]
            images = self.images.index_select(0, index)  # NOTE: 10x faster than images[index] on the CPU
            if self.max_shift:
                shifts = offsets[:, start: start + self.global_batch][:, self.rank:: self.world_size]
                images = random_shift(images, self.max_shift, shifts)
            yield images, self.labels.index_select(0, index)


def random_shift(images, max_shift, offsets):
    """Translate image b by offsets[:, b] − max_shift pixels (rows, columns), zero fill: (B, H, W) -> (B, H, W).

    offsets: integers in [0, 2·max_shift] of shape (2, B, 1), on the device of images.
    """
    batch, height, width = images.shape
    padded = torch.nn.functional.pad(images, (max_shift,) * 4)  # (B, H + 2s, W + 2s)
    # NOTE: every H x W window of each padded image, a view (B, 2s + 1, 2s + 1, H, W); one window per image is then
    # copied out. 3x faster on the CPU than indexing each pixel (rows x columns), the same values.
    windows = padded.unfold(1, height, 1).unfold(2, width, 1)
    return windows[torch.arange(batch, device=images.device), offsets[0, :, 0], offsets[1, :, 0]]  # (B, H, W)


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
        self.position = {"epoch": 0, "batches_done": 0}  # training batches trained on, saved in checkpoints
        self.resume_at = None  # a checkpoint's position, for the next training loader

    def prepare_data(self):
        if find_idx_files(self.hparams.data_dir, self.hparams.dataset) is None:
            if not self.hparams.download:
                raise DataNotFoundError(missing_message(self.hparams.data_dir, self.hparams.dataset)
                                        + " (download=False)")
            download(self.hparams.data_dir, self.hparams.dataset)

    def load(self):
        """{"train" | "val" | "test": (images (N, 28, 28) normalised float32, labels (N,) int64)} on the CPU."""
        files = find_idx_files(self.hparams.data_dir, self.hparams.dataset)
        if files is None:
            raise DataNotFoundError(missing_message(self.hparams.data_dir, self.hparams.dataset))
        mean, std = NORMALIZATION[self.hparams.dataset]
        tensors = {}
        for part in ("train", "test"):
            images, labels = read_idx(files[f"{part}_images"], 3, IMAGE_SHAPE), read_idx(files[f"{part}_labels"], 1)
            if len(images) != len(labels):
                raise DataFileError(f"{files[f'{part}_images']} holds {len(images)} images but "
                                    f"{files[f'{part}_labels']} holds {len(labels)} labels")
            bad = (labels >= NUM_CLASSES).nonzero().flatten()
            if len(bad):  # NOTE: checked here, once: the training step does not read label values
                raise DataFileError(f"{files[f'{part}_labels']}: label {int(labels[bad[0]])} at index {int(bad[0])} "
                                    f"is not a class 0-{NUM_CLASSES - 1} ({len(bad)} such labels)")
            tensors[part] = ((images.float() / 255 - mean) / std, labels.long())
        # NOTE: MNIST and Fashion-MNIST hold 60,000 training and 10,000 test images; smaller slices are fine (tests),
        # a training file smaller than the test file means the two were swapped
        train_count, test_count = len(tensors["train"][1]), len(tensors["test"][1])
        if train_count < test_count:
            raise DataFileError(f"the training file {files['train_images']} holds {train_count} images, fewer than "
                                f"the test file {files['test_images']} ({test_count}): are the two swapped? "
                                f"({self.hparams.dataset} has 60,000 training and 10,000 test images)")
        images, labels = tensors["train"]
        if self.hparams.val_size >= len(labels):
            raise DataSplitError(f"val_size must be smaller than the {len(labels)} training images in "
                                 f"{files['train_images']}, got {self.hparams.val_size}")
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(self.hparams.split_seed))
        val, train = order[: self.hparams.val_size], order[self.hparams.val_size:]
        train = train[: self.hparams.train_subset]
        return {"train": (images[train], labels[train]), "val": (images[val], labels[val]), "test": tensors["test"]}

    def setup(self, stage=None):
        if self.splits:
            return
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        self.splits = {name: (x.to(device), y.to(device)) for name, (x, y) in self.load().items()}

    def _batches(self, split, batch_size, shuffle, max_shift=0, resume_at=None):
        images, labels = self.splits[split]
        trainer = self.trainer
        ranks = {} if trainer is None else {"epoch_fn": lambda: trainer.current_epoch, "rank": trainer.global_rank,
                                            "world_size": trainer.world_size}
        return TensorBatches(images, labels, batch_size, shuffle, self.hparams.split_seed, max_shift=max_shift,
                             resume_at=resume_at, **ranks)

    def train_dataloader(self):
        resume_at, self.resume_at = self.resume_at, None
        return self._batches("train", self.hparams.batch_size, shuffle=True, max_shift=self.hparams.max_shift,
                             resume_at=resume_at)

    # The training position (epoch, batches of it trained on) goes into every checkpoint, so a run resumed from a
    # mid-epoch checkpoint continues with the very next batch of the same order. NOTE: Lightning restores a
    # DataModule's state before it builds the training loader, so the position reaches the loader as it is made.
    def on_before_batch_transfer(self, batch, dataloader_idx):
        if self.trainer is not None and self.trainer.training:
            # NOTE: Lightning calls this for each batch right before the step that trains on it (after its
            # one-batch prefetch), so the count is of batches trained on, not of batches fetched
            epoch, done = self.position["epoch"], self.position["batches_done"]
            now = self.trainer.current_epoch
            self.position = {"epoch": now, "batches_done": done + 1 if epoch == now else 1}
        return batch

    def state_dict(self):
        return dict(self.position)

    def load_state_dict(self, state_dict):
        if state_dict:
            self.position = dict(state_dict)
            self.resume_at = (state_dict["epoch"], state_dict["batches_done"])

    def val_dataloader(self):
        return self._batches("val", self.hparams.eval_batch_size, shuffle=False)

    def test_dataloader(self):
        return self._batches("test", self.hparams.eval_batch_size, shuffle=False)
