"""Data sets: the class map, subsets and splits, augmentation, and the four loaders."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from engine_support import FASHION_MNIST_DIR, synthetic_images, write_fashion_mnist_dir

from contracts.data_formats import DatasetFormat
from mpt.augment import augment
from mpt.data import DataError, ImageSet, build_class_map
from mpt.formats import FASHION_MNIST_CLASSES, LOADERS, detect_format, load_dataset

# ---------------------------------------------------------------------------------------------
# Class map
# ---------------------------------------------------------------------------------------------


def test_class_map_keeps_old_indices_and_appends_new_in_data_order():
    old = ["cat", "dog", "owl"]
    data = ["emu", "owl", "cat", "yak", "dog", "ant"]
    class_map = build_class_map(old, data)
    assert class_map.classes == ("cat", "dog", "owl", "emu", "yak", "ant")
    assert class_map.k_old == 3
    assert class_map.new_classes == ("emu", "yak", "ant")
    mask = class_map.new_mask()
    assert mask.dtype == torch.bool and mask.tolist() == [False, False, False, True, True, True]
    # On the device it is asked for (the meta device: no memory, any machine).
    on_meta = class_map.new_mask(device="meta")
    assert (on_meta.device.type, on_meta.dtype, on_meta.shape) == ("meta", torch.bool, (6,))


def test_class_map_without_new_classes():
    class_map = build_class_map(["b", "a"], ["a", "b"])
    assert class_map.classes == ("b", "a") and class_map.k_old == 2
    assert not class_map.new_mask().any()


def test_class_map_first_version():
    class_map = build_class_map([], ["x", "y"])
    assert class_map.classes == ("x", "y") and class_map.k_old == 0


def test_data_lacking_an_old_class_is_refused_by_name():
    with pytest.raises(DataError, match="lacks old classes") as info:
        build_class_map(["cat", "dog", "owl"], ["cat", "emu"])
    assert str(info.value) == "the update data lacks old classes: dog, owl"


@pytest.mark.parametrize(
    "old, data, message",
    [
        (["cat", "dog", "cat", "dog"], ["cat", "dog"], "duplicate class names in the old model: cat, dog"),
        (["cat"], ["cat", "emu", "emu"], "duplicate class names in the update data: emu"),
    ],
)
def test_duplicate_names_are_refused(old, data, message):
    with pytest.raises(DataError, match="duplicate") as info:
        build_class_map(old, data)
    assert str(info.value) == message


# ---------------------------------------------------------------------------------------------
# ImageSet
# ---------------------------------------------------------------------------------------------


def make_set(counts: list[int], *, seed: int = 0, classes=None) -> ImageSet:
    """counts[c] samples of class c, interleaved; image i's first pixel encodes i (mod 256)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    labels = labels[torch.randperm(labels.numel(), generator=generator)]
    images = torch.randint(0, 256, (labels.numel(), 1, 4, 4), dtype=torch.uint8, generator=generator)
    images[:, 0, 0, 0] = torch.arange(labels.numel()) % 256
    classes = classes or [f"k{c}" for c in range(len(counts))]
    return ImageSet(images, labels, classes)


def test_select_classes_relabels_in_the_given_order():
    data = make_set([3, 4, 5, 6])
    picked = data.select_classes(["k3", "k1"])
    assert picked.classes == ["k3", "k1"]
    assert len(picked) == 6 + 4
    # Each kept image is the original with its label renamed: k3 -> 0, k1 -> 1.
    originals = {int(data.images[i, 0, 0, 0]): int(data.labels[i]) for i in range(len(data))}
    for image, label in zip(picked.images, picked.labels, strict=True):
        assert {3: 0, 1: 1}[originals[int(image[0, 0, 0])]] == int(label)
    # Data order is kept.
    kept = [i for i in range(len(data)) if int(data.labels[i]) in (1, 3)]
    assert torch.equal(picked.images, data.images[kept])
    with pytest.raises(DataError, match="k9"):
        data.select_classes(["k0", "k9"])


def test_imageset_validates():
    with pytest.raises(DataError, match="uint8"):
        ImageSet(torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.long), ["a"])
    with pytest.raises(DataError, match="labels"):
        ImageSet(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 3]), ["a", "b"])
    with pytest.raises(DataError, match="2 images but 3 labels"):
        ImageSet(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 0, 0]), ["a"])


def test_limit_per_class_is_seeded_and_stratified():
    data = make_set([10, 3, 20])
    limited = data.limit_per_class(5, seed=1)
    assert torch.bincount(limited.labels, minlength=3).tolist() == [5, 3, 5]
    again = data.limit_per_class(5, seed=1)
    assert torch.equal(limited.images, again.images) and torch.equal(limited.labels, again.labels)
    other = data.limit_per_class(5, seed=2)
    assert not torch.equal(limited.images, other.images)
    # A subset of the original, in the original order.
    ids = limited.images[:, 0, 0, 0].tolist()
    assert ids == sorted(ids)
    assert data.limit_per_class(None, seed=0) is data


def test_split_is_seeded_and_stratified():
    data = make_set([10, 20, 30])
    rest, held = data.split(0.2, seed=3)
    assert torch.bincount(held.labels, minlength=3).tolist() == [2, 4, 6]
    assert torch.bincount(rest.labels, minlength=3).tolist() == [8, 16, 24]
    # Disjoint and complete.
    ids_rest, ids_held = set(rest.images[:, 0, 0, 0].tolist()), set(held.images[:, 0, 0, 0].tolist())
    assert not ids_rest & ids_held and len(ids_rest | ids_held) == 60
    rest2, held2 = data.split(0.2, seed=3)
    assert torch.equal(held.images, held2.images) and torch.equal(rest.images, rest2.images)
    _, held3 = data.split(0.2, seed=4)
    assert not torch.equal(held.images, held3.images)


# ---------------------------------------------------------------------------------------------
# Augmentation
# ---------------------------------------------------------------------------------------------


def _batch(n=16, channels=3, size=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    # Strictly positive pixels: a zero in the output can only come from the padding.
    return torch.randint(1, 256, (n, channels, size, size), dtype=torch.uint8, generator=generator)


def test_augment_keeps_shape_and_dtype_and_is_seeded():
    images = _batch()
    a = augment(images, padding=4, flip=True, generator=torch.Generator().manual_seed(5))
    b = augment(images, padding=4, flip=True, generator=torch.Generator().manual_seed(5))
    c = augment(images, padding=4, flip=True, generator=torch.Generator().manual_seed(6))
    assert a.shape == images.shape and a.dtype == torch.uint8
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a, images)


def test_augment_without_padding_or_flip_is_identity():
    images = _batch()
    out = augment(images, padding=0, flip=False, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, images)


def test_flip_only_mirrors_some_samples():
    images = _batch(n=32)
    out = augment(images, padding=0, flip=True, generator=torch.Generator().manual_seed(1))
    mirrored = [torch.equal(o, i.flip(2)) for o, i in zip(out, images, strict=True)]
    unchanged = [torch.equal(o, i) for o, i in zip(out, images, strict=True)]
    assert all(m or u for m, u in zip(mirrored, unchanged, strict=True))
    assert any(mirrored) and any(unchanged)


def test_crops_are_shifts_of_the_zero_padded_image():
    padding, size = 3, 8
    images = _batch(n=24, size=size)
    out = augment(images, padding=padding, flip=False, generator=torch.Generator().manual_seed(2))
    offsets = []
    for image, cropped in zip(images, out, strict=True):
        padded = torch.zeros(3, size + 2 * padding, size + 2 * padding, dtype=torch.uint8)
        padded[:, padding : padding + size, padding : padding + size] = image  # manual zero padding
        found = [
            (dy, dx)
            for dy in range(2 * padding + 1)
            for dx in range(2 * padding + 1)
            if torch.equal(padded[:, dy : dy + size, dx : dx + size], cropped)
        ]
        assert len(found) == 1, "every output must be exactly one crop of its padded input"
        offsets.append(found[0])
    # Crops are drawn per sample: not all the same offset, and some really shifted.
    assert len(set(offsets)) > 1
    assert any(o != (padding, padding) for o in offsets)


def test_crop_matches_a_manual_crop_with_the_same_draws():
    # augment draws the row offsets, then the column offsets, from the generator.
    padding, size = 2, 6
    images = _batch(n=5, channels=1, size=size)
    out = augment(images, padding=padding, flip=False, generator=torch.Generator().manual_seed(9))
    generator = torch.Generator().manual_seed(9)
    dy = torch.randint(0, 2 * padding + 1, (5,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (5,), generator=generator)
    padded = F.pad(images, (padding,) * 4)
    for i in range(5):
        y0, x0 = int(dy[i]), int(dx[i])
        assert torch.equal(out[i], padded[i, :, y0 : y0 + size, x0 : x0 + size])


# ---------------------------------------------------------------------------------------------
# Loaders
# ---------------------------------------------------------------------------------------------


def test_one_loader_per_contract_format():
    assert list(LOADERS) == list(DatasetFormat)


def test_fashion_mnist_idx_loader(tmp_path):
    train = synthetic_images(3, 10, seed=0)
    test = synthetic_images(2, 10, seed=1)
    root = write_fashion_mnist_dir(tmp_path / "fm", train, test)
    assert detect_format(root) == "fashion-mnist"
    bundle = load_dataset(root)
    assert bundle.classes == FASHION_MNIST_CLASSES
    assert bundle.train.images.shape == (30, 1, 28, 28) and bundle.train.images.dtype == torch.uint8
    assert bundle.test.images.shape == (20, 1, 28, 28)
    assert torch.equal(bundle.train.images[:, 0], torch.from_numpy(train[0]))
    assert bundle.train.labels.tolist() == train[1].tolist()
    assert bundle.test.labels.dtype == torch.int64
    # The digest is a content hash: the same files give the same digest.
    assert load_dataset(root).digest == bundle.digest
    assert bundle.describe()["train_size"] == 30


def test_links_out_of_the_data_set_folder_are_refused(tmp_path):
    train = synthetic_images(3, 10, seed=0)
    root = write_fashion_mnist_dir(tmp_path / "fm", train, synthetic_images(2, 10, seed=1))
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    labels = root / "t10k-labels-idx1-ubyte.gz"
    labels.rename(outside / labels.name)
    labels.symlink_to(outside / labels.name)
    with pytest.raises(DataError, match="links outside the data set folder"):
        load_dataset(root)
    # A link that stays inside the folder is fine.
    (outside / labels.name).rename(root / "labels-copy.gz")
    labels.unlink()
    labels.symlink_to(root / "labels-copy.gz")
    assert len(load_dataset(root).test) == 20


def test_idx_file_with_the_wrong_type_is_refused(tmp_path):
    root = write_fashion_mnist_dir(tmp_path / "fm", synthetic_images(1, 10, seed=0), synthetic_images(1, 10, seed=1))
    import gzip

    with gzip.open(root / "train-labels-idx1-ubyte.gz", "wb") as handle:
        handle.write(bytes([0, 0, 0x0D, 1, 0, 0, 0, 1]) + b"\0\0\0\0")  # float idx
    with pytest.raises(DataError, match="unsigned-byte"):
        load_dataset(root)


def test_imagefolder_loader(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    written = {}
    for split, count in (("train", 3), ("test", 2)):
        for name in ("cat", "ant", "bee"):
            folder = tmp_path / "imgs" / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
                written[(split, name, i)] = pixels
            (folder / "notes.txt").write_text("not an image")
    root = tmp_path / "imgs"
    assert detect_format(root) == "imagefolder"
    bundle = load_dataset(root)
    assert bundle.classes == ["ant", "bee", "cat"]  # sorted folder names
    assert bundle.train.images.shape == (9, 3, 5, 7)
    assert bundle.test.images.shape == (6, 3, 5, 7)
    assert bundle.train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    # First training image: ant/0.png, channels first.
    assert torch.equal(bundle.train.images[0], torch.from_numpy(written[("train", "ant", 0)]).permute(2, 0, 1))
    assert torch.equal(bundle.test.images[5], torch.from_numpy(written[("test", "cat", 1)]).permute(2, 0, 1))


def test_imagefolder_grey_images_stay_one_channel(tmp_path):
    from PIL import Image

    for split in ("train", "test"):
        for name in ("a", "b"):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            Image.fromarray(np.full((4, 4), 17 if name == "a" else 99, dtype=np.uint8)).save(folder / "x.png")
    bundle = load_dataset(tmp_path, "imagefolder")
    assert bundle.train.images.shape == (2, 1, 4, 4)
    assert bundle.train.images[1].unique().tolist() == [99]


def test_npz_loader(tmp_path):
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, size=(6, 4, 4, 3), dtype=np.uint8)  # channels last
    x_test = rng.integers(0, 256, size=(2, 4, 4, 3), dtype=np.uint8)
    path = tmp_path / "set.npz"
    np.savez(
        path,
        x_train=x_train,
        y_train=np.array([0, 1, 2, 0, 1, 2]),
        x_test=x_test,
        y_test=np.array([2, 0]),
        classes=np.array(["r", "g", "b"]),
    )
    assert detect_format(path) == "npz"
    bundle = load_dataset(path)
    assert bundle.classes == ["r", "g", "b"]
    assert bundle.train.images.shape == (6, 3, 4, 4)
    assert torch.equal(bundle.train.images, torch.from_numpy(x_train).permute(0, 3, 1, 2))
    assert bundle.test.labels.tolist() == [2, 0]
    # Grey (N, H, W) arrays get one channel.
    np.savez(
        path,
        x_train=x_train[..., 0],
        y_train=np.zeros(6, int),
        x_test=x_test[..., 0],
        y_test=np.zeros(2, int),
        classes=np.array(["only"]),
    )
    assert load_dataset(path).train.images.shape == (6, 1, 4, 4)


def test_npz_missing_arrays_and_wrong_dtype(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, x_train=np.zeros((1, 2, 2), np.uint8), y_train=np.zeros(1, int))
    with pytest.raises(DataError, match="classes"):
        load_dataset(path)
    np.savez(
        path,
        x_train=np.zeros((1, 2, 2)),
        y_train=np.zeros(1, int),
        x_test=np.zeros((1, 2, 2)),
        y_test=np.zeros(1, int),
        classes=np.array(["a"]),
    )
    with pytest.raises(DataError, match="uint8"):
        load_dataset(path)


def _write_cifar(root: Path, *, train_n=6, test_n=4, names=("apple", "bee", "cloud")) -> dict:
    """CIFAR-100's python layout: pickled dicts with bytes keys, protocol 2, as the real files."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    parts = {}
    for split, n in (("train", train_n), ("test", test_n)):
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, len(names), size=n)]
        parts[split] = (data, labels)
        with open(folder / split, "wb") as handle:
            pickle.dump(
                {
                    b"filenames": [b"x.png"] * n,
                    b"batch_label": b"training batch 1 of 1",
                    b"fine_labels": labels,
                    b"coarse_labels": [0] * n,
                    b"data": data,
                },
                handle,
                protocol=2,
            )
    with open(folder / "meta", "wb") as handle:
        pickle.dump(
            {b"fine_label_names": [n.encode() for n in names], b"coarse_label_names": [b"all"]}, handle, protocol=2
        )
    return parts


def test_cifar100_python_layout(tmp_path):
    parts = _write_cifar(tmp_path)
    assert detect_format(tmp_path) == "cifar"
    bundle = load_dataset(tmp_path)
    assert bundle.classes == ["apple", "bee", "cloud"]
    assert bundle.train.images.shape == (6, 3, 32, 32) and bundle.train.images.dtype == torch.uint8
    assert bundle.test.images.shape == (4, 3, 32, 32)
    data, labels = parts["train"]
    # Each row is 1024 red, then 1024 green, then 1024 blue values, row-major.
    assert bundle.train.images[2, 1, 3, 5] == data[2, 1024 + 3 * 32 + 5]
    assert torch.equal(bundle.train.images.flatten(1), torch.from_numpy(data))
    assert bundle.train.labels.tolist() == labels
    assert bundle.test.labels.tolist() == parts["test"][1]
    # The inner folder itself also loads.
    assert load_dataset(tmp_path / "cifar-100-python", "cifar").classes == bundle.classes


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_cifar_pickle_with_another_class_is_refused(tmp_path):
    _write_cifar(tmp_path)
    with open(tmp_path / "cifar-100-python" / "train", "wb") as handle:
        pickle.dump({b"data": _Payload(), b"fine_labels": []}, handle, protocol=2)
    with pytest.raises(DataError, match="refusing to load"):
        load_dataset(tmp_path)


def test_cifar_missing_file(tmp_path):
    _write_cifar(tmp_path)
    (tmp_path / "cifar-100-python" / "test").unlink()
    with pytest.raises(DataError, match="missing CIFAR-100 file"):
        load_dataset(tmp_path, "cifar")


def test_unknown_layout_and_missing_path(tmp_path):
    with pytest.raises(DataError, match="cannot tell the format"):
        load_dataset(tmp_path)
    with pytest.raises(DataError, match="no data set"):
        load_dataset(tmp_path / "nope")
    with pytest.raises(DataError, match="unknown format"):
        load_dataset(tmp_path, "parquet")


def test_real_fashion_mnist():  # scripts/setup.sh installs Debian's dataset-fashion-mnist
    bundle = load_dataset(FASHION_MNIST_DIR)
    assert len(bundle.train) == 60000 and len(bundle.test) == 10000
    assert bundle.classes == FASHION_MNIST_CLASSES and len(bundle.classes) == 10
    assert bundle.train.images.shape == (60000, 1, 28, 28)
    assert torch.bincount(bundle.train.labels).tolist() == [6000] * 10
    assert torch.bincount(bundle.test.labels).tolist() == [1000] * 10


class CountingName(str):
    """A class name that counts how often it is compared for equality."""

    comparisons = 0

    def __eq__(self, other):
        CountingName.comparisons += 1
        return str.__eq__(self, other)

    __hash__ = str.__hash__


def test_class_map_and_subsets_take_linear_time():
    """Thousands of classes: each name is compared a bounded number of times (list.count and
    `in list` in a loop compare every pair)."""
    old = [CountingName(f"old-{i}") for i in range(2000)]
    data = [CountingName(name) for name in old] + [CountingName(f"new-{i}") for i in range(2000)]
    CountingName.comparisons = 0
    class_map = build_class_map(old, data)
    assert class_map.k_old == 2000 and len(class_map.classes) == 4000
    images = ImageSet(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.tensor([0, 1, 2, 3]), list(data))
    images.select_classes(list(reversed(old)))
    assert CountingName.comparisons <= 4 * len(data)
