"""``mnist`` / ``fashion-mnist``: the four idx files, raw or ``.gz``.

They are looked for in ``root/<name>``, ``root/<name>/raw``, the torchvision layout and ``root``
itself (and, for Fashion-MNIST, where the Debian package ``dataset-fashion-mnist`` installs
them); a download goes to ``root/<name>``, from the first mirror that serves each file with its
official md5. A wrong magic number, or a header that promises more or less data than the file
holds, is named as such; sizes written in headers are never trusted for allocating memory.
"""

from __future__ import annotations

import functools
import gzip
import math
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from nasp.data.base import DataShape, ImageDataset, _check_classes, _one_line, _resolve_root
from nasp.data.download import _download, _DownloadError, _staging_dir
from nasp.errors import DatasetError


@dataclass(frozen=True)
class _IdxSpec:
    title: str
    torchvision_folder: str
    mirrors: tuple[str, ...]
    md5: dict[str, str]
    classes: tuple[str, ...]
    mean: float
    std: float
    flip: bool
    system_dirs: tuple[Path, ...] = ()
    install_hint: str = ""


_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

_IDX = {
    "mnist": _IdxSpec(
        "MNIST", "MNIST", ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                           "http://yann.lecun.com/exdb/mnist/"),
        {"train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
         "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
         "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
         "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c"},
        tuple(str(d) for d in range(10)), 0.1307, 0.3081, flip=False),
    "fashion-mnist": _IdxSpec(
        "Fashion-MNIST", "FashionMNIST",
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        {"train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
         "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
         "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
         "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310"},
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
         "Bag", "Ankle boot"), 0.2860, 0.3530, flip=True,
        system_dirs=(Path("/usr/share/datasets/fashion-mnist"),),
        install_hint="On Debian/Ubuntu `apt-get install dataset-fashion-mnist` installs them "
                     "in /usr/share/datasets/fashion-mnist/. "),
}


def _idx_hint(spec: _IdxSpec, folder: Path) -> str:
    return (f"{spec.install_hint}Point --data-dir at a folder holding the idx files (raw or .gz), "
            f"or download them by hand from {spec.mirrors[0]} into {folder}.")


_IDX_IMAGE_SIZE = (28, 28)
_READ_CHUNK = 1 << 24


def _read_at_most(f: BinaryIO, limit: int) -> bytes:
    """Up to ``limit`` bytes of ``f``, read in chunks: memory follows what the file holds, not
    what a (possibly absurd) ``limit`` taken from a header says."""
    chunks, left = [], limit
    while left > 0 and (chunk := f.read(min(left, _READ_CHUNK))):
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_idx(path: Path, ndim: int, spec: _IdxSpec, folder: Path) -> np.ndarray:
    """The array stored in an idx file (raw or gzip) of unsigned bytes with ``ndim`` dimensions.

    The header is checked first; then at most one byte more than it promises is read, so a
    truncated, padded or absurdly sized file is named as such without reading it all.
    """
    header_size = 4 + 4 * ndim
    dims: tuple[int, ...] = ()
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            header = _read_at_most(f, header_size)
            if header[:4] != bytes((0, 0, 0x08, ndim)):
                problem = (f"its magic number is {header[:4].hex() or 'missing'}, not "
                           f"{0x800 + ndim:08x} (unsigned bytes, {ndim} dimensions)")
            elif len(header) < header_size:
                problem = "its header is truncated"
            else:
                dims = struct.unpack(f">{ndim}I", header[4:])
                body = _read_at_most(f, math.prod(dims) + 1)
                promised = f"its header promises {math.prod(dims)} bytes for shape {dims}"
                problem = None
                if len(body) > math.prod(dims):
                    problem = f"{promised} but it holds more (damaged, or not an idx file)"
                elif len(body) < math.prod(dims):
                    problem = f"{promised} but it holds {len(body)} (truncated or damaged)"
    except (OSError, EOFError, zlib.error) as err:
        raise DatasetError(f"{spec.title} file {path} cannot be read ({_one_line(err)}). "
                           f"{_idx_hint(spec, folder)}") from err
    if problem:
        raise DatasetError(f"{spec.title} file {path} is not a valid idx file: {problem}. "
                           f"{_idx_hint(spec, folder)}")
    return np.frombuffer(body, np.uint8).reshape(dims).copy()


def _find_idx(spec: _IdxSpec, key: str, root: Path, split: str,
              download: bool) -> tuple[Path, Path]:
    """The (images, labels) files of ``split``, downloading them into ``root/key`` if allowed."""
    names = _IDX_FILES[split]
    dirs = (root / key, root / key / "raw", root / spec.torchvision_folder / "raw", root,
            *spec.system_dirs)
    for folder in dirs:
        images, labels = (next((p for p in (folder / n, folder / f"{n}.gz") if p.is_file()), None)
                          for n in names)
        if images and labels:
            return images, labels
    target = root / key
    looked = f"looked for {' and '.join(names)} (or .gz) in {', '.join(map(str, dirs))}"
    if not download:
        raise DatasetError(f"{spec.title} was not found: {looked}, and downloading is off. "
                           f"{_idx_hint(spec, target)}")
    with _staging_dir(target, spec.title) as tmp:
        for name in names:
            _download_idx(spec, name, Path(tmp) / f"{name}.gz", looked, target)
        for name in names:
            os.replace(Path(tmp) / f"{name}.gz", target / f"{name}.gz")
    return target / f"{names[0]}.gz", target / f"{names[1]}.gz"


def _download_idx(spec: _IdxSpec, name: str, dest: Path, looked: str, target: Path) -> None:
    """Download ``name.gz`` to ``dest`` from the first mirror that serves it intact."""
    failures = []
    for mirror in spec.mirrors:
        try:
            _download(f"{mirror}{name}.gz", dest, spec.md5[name])
            return
        except _DownloadError as err:
            failures.append(str(err))
    raise DatasetError(f"{spec.title} was not found ({looked}) and {'; '.join(failures)}. "
                       f"{_idx_hint(spec, target)}")


def _load_idx(key: str, root: Path | None, split: str, download: bool) -> ImageDataset:
    spec = _IDX[key]
    root = _resolve_root(root)
    images_path, labels_path = _find_idx(spec, key, root, split, download)
    folder = images_path.parent
    images = _read_idx(images_path, 3, spec, folder)
    labels = _read_idx(labels_path, 1, spec, folder)
    if len(images) == 0 or len(images) != len(labels):
        problem = f"{len(images)} images in {images_path} but {len(labels)} labels in {labels_path}"
    elif images.shape[1:] != _IDX_IMAGE_SIZE:
        problem = (f"{images_path} holds images of {images.shape[1]}x{images.shape[2]} pixels, "
                   f"but {spec.title} images are {_IDX_IMAGE_SIZE[0]}x{_IDX_IMAGE_SIZE[1]}")
    elif labels.max() >= len(spec.classes):
        problem = f"labels in {labels_path} reach {labels.max()}, beyond {len(spec.classes) - 1}"
    else:
        problem = None
    if problem:
        raise DatasetError(f"the {spec.title} files are not usable: {problem}. "
                           f"{_idx_hint(spec, folder)}")
    labels = torch.from_numpy(labels.astype(np.int64))
    _check_classes(labels, spec.classes, split, str(labels_path), _idx_hint(spec, folder))
    return ImageDataset(key, torch.from_numpy(images).unsqueeze(1), labels, spec.classes,
                        (spec.mean,), (spec.std,), flip=spec.flip, crop_padding=2)


LOADERS: dict[str, Callable[..., ImageDataset]] = {
    key: functools.partial(_load_idx, key) for key in _IDX}
"""Data set name -> loader ``(root, split, download)``, for :data:`nasp.data.DATASETS`."""

SHAPES: dict[str, DataShape] = {
    key: DataShape(1, _IDX_IMAGE_SIZE, len(spec.classes)) for key, spec in _IDX.items()}
"""The shape of each data set above, known without loading it."""
