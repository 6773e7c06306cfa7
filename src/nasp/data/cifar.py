"""``cifar10`` / ``cifar100``: the official python-pickle folders.

The folders (``cifar-10-batches-py``, ``cifar-100-python``) are looked for inside ``root`` and as
``root`` itself. A local copy is checked by its structure (keys, shapes, dtypes, label range),
not by checksum; a download is checked against the official md5. The pickles are read with an
unpickler that accepts numpy arrays only, so a foreign object is refused, never executed.
"""

from __future__ import annotations

import functools
import io
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nasp.data.base import DataShape, ImageDataset, _check_classes, _one_line, _resolve_root
from nasp.data.download import _download, _DownloadError, _extract, _staging_dir
from nasp.errors import DatasetError

_IMAGE_SIZE = (32, 32)


@dataclass(frozen=True)
class _CifarSpec:
    title: str
    folder: str
    url: str
    md5: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: bytes
    names_key: bytes
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def fix_hint(self, root: Path) -> str:
        return (f"Point --data-dir at the folder holding {self.folder} (or at that folder "
                f"itself), or download {self.url} by hand and extract it into {root}.")

    def damaged_hint(self, folder: Path) -> str:
        return (f"Delete {folder} and load again to download a fresh copy, get {self.url} by "
                f"hand and extract it, or point --data-dir at a good copy.")


_CIFAR = {
    "cifar10": _CifarSpec(
        "CIFAR-10", "cifar-10-batches-py", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a", tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",), "batches.meta", b"labels", b"label_names", 10,
        (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": _CifarSpec(
        "CIFAR-100", "cifar-100-python", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85", ("train",), ("test",), "meta", b"fine_labels",
        b"fine_label_names", 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}

# The only globals a CIFAR pickle needs (numpy arrays); anything else is refused, not executed.
_PICKLE_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which a data batch "
                                         f"never needs")
        return super().find_class(module, name)


def _unpickle(path: Path, spec: _CifarSpec) -> dict:
    """A CIFAR pickle as a dict (``encoding='bytes'``, numpy arrays only).

    The file is read whole first and unpickled from memory, so a length field promising more
    bytes than the file holds ends in a "truncated" error instead of a huge allocation.
    """
    if not path.is_file():
        raise DatasetError(f"{spec.title} file {path} is missing, so the copy in {path.parent} is "
                           f"incomplete. {spec.damaged_hint(path.parent)}")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DatasetError(f"{spec.title} file {path} cannot be read ({_one_line(err)}). "
                           f"{spec.damaged_hint(path.parent)}") from err
    try:
        obj = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as err:  # a damaged pickle can fail in many ways; all mean the same here
        raise DatasetError(f"{spec.title} file {path} cannot be read as a pickle "
                           f"({_one_line(err)}); it is truncated or corrupt. "
                           f"{spec.damaged_hint(path.parent)}") from err
    if not isinstance(obj, dict):
        raise DatasetError(f"{spec.title} file {path} holds a {type(obj).__name__}, not the "
                           f"expected dict. {spec.damaged_hint(path.parent)}")
    return obj


def _batch_problem(data: object, labels: object, num_classes: int,
                   per_batch: int | None) -> str | None:
    """What is wrong with one CIFAR batch's data and labels, or None."""
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == 3072 and len(data) > 0):
        return (f"b'data' should be a non-empty uint8 array of shape (N, 3072), got "
                f"{type(data).__name__} {getattr(data, 'dtype', '')} {getattr(data, 'shape', '')}")
    try:
        labels = np.asarray(labels)
    except (ValueError, TypeError):
        return "the labels are not a list of integers"
    if labels.dtype.kind not in "iu" or labels.shape != (len(data),):
        return f"{labels.size} labels of type {labels.dtype} for {len(data)} images"
    if per_batch is not None and len(data) != per_batch:
        return f"{len(data)} images where batches.meta says {per_batch}"
    if labels.min() < 0 or labels.max() >= num_classes:
        return f"labels from {labels.min()} to {labels.max()}, outside 0..{num_classes - 1}"
    return None


def _find_cifar(spec: _CifarSpec, root: Path, download: bool) -> Path:
    """The folder holding the CIFAR files, downloading it into ``root`` if allowed."""
    candidates = (root / spec.folder, root)
    files = (*spec.train_files, *spec.test_files, spec.meta_file)
    for folder in candidates:
        if any((folder / f).is_file() for f in files):
            return folder
    looked = f"looked for its files in {candidates[0]} and {candidates[1]}"
    if not download:
        raise DatasetError(f"{spec.title} was not found: {looked}, and downloading is off. "
                           f"{spec.fix_hint(root)}")
    with _staging_dir(root, spec.title) as tmp:
        archive = Path(tmp) / spec.url.rsplit("/", 1)[1]
        try:
            _download(spec.url, archive, spec.md5)
            _extract(archive, Path(tmp), spec.folder)
        except _DownloadError as err:
            raise DatasetError(f"{spec.title} was not found ({looked}) and {err}. "
                               f"{spec.fix_hint(root)}") from err
        try:
            os.replace(Path(tmp) / spec.folder, candidates[0])
        except OSError as err:
            raise DatasetError(f"{spec.title} was downloaded but cannot be moved to "
                               f"{candidates[0]} ({err}); empty or remove that folder") from err
    return candidates[0]


def _load_cifar(key: str, root: Path | None, split: str, download: bool) -> ImageDataset:
    spec = _CIFAR[key]
    root = _resolve_root(root)
    folder = _find_cifar(spec, root, download)
    meta_path = folder / spec.meta_file
    meta = _unpickle(meta_path, spec)
    classes = _class_names(meta.get(spec.names_key), spec.num_classes)
    if classes is None:
        raise DatasetError(f"{spec.title} file {meta_path} should list {spec.num_classes} class "
                           f"names (UTF-8 text) under {spec.names_key!r}. "
                           f"{spec.damaged_hint(folder)}")
    per_batch = meta.get(b"num_cases_per_batch")
    per_batch = per_batch if isinstance(per_batch, int) else None
    arrays, labels = [], []
    for name in spec.train_files if split == "train" else spec.test_files:
        batch = _unpickle(folder / name, spec)
        data, batch_labels = batch.get(b"data"), batch.get(spec.label_key)
        problem = _batch_problem(data, batch_labels, spec.num_classes, per_batch)
        if problem:
            raise DatasetError(f"{spec.title} file {folder / name} is not a valid data batch: "
                               f"{problem}. {spec.damaged_hint(folder)}")
        arrays.append(data)
        labels.append(np.asarray(batch_labels, dtype=np.int64))
    images = torch.from_numpy(np.concatenate(arrays).reshape(-1, 3, *_IMAGE_SIZE))
    labels = torch.from_numpy(np.concatenate(labels))
    _check_classes(labels, classes, split, str(folder), spec.damaged_hint(folder))
    return ImageDataset(key, images, labels, classes, spec.mean, spec.std, flip=True,
                        crop_padding=4)


def _class_names(names: object, count: int) -> tuple[str, ...] | None:
    """``count`` class names from a CIFAR meta file (bytes or str), or None if they are not."""
    if not (isinstance(names, list) and len(names) == count
            and all(isinstance(n, (bytes, str)) for n in names)):
        return None
    try:
        return tuple(n.decode() if isinstance(n, bytes) else n for n in names)
    except UnicodeDecodeError:
        return None


LOADERS: dict[str, Callable[..., ImageDataset]] = {
    key: functools.partial(_load_cifar, key) for key in _CIFAR}
"""Data set name -> loader ``(root, split, download)``, for :data:`nasp.data.DATASETS`."""

SHAPES: dict[str, DataShape] = {
    key: DataShape(3, _IMAGE_SIZE, spec.num_classes) for key, spec in _CIFAR.items()}
"""The shape of each data set above, known without loading it."""
