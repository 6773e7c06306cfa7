"""``digits``: scikit-learn's bundled 8x8 digits (offline).

It has no official test split, so a fixed seeded permutation holds out 360 images as ``test`` and
keeps 1437 as ``train``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from nasp.data.base import DataShape, ImageDataset, _channel_stats

_DIGITS_SEED = 0
_DIGITS_TEST = 360


def _load_digits(root: Path | None, split: str, download: bool) -> ImageDataset:
    """scikit-learn's 8x8 digits; ``root`` and ``download`` are not used."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = np.rint(bunch.images * (255 / 16)).astype(np.uint8)
    images = torch.from_numpy(pixels).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    order = torch.from_numpy(np.random.RandomState(_DIGITS_SEED).permutation(len(labels)))
    train_rows, test_rows = order[_DIGITS_TEST:], order[:_DIGITS_TEST]
    mean, std = _channel_stats(images[train_rows])
    rows = train_rows if split == "train" else test_rows
    return ImageDataset("digits", images[rows].contiguous(), labels[rows],
                        tuple(str(d) for d in range(10)), mean, std, flip=False, crop_padding=1)


LOADERS: dict[str, Callable[..., ImageDataset]] = {"digits": _load_digits}
"""Data set name -> loader ``(root, split, download)``, for :data:`nasp.data.DATASETS`."""

SHAPES: dict[str, DataShape] = {"digits": DataShape(1, (8, 8), 10)}
"""The shape of each data set above, known without loading it."""
