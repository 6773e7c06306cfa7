"""Image data sets by name, loaded whole into memory as uint8 tensors.

``load_dataset(name, root, split)`` returns an :class:`~nasp.data.base.ImageDataset`. The known
names are the keys of :data:`DATASETS`, gathered from one module per source, each of which also
declares the shapes of its data sets (:data:`DATASET_SHAPES`, :func:`known_shape`), so a shape is
known without reading any data:

- ``digits`` (:mod:`nasp.data.digits`): scikit-learn's bundled 8x8 digits, offline.
- ``cifar10`` / ``cifar100`` (:mod:`nasp.data.cifar`): the official python-pickle folders.
- ``mnist`` / ``fashion-mnist`` (:mod:`nasp.data.idx`): the four idx files, raw or ``.gz``.
- ``folder`` (:mod:`nasp.data.folder`): one sub-folder of images per class; its shape is known
  only by reading it.

Downloads (:mod:`nasp.data.download`) are checked against the official md5 and moved into place
only once complete and verified, so a failed download leaves nothing behind, and a local copy is
never changed.

Any problem with the data raises :class:`DatasetError` (a ``ValueError``), whose message is one
line saying what was looked at, what was wrong and how to get or fix the data: a missing,
truncated or corrupt file (bad pickle, bad gzip stream, wrong idx magic number or a header that
promises more or less data than there is, undecodable image), data of the wrong structure
(shapes, dtypes, label range, MNIST images that are not 28x28, images of mixed sizes or channel
counts), an empty split, a folder data set with fewer than two classes, and a train split whose
images all belong to one class. Nothing else escapes the loaders, whatever the bytes in the
files; sizes written in file headers are never trusted for allocating memory.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from nasp.data import cifar, digits, folder, idx
from nasp.data.base import DataShape, ImageDataset
from nasp.data.text import TEXT_DATASETS
from nasp.errors import DatasetError

__all__ = ["DATASETS", "DATASET_NAMES", "DATASET_SHAPES", "SPLITS", "known_shape",
           "load_dataset"]

_SOURCES = (digits, cifar, idx, folder)

SPLITS = ("train", "test")

DATASETS: dict[str, Callable[..., ImageDataset]] = {
    name: loader for source in _SOURCES for name, loader in source.LOADERS.items()}
"""Registry: data set name -> loader ``(root: Path | None, split: str, download: bool)``."""

DATASET_SHAPES: dict[str, DataShape] = {
    name: shape for source in _SOURCES for name, shape in source.SHAPES.items()}
"""Shapes of the named data sets, known without reading them (``folder`` must be read)."""

DATASET_NAMES: tuple[str, ...] = tuple(sorted({*DATASETS, *TEXT_DATASETS}))
"""Every name ``--dataset`` takes: the image data sets and the text corpora."""


def _key(name: str) -> str:
    """The registry key of a data set name: case, spaces around and ``_`` vs ``-`` don't matter."""
    return name.strip().lower().replace("_", "-")


def known_shape(name: str) -> DataShape | None:
    """The shape of the data set ``name`` without reading it, or None when only its data can
    tell (``folder``) or the name is unknown."""
    return DATASET_SHAPES.get(_key(name))


def load_dataset(name: str, root: str | os.PathLike | None = None, split: str = "train",
                 download: bool = True) -> ImageDataset:
    """Load the ``split`` ("train" or "test") of the data set ``name`` from ``root``.

    ``root=None`` means :func:`~nasp.data.base.default_data_dir`. Data sets that can be
    downloaded are downloaded into ``root`` when missing and ``download`` is true.

    Raises :class:`DatasetError` (one line, naming the file or folder and what to do) for an
    unknown name or split and for any missing, unreadable, corrupt or unsuitable data, including
    a train split holding a single class; no other exception comes out of a damaged file.
    """
    key = _key(name)
    if key in TEXT_DATASETS:
        raise DatasetError(f"{key} is a text corpus, not an image data set: only a search on "
                           f"a recurrent space, or the training of a recurrent cell, reads it")
    if key not in DATASETS:
        raise DatasetError(f"unknown data set {name!r}; known data sets: "
                           f"{', '.join(sorted(DATASETS))}")
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r} for data set {key}; use 'train' or 'test'")
    return DATASETS[key](None if root is None else Path(root).expanduser(), split, download)
