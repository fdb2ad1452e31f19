"""Poison data sets: headers that declare gigabytes, a decompression-bomb PNG, too many images
or classes, a FIFO, an object array. Each is a DataError naming the limit, raised before the
memory is allocated: every load runs in a child process under a lowered address-space limit
(RLIMIT_AS), so a loader that did allocate would die there, not take the machine with it."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
from poison_data import idx_declaring, imagefolder_with, npz_declaring, png_of_zeros

ROOT = Path(__file__).resolve().parents[2]
# Importing torch maps about 3.6 GB of address space; this leaves about 1.5 GB for the load.
ADDRESS_SPACE = 5 * 1024**3
LOAD = """
import json, sys
from mpt.data import DataError
from mpt.formats import load_dataset
from mpt.limits import DataLimits
fields = ("max_bytes", "max_images", "max_image_pixels", "max_classes")
names = tuple((field, "FLIPGUARD_DATASET_" + field.upper()) for field in fields)
for path, data_format, limits in json.loads(sys.argv[1]):
    try:
        bundle = load_dataset(path, data_format, limits=DataLimits(**limits, names=names))
        print(json.dumps({"ready": bundle.describe()["train_size"]}), flush=True)
    except DataError as error:
        print(json.dumps({"error": str(error)}), flush=True)
"""


def _limit_address_space():
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def load_in_child(*cases: tuple[Path, str, dict]) -> list[dict]:
    """load_dataset of each (path, format, limits) in one child process under RLIMIT_AS (one
    torch import for all); their outcomes, or a failure with the child's output."""
    child = subprocess.run(
        [sys.executable, "-c", LOAD, json.dumps([(str(path), fmt, limits) for path, fmt, limits in cases])],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        preexec_fn=_limit_address_space,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert child.returncode == 0, f"the loader crashed ({child.returncode}):\n{child.stdout}\n{child.stderr[-3000:]}"
    outcomes = [json.loads(line) for line in child.stdout.strip().splitlines()]
    assert len(outcomes) == len(cases), child.stdout
    return outcomes


def test_headers_declaring_gigabytes_are_refused_before_loading(tmp_path):
    bomb = npz_declaring(tmp_path / "bomb.npz", (16384, 1024, 1024))  # 16 GiB declared, 2 KB on disk
    assert bomb.stat().st_size < 4096
    npz, idx = load_in_child(
        (bomb, "npz", {}),
        (idx_declaring(tmp_path / "fmnist", 100_000, 4096), "fashion-mnist", {}),
    )
    assert "x_train declares shape (16384, 1024, 1024)" in npz["error"], npz
    assert "FLIPGUARD_DATASET_MAX_BYTES" in npz["error"]
    assert "declares shape (100000, 4096, 4096)" in idx["error"] and "FLIPGUARD_DATASET_MAX_BYTES" in idx["error"]


def test_image_folders_are_bounded_by_pixels_images_classes_and_bytes(tmp_path):
    bomb = png_of_zeros(tmp_path / "bomb.png", 20000, 20000)
    assert bomb.stat().st_size < 2 * 1024 * 1024
    big = png_of_zeros(tmp_path / "big.png", 300, 300)
    folder = imagefolder_with(tmp_path / "folder")
    fifo = imagefolder_with(tmp_path / "fifo")
    os.mkfifo(fifo / "train" / "b" / "stuck.png")
    outcomes = load_in_child(
        (imagefolder_with(tmp_path / "bomb", bomb), "imagefolder", {}),
        # Between the limit and Pillow's default: refused as well.
        (imagefolder_with(tmp_path / "big", big), "imagefolder", {"max_image_pixels": 256 * 256}),
        (folder, "imagefolder", {}),
        (folder, "imagefolder", {"max_images": 3}),
        (folder, "imagefolder", {"max_classes": 1}),
        (folder, "imagefolder", {"max_bytes": 200}),  # four grey 8x8 images decode to 256 bytes
        (fifo, "imagefolder", {}),  # a FIFO would block the reader forever
    )
    bomb_error, big_error, ready, images, classes, size, stuck = outcomes
    assert "bomb.png" in bomb_error["error"] and "400000000 pixels" in bomb_error["error"], bomb_error
    assert "FLIPGUARD_DATASET_MAX_IMAGE_PIXELS" in bomb_error["error"]
    assert "big.png" in big_error["error"] and "FLIPGUARD_DATASET_MAX_IMAGE_PIXELS" in big_error["error"]
    assert ready == {"ready": 2}
    assert "FLIPGUARD_DATASET_MAX_IMAGES" in images["error"]
    assert "FLIPGUARD_DATASET_MAX_CLASSES" in classes["error"]
    assert "FLIPGUARD_DATASET_MAX_BYTES" in size["error"]
    assert "stuck.png is not a regular file" in stuck["error"]


def small_npz(path: Path, rows: int, **changes) -> Path:
    arrays = {
        "x_train": np.zeros((rows, 8, 8), np.uint8),
        "y_train": np.zeros(rows, np.int64),
        "x_test": np.zeros((2, 8, 8), np.uint8),
        "y_test": np.zeros(2, np.int64),
        "classes": np.array(["a", "b"]),
    }
    np.savez(path, **(arrays | changes))
    return path


def test_npz_archives_are_checked_by_their_headers(tmp_path):
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(small_npz(tmp_path / "whole.npz", 4).read_bytes()[:300])
    outcomes = load_in_child(
        (small_npz(tmp_path / "objects.npz", 4, classes=np.array(["a", "b"], dtype=object)), "npz", {}),
        (small_npz(tmp_path / "floats.npz", 4, x_train=np.zeros((4, 8, 8))), "npz", {}),
        (truncated, "npz", {}),
        (small_npz(tmp_path / "four.npz", 4), "npz", {"max_images": 6}),
        (small_npz(tmp_path / "five.npz", 5), "npz", {"max_images": 6}),
    )
    objects, floats, broken, four, five = outcomes
    assert "classes must be a 1-D array of short strings" in objects["error"]
    assert "x_train must be uint8, got float64" in floats["error"]
    assert "not a readable npz data set" in broken["error"]
    assert four == {"ready": 4}
    assert "FLIPGUARD_DATASET_MAX_IMAGES" in five["error"]
