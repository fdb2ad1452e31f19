"""Fixtures for the engine's tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from engine_support import FASHION_MNIST_DIR, synthetic_images, write_fashion_mnist_dir


@pytest.fixture(autouse=True, scope="session")
def _few_threads():
    # Small nets on tiny batches: extra threads add little, and on a shared 2-core runner
    # spinning worker threads make the training tests many times slower.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def small_fashion_mnist(tmp_path_factory) -> Path:
    """A small Fashion-MNIST-format folder: a per-class subset of the real set when it is
    installed, else synthetic images of the same shape and classes."""
    root = tmp_path_factory.mktemp("fmnist-small")
    if FASHION_MNIST_DIR.is_dir():
        from mpt.formats import load_dataset

        bundle = load_dataset(FASHION_MNIST_DIR)
        parts = []
        for split, per_class in ((bundle.train, 100), (bundle.test, 50)):
            index = torch.cat([(split.labels == c).nonzero().flatten()[:per_class] for c in range(10)]).sort().values
            parts.append((split.images[index, 0].numpy(), split.labels[index].numpy().astype(np.uint8)))
        return write_fashion_mnist_dir(root, parts[0], parts[1])
    return write_fashion_mnist_dir(root, synthetic_images(100, 10, seed=1), synthetic_images(50, 10, seed=2))
