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
from dataclasses import dataclass
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


def photo_folder(root: Path, count: int, sizes: tuple[int, int], data: str = FASHION_MNIST_DIR) -> Path:
    """`count` Fashion-MNIST training images (test split: a tenth as many) as photos."""
    bundle = load_dataset(data)
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


@dataclass(frozen=True)
class PathRun:
    """What one comparison runs (this script's options; bench/gpu_check.py's part (e))."""

    images: int = 2000
    sizes: tuple[int, int] = (96, 384)  # the photos' sides, px
    image_size: int = 64
    workers: int = 2
    batch_size: int = 128
    train_crop: str = "random_resized"
    repeats: int = 3


@dataclass(frozen=True)
class PathFigures:
    """One comparison's figures: images/s per repeat, by path (RESIDENT, STREAMING) and by what
    was timed ("feed", "train")."""

    photos: int
    shape: tuple[int, int, int]
    write_s: float
    decode_s: float  # the resident path's one-off decode
    rates: dict[str, dict[str, list[float]]]

    def median(self, path: str, what: str) -> float:
        return statistics.median(self.rates[path][what])

    def ratio(self, what: str) -> float:
        """Streaming over resident, medians."""
        return self.median(STREAMING, what) / self.median(RESIDENT, what)


def compare_paths(run: PathRun, device: torch.device, data: str = FASHION_MNIST_DIR) -> PathFigures:
    """The photo folder written, then both paths timed, alternating, over `run.repeats`."""
    recipe = Recipe(
        epochs=1,
        batch_size=run.batch_size,
        image_size=run.image_size,
        train_crop=run.train_crop,
        decode_workers=run.workers,
    )
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        files = open_dataset(photo_folder(Path(folder), run.images, run.sizes, data)).train
        assert isinstance(files, ImageFiles)  # an image folder opens lazily
        write_s = time.perf_counter() - started
        shape = (files.channels, run.image_size, run.image_size)
        started = time.perf_counter()
        resident = decode_all(files, shape, workers=run.workers)
        decode_s = time.perf_counter() - started
        paths = {RESIDENT: prepare(resident, shape, path=RESIDENT, workers=run.workers)}
        paths[STREAMING] = prepare(files, shape, path=STREAMING, workers=run.workers)
        rates: dict[str, dict[str, list[float]]] = {p: {"feed": [], "train": []} for p in paths}
        for repeat in range(run.repeats):
            order = [RESIDENT, STREAMING] if repeat % 2 == 0 else [STREAMING, RESIDENT]
            for path in order:
                rates[path]["feed"].append(feed_rate(paths[path], recipe, run.workers, device))
                rates[path]["train"].append(train_rate(paths[path], recipe, len(files.classes), device))
    return PathFigures(photos=len(files), shape=shape, write_s=write_s, decode_s=decode_s, rates=rates)


def main() -> None:
    defaults = PathRun()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=defaults.images)
    parser.add_argument("--sizes", type=int, nargs=2, default=defaults.sizes, metavar=("MIN", "MAX"))
    parser.add_argument("--image-size", type=int, default=defaults.image_size)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--train-crop", choices=["pad", "random_resized"], default=defaults.train_crop)
    parser.add_argument("--repeats", type=int, default=defaults.repeats)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    run = PathRun(
        images=args.images,
        sizes=(args.sizes[0], args.sizes[1]),
        image_size=args.image_size,
        workers=args.workers,
        batch_size=args.batch_size,
        train_crop=args.train_crop,
        repeats=args.repeats,
    )
    figures = compare_paths(run, device)
    print(f"wrote {figures.photos} photos ({run.sizes[0]}..{run.sizes[1]} px) in {figures.write_s:.1f} s")
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, {figures.photos} images -> {figures.shape}, batch {run.batch_size}, "
        f"{run.train_crop}, {run.workers} decode workers, {device}"
    )
    print(f"resident one-off decode: {figures.decode_s:.1f} s ({figures.photos / figures.decode_s:.0f} images/s)")
    for what in ("feed", "train"):
        print(
            f"{what:5}  resident {figures.median(RESIDENT, what):9.0f} images/s   "
            f"streaming {figures.median(STREAMING, what):9.0f} images/s   "
            f"streaming / resident {figures.ratio(what):.3f}x"
        )


if __name__ == "__main__":
    main()
