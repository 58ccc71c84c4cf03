"""The MNIST DataModule: file layouts, clear errors for missing or broken files, the split, the batch server."""
import gzip
import shutil
import urllib.error
from pathlib import Path

import pytest
import torch

from models.data import MNISTDataModule, TensorBatches, random_shift
from models.idx import IDX_FILES, IDX_MAGIC, DataFileError, read_idx
from tests.helpers import fit, make_slice, write_idx


def loaded(folder, **kwargs):
    module = MNISTDataModule(str(folder), download=False, val_size=500, **kwargs)
    module.prepare_data()
    module.setup("fit")
    return module


def test_real_mnist_flat_gz_folder_gives_the_55000_5000_10000_split(mnist_dir):
    splits = MNISTDataModule(str(mnist_dir), download=False).load()
    assert {name: len(labels) for name, (_, labels) in splits.items()} == {"train": 55000, "val": 5000, "test": 10000}
    images, labels = splits["test"]
    assert images.shape == (10000, 28, 28) and images.dtype == torch.float32
    assert torch.bincount(labels).tolist()[:3] == [980, 1135, 1032]  # the known test-set class counts
    assert abs(splits["train"][0].mean().item()) < 0.01  # normalised with MNIST's mean and std


def test_the_shipped_slice_is_the_start_of_the_real_files(mnist_dir, mnist_slice):
    for key, name in IDX_FILES.items():
        dims = 3 if key.endswith("images") else 1
        part, full = read_idx(mnist_slice / f"{name}.gz", dims), read_idx(mnist_dir / f"{name}.gz", dims)
        assert torch.equal(part, full[: len(part)]), name


def test_the_split_is_seeded_and_disjoint(mnist_slice):
    first, again, other = (loaded(mnist_slice, split_seed=s).splits for s in (1, 1, 2))
    assert torch.equal(first["val"][1], again["val"][1])
    assert not torch.equal(first["val"][0], other["val"][0])
    train, val = first["train"][0].flatten(1), first["val"][0].flatten(1)
    assert len(train) == 2500 and len(val) == 500
    assert not (torch.cdist(val[:50], train) == 0).any()  # no validation image is also a training image


def test_torchvision_layout_uncompressed(tmp_path, mnist_slice):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in IDX_FILES.values():
        (raw / name).write_bytes(gzip.decompress((mnist_slice / f"{name}.gz").read_bytes()))
    module, reference = loaded(tmp_path), loaded(mnist_slice)
    assert torch.equal(module.splits["test"][0], reference.splits["test"][0])


def test_missing_folder_offline_names_the_folder_and_the_four_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere.*train-images-idx3-ubyte.*t10k-labels-idx1-ubyte"):
        MNISTDataModule(str(tmp_path / "nowhere"), download=False).prepare_data()


def test_failed_download_gives_a_clear_error_not_a_hang(tmp_path, monkeypatch):
    from torchvision import datasets

    def offline(root, *args, **kwargs):
        (Path(root) / "MNIST" / "raw").mkdir(parents=True)  # NOTE: as torchvision does before it downloads
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(datasets, "MNIST", offline)
    with pytest.raises(FileNotFoundError, match=r"t10k-images-idx3-ubyte.*the download failed: .*no network"):
        MNISTDataModule(str(tmp_path / "new" / "data"), download=True).prepare_data()
    assert list(tmp_path.iterdir()) == []  # a failed attempt leaves no folder it made, "new" included


def test_a_failed_download_removes_the_folders_it_created_and_only_those(tmp_path, monkeypatch):
    from torchvision import datasets

    def half_then_offline(root, **kwargs):
        (tmp_path / "data" / "MNIST" / "raw").mkdir(parents=True, exist_ok=True)  # as torchvision does first
        (tmp_path / "data" / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").write_bytes(b"partial")
        raise urllib.error.URLError("no network")

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mine.txt").write_text("the user's")
    monkeypatch.setattr(datasets, "MNIST", half_then_offline)
    with pytest.raises(FileNotFoundError):
        MNISTDataModule(str(tmp_path / "data"), download=True).prepare_data()
    assert [path.name for path in (tmp_path / "data").iterdir()] == ["mine.txt"]


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
def test_truncated_file_names_the_file(tmp_path, mnist_slice, compress):
    folder = make_slice(tmp_path / "cut", mnist_slice, 3000, 1000, compress)
    name = IDX_FILES["train_images"] + (".gz" if compress else "")
    path = folder / name
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(DataFileError, match=name):
        loaded(folder)


def test_foreign_file_names_the_file(tmp_path, mnist_slice):
    folder = tmp_path / "foreign"
    shutil.copytree(mnist_slice, folder)
    (folder / f"{IDX_FILES['test_labels']}.gz").write_bytes(gzip.compress(b"<html>not found</html>"))
    with pytest.raises(DataFileError, match=r"t10k-labels-idx1-ubyte.gz: not an IDX file"):
        loaded(folder)


@pytest.mark.parametrize("shape,message", [
    ((0, 28, 28), r"holds no items \(its header declares shape \(0, 28, 28\)\)"),
    ((3000, 32, 32), r"holds images of 32x32 pixels, expected 28x28 \(the MNIST format\)"),
    ((3000, 14, 56), r"holds images of 14x56 pixels, expected 28x28"),  # 784 pixels too: not silently reshaped
    ((3000, 1, 784), r"holds images of 1x784 pixels, expected 28x28"),
], ids=["0x28x28", "32x32", "14x56", "1x784"])
def test_images_not_of_28x28_pixels_are_refused_naming_the_file(tmp_path, mnist_slice, shape, message):
    folder = make_slice(tmp_path / "shape", mnist_slice, 3000, 1000)
    write_idx(folder / f"{IDX_FILES['train_images']}.gz", torch.zeros(shape, dtype=torch.uint8))
    with pytest.raises(DataFileError, match=r"/train-images-idx3-ubyte.gz: " + message):
        loaded(folder)


@pytest.mark.parametrize("count,message", [
    (2**31 - 1, r"its header declares shape \(2147483647, 28, 28\), 1,683,627,179,248 bytes, more than 268,435,456: "
                r"not an MNIST-like file"),
    (10, r"truncated or corrupt, expected 7856 bytes for shape \(10, 28, 28\), it is longer"),
], ids=["header-declares-terabytes", "stream-longer-than-declared"])
def test_a_gz_file_is_decompressed_no_further_than_its_header_declares(tmp_path, monkeypatch, count, message):
    # 64 MiB of zeros after the header, 64 kB compressed: what a reader that decompresses first would expand
    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=1) as file:
        file.write(IDX_MAGIC[3].to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in (count, 28, 28)))
        for _ in range(64):
            file.write(bytes(2**20))
    decompressed, read = [], gzip.GzipFile.read
    monkeypatch.setattr(gzip.GzipFile, "read", lambda self, *size: record(decompressed, read(self, *size)))
    with pytest.raises(DataFileError, match=str(path) + ": " + message):
        read_idx(path, 3)
    assert sum(decompressed) <= 16 + 10 * 784 + 1


def record(sizes, data):
    """data, its length appended to sizes."""
    sizes.append(len(data))
    return data


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_each_epoch_every_training_sample_once_across_ranks(world_size):
    labels = torch.arange(103)
    seen = torch.cat([y for rank in range(world_size)
                      for _, y in TensorBatches(labels.float()[:, None, None], labels, 8, shuffle=True,
                                                rank=rank, world_size=world_size)])
    assert sorted(seen.tolist()) == list(range(103))
    assert len({len(TensorBatches(labels, labels, 8, rank=r, world_size=world_size)) for r in range(world_size)}) == 1


@pytest.mark.parametrize("max_shift", [0, 2])
def test_rank_batches_split_the_single_process_global_batch(max_shift):
    images, labels = torch.rand(64, 6, 6), torch.arange(64)
    single = list(TensorBatches(images, labels, 16, shuffle=True, seed=5, max_shift=max_shift))
    for rank in range(2):
        shard = list(TensorBatches(images, labels, 8, True, 5, rank=rank, world_size=2, max_shift=max_shift))
        for (global_images, global_labels), (local_images, local_labels) in zip(single, shard):
            assert torch.equal(local_labels, global_labels[rank::2])
            assert torch.equal(local_images, global_images[rank::2])  # the same random shifts too


def test_shuffle_order_depends_on_seed_and_epoch_only():
    labels = torch.arange(50)
    order = lambda epoch: torch.cat([y for _, y in TensorBatches(labels, labels, 10, True, 0, lambda: epoch)])
    assert torch.equal(order(3), order(3)) and not torch.equal(order(3), order(4))


def test_random_shift_is_a_zero_filled_translation():
    images = torch.arange(2 * 5 * 5, dtype=torch.float32).reshape(2, 5, 5) + 1
    offsets = torch.randint(0, 5, (2, 2, 1), generator=torch.Generator().manual_seed(0))
    shifted = random_shift(images, 2, offsets)
    for b in range(2):
        dy, dx = offsets[0, b, 0].item() - 2, offsets[1, b, 0].item() - 2
        expected = torch.zeros(5, 5)
        for i in range(5):
            for j in range(5):
                if 0 <= i + dy < 5 and 0 <= j + dx < 5:
                    expected[i, j] = images[b, i + dy, j + dx]
        assert torch.equal(shifted[b], expected)


@pytest.mark.parametrize("kwargs,message", [
    ({"batch_size": 0}, "batch_size must be >= 1, got 0"),
    ({"train_subset": 0}, "train_subset must be >= 1 or null, got 0"),
    ({"max_shift": -1}, "max_shift must be >= 0, got -1"),
])
def test_bad_data_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MNISTDataModule(**kwargs)


@pytest.mark.parametrize("max_shift", [0, 1])
def test_a_resumed_loader_continues_with_the_next_batch_of_the_same_epoch(max_shift):
    images, labels = torch.rand(50, 4, 4), torch.arange(50)
    full = list(TensorBatches(images, labels, 8, True, 3, lambda: 2, max_shift=max_shift))
    resumed = TensorBatches(images, labels, 8, True, 3, lambda: 2, max_shift=max_shift, resume_at=(2, 4))
    rest = list(resumed)
    assert len(rest) == len(full) - 4
    for (x, y), (x_full, y_full) in zip(rest, full[4:]):
        assert torch.equal(y, y_full) and torch.equal(x, x_full)
    assert len(list(resumed)) == len(full)  # only the resumed epoch is shortened


def test_a_position_from_another_epoch_is_ignored():
    labels = torch.arange(20)
    batches = TensorBatches(labels, labels, 5, True, 0, lambda: 1, resume_at=(0, 4))  # saved at the end of epoch 0
    assert len(list(batches)) == 4


def test_the_datamodule_counts_trained_batches_and_hands_a_restored_position_to_its_loader(mnist_slice):
    trainer, _, data = fit(mnist_slice, {"hidden_sizes": (16,)}, max_steps=45, limit_val_batches=0)
    # 2,500 digits in batches of 64: 40 a epoch, so 45 steps end after batch 5 of epoch 1 (not the prefetched 6th)
    assert data.state_dict() == {"epoch": 1, "batches_done": 5}
    restored = loaded(mnist_slice, batch_size=64)
    restored.load_state_dict(data.state_dict())
    assert restored.train_dataloader().resume_at == (1, 5)
    assert restored.train_dataloader().resume_at is None  # handed to one loader only


def test_a_label_outside_0_9_is_refused_when_the_files_are_read(tmp_path, mnist_slice):
    folder = make_slice(tmp_path / "bad_label", mnist_slice, 3000, 1000)
    labels = read_idx(folder / f"{IDX_FILES['train_labels']}.gz", 1).clone()
    labels[17] = 12
    write_idx(folder / f"{IDX_FILES['train_labels']}.gz", labels)
    with pytest.raises(DataFileError, match=r"train-labels-idx1-ubyte.gz: label 12 at index 17 is not a class 0-9"):
        loaded(folder)


def test_swapped_train_and_test_files_are_refused_naming_both(tmp_path, mnist_slice):
    folder = tmp_path / "swapped"
    folder.mkdir()
    for part, other in (("train", "test"), ("test", "train")):
        for kind in ("images", "labels"):
            name, swapped = IDX_FILES[f"{part}_{kind}"], IDX_FILES[f"{other}_{kind}"]
            shutil.copy(mnist_slice / f"{name}.gz", folder / f"{swapped}.gz")
    with pytest.raises(DataFileError, match=r"the training file .*train-images-idx3-ubyte.gz holds 1000 images, "
                                            r"fewer than the test file .*t10k-images-idx3-ubyte.gz \(3000\): are the "
                                            r"two swapped"):
        loaded(folder)
