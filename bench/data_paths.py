"""The two data paths on the same photos: streaming beside resident, in this one process.

Data: `--images` Fashion-MNIST training images turned into an image folder of photos at random
sizes (`--sizes`, default 96..384 px a side) in the five file kinds of the engine tests
(grey PNG, RGB JPEG, palette PNG, RGBA PNG, EXIF-turned JPEG), fitted to `--image-size`.

* resident: the folder decoded and fitted once (`mpt.data.decode_all`, printed separately as a
  one-off cost), then batches gathered from memory.
* streaming: `--workers` DataLoader processes decode and fit each batch's files, every epoch.

For each path, alternating (resident, streaming, streaming, resident, ...) so that other load on
the machine hits both alike, medians over `--repeats`:

* feed: images/s of the data path alone, `mpt.feed.BatchFeed.shuffled` + the recipe's device
  augmentation over one epoch (what the path costs the loop);
* train: images/s of one epoch of `mpt.train.train` (small_cnn, independent), the same batches.

    .venv/bin/python -m bench.data_paths --images 2000 --image-size 64 --workers 2 --repeats 3 --threads 1
    .venv/bin/python -m bench.data_paths --images 20000 --image-size 224 --workers 16 --device cuda
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from mpt.augment import augment_batch
from mpt.data import ImageFiles, ImageSet, decode_all
from mpt.feed import RESIDENT, STREAMING, BatchFeed, Prepared, prepare
from mpt.formats import load_dataset, open_dataset
from mpt.nets import build_net
from mpt.recipe import MethodParams, Recipe
from mpt.train import TrainingSetup, epoch_generator, train
from tests.engine.engine_support import write_photo_folder

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


def photo_folder(root: Path, count: int, sizes: tuple[int, int]) -> Path:
    """`count` Fashion-MNIST training images (test split: a tenth as many) as photos."""
    bundle = load_dataset(FASHION_MNIST_DIR)
    train, test = bundle.train, bundle.test
    assert isinstance(train, ImageSet) and isinstance(test, ImageSet)  # load_dataset decodes
    splits = {
        "train": (train.images[:count, 0].numpy(), train.labels[:count].numpy()),
        "test": (test.images[: count // 10, 0].numpy(), test.labels[: count // 10].numpy()),
    }
    classes = [name.replace("/", "-") for name in bundle.classes]
    return write_photo_folder(root, splits, classes, seed=0, sizes=sizes)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def feed_rate(images: Prepared, recipe: Recipe, workers: int, device: torch.device) -> float:
    """Images/s of one epoch of batches through the path and the device augmentation."""
    synchronize(device)
    started = time.perf_counter()
    feed = BatchFeed(images, device, workers=workers, on_device=True)
    generator = epoch_generator(0, 0, device)
    order = torch.randperm(len(feed), device=device, generator=generator)
    seen = 0
    for _, batch, _ in feed.shuffled(order, recipe.batch_size):
        augment_batch(batch, recipe, generator)
        seen += batch.shape[0]
    synchronize(device)
    return seen / (time.perf_counter() - started)


def train_rate(images: Prepared, recipe: Recipe, classes: int, device: torch.device) -> float:
    """Images/s of one epoch of the training loop."""
    net = build_net("small_cnn", num_classes=classes, in_channels=images.shape[0], seed=0)
    setup = TrainingSetup(
        train_set=images,
        new_mask=torch.zeros(classes, dtype=torch.bool),
        mean=(0.5,) * images.shape[0],
        std=(0.25,) * images.shape[0],
        recipe=recipe,
        seed=0,
        device=device,
    )
    synchronize(device)
    started = time.perf_counter()
    train(setup, net=net, method="independent", params=MethodParams())
    synchronize(device)
    return len(images) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--sizes", type=int, nargs=2, default=(96, 384), metavar=("MIN", "MAX"))
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--train-crop", choices=["pad", "random_resized"], default="random_resized")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = Recipe(
        epochs=1,
        batch_size=args.batch_size,
        image_size=args.image_size,
        train_crop=args.train_crop,
        decode_workers=args.workers,
    )
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        files = open_dataset(photo_folder(Path(folder), args.images, tuple(args.sizes))).train
        assert isinstance(files, ImageFiles)  # an image folder opens lazily
        print(
            f"wrote {len(files)} photos ({args.sizes[0]}..{args.sizes[1]} px) in {time.perf_counter() - started:.1f} s"
        )
        shape = (files.channels, args.image_size, args.image_size)
        started = time.perf_counter()
        resident = decode_all(files, shape, workers=args.workers)
        decode_s = time.perf_counter() - started
        paths = {RESIDENT: prepare(resident, shape, path=RESIDENT, workers=args.workers)}
        paths[STREAMING] = prepare(files, shape, path=STREAMING, workers=args.workers)
        rates: dict[str, dict[str, list[float]]] = {p: {"feed": [], "train": []} for p in paths}
        for repeat in range(args.repeats):
            order = [RESIDENT, STREAMING] if repeat % 2 == 0 else [STREAMING, RESIDENT]
            for path in order:
                rates[path]["feed"].append(feed_rate(paths[path], recipe, args.workers, device))
                rates[path]["train"].append(train_rate(paths[path], recipe, len(files.classes), device))
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, {len(files)} images -> {shape}, batch {args.batch_size}, "
        f"{args.train_crop}, {args.workers} decode workers, {device}"
    )
    print(f"resident one-off decode: {decode_s:.1f} s ({len(files) / decode_s:.0f} images/s)")
    for what in ("feed", "train"):
        resident_rate = statistics.median(rates[RESIDENT][what])
        streaming_rate = statistics.median(rates[STREAMING][what])
        print(
            f"{what:5}  resident {resident_rate:9.0f} images/s   streaming {streaming_rate:9.0f} images/s   "
            f"streaming / resident {streaming_rate / resident_rate:.3f}x"
        )


if __name__ == "__main__":
    main()
