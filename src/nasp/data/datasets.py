"""Image data sets by name, loaded whole into memory as uint8 tensors.

``load_dataset(name, root, split)`` returns an :class:`ImageDataset`. The known names are the keys
of :data:`DATASETS`:

- ``digits``: scikit-learn's bundled 8x8 digits (offline). It has no official test split, so a
  fixed seeded permutation holds out 360 images as ``test`` and keeps 1437 as ``train``.
- ``cifar10`` / ``cifar100``: the official python-pickle folders (``cifar-10-batches-py``,
  ``cifar-100-python``), looked for inside ``root`` and as ``root`` itself. A local copy is checked
  by its structure (keys, shapes, dtypes, label range), not by checksum; a download is checked
  against the official md5.
- ``mnist`` / ``fashion-mnist``: the four idx files, raw or ``.gz``, looked for in ``root/<name>``,
  ``root/<name>/raw``, the torchvision layout and ``root`` itself (and, for Fashion-MNIST, where
  the Debian package ``dataset-fashion-mnist`` installs them).
- ``folder``: ``root`` holds one sub-folder of images per class (needs Pillow). If ``root`` has
  ``train/`` and ``test/`` (or ``val/``) sub-folders, those are the splits; otherwise a fixed seeded
  10% of the images (at least one) is the ``test`` split and the rest the ``train`` split.

:func:`search_split` cuts a training split into the search's two halves and :func:`subset_of`
draws a ``--subset``; both are seeded, class-stratified samples (:func:`stratified_split`), so
they hold every class in proportion whatever the order of the images (a folder data set is read
class by class).

Any problem with the data raises :class:`DatasetError` (a ``ValueError``), whose message is one
line saying what was looked at, what was wrong and how to get or fix the data: a missing,
truncated or corrupt file (bad pickle, bad gzip stream, wrong idx magic number or a header that
promises more or less data than there is, undecodable image), data of the wrong structure
(shapes, dtypes, label range, MNIST images that are not 28x28, images of mixed sizes or channel
counts), an empty split, a folder data set with fewer than two classes, and a train split whose
images all belong to one class. Nothing else escapes the loaders, whatever the bytes in the
files; sizes written in file headers are never trusted for allocating memory. Downloads go to a
temporary folder inside the target folder and are moved into place only once complete and
verified, so a failed download leaves nothing behind, and a local copy is never changed.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.client
import io
import logging
import math
import os
import pickle
import struct
import tarfile
import tempfile
import urllib.request
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np
import torch

from nasp.errors import DatasetError

__all__ = [
    "DATASETS",
    "DatasetError",
    "ImageDataset",
    "default_data_dir",
    "load_dataset",
    "search_split",
    "stratified_split",
    "subset_of",
]

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
DOWNLOAD_TIMEOUT = 60.0
"""Seconds a download may wait for the server before it fails."""


@dataclass(frozen=True, eq=False, repr=False)
class ImageDataset:
    """A labelled image data set held in memory.

    ``images`` is uint8 ``(N, C, H, W)`` on the CPU, ``labels`` int64 ``(N,)`` in
    ``[0, len(classes))``. ``mean``/``std`` are per channel on the [0, 1] pixel scale. ``flip``
    says whether horizontal flips are a sensible augmentation, ``crop_padding`` is the padding of
    the random-crop augmentation.
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    flip: bool
    crop_padding: int

    def __post_init__(self) -> None:
        images, labels = self.images, self.labels
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} "
                             f"{tuple(images.shape)}")
        if labels.dtype != torch.int64 or labels.shape != images.shape[:1]:
            raise ValueError(f"labels must be int64 ({images.shape[0]},), got {labels.dtype} "
                             f"{tuple(labels.shape)}")
        if not len(self.mean) == len(self.std) == images.shape[1]:
            raise ValueError(f"mean and std need one value per channel ({images.shape[1]})")
        if labels.numel() and (labels.min() < 0 or labels.max() >= len(self.classes)):
            raise ValueError(f"labels must lie in [0, {len(self.classes)})")

    @property
    def in_channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        return (self.images.shape[2], self.images.shape[3])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __repr__(self) -> str:
        return (f"ImageDataset({self.name!r}, {len(self)} images of {self.in_channels}x"
                f"{self.image_size[0]}x{self.image_size[1]}, {self.num_classes} classes)")

    def take(self, indices: torch.Tensor | slice) -> ImageDataset:
        """The same data set restricted to the rows ``indices`` (a slice, index or mask tensor)."""
        return replace(self, images=self.images[indices].contiguous(),
                       labels=self.labels[indices])


def default_data_dir() -> Path:
    """``$NASP_DATA_DIR`` if set, else ``~/.cache/nasp/data``."""
    env = os.environ.get("NASP_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "nasp" / "data"


def load_dataset(name: str, root: str | os.PathLike | None = None, split: str = "train",
                 download: bool = True) -> ImageDataset:
    """Load the ``split`` ("train" or "test") of the data set ``name`` from ``root``.

    ``root=None`` means :func:`default_data_dir`. Data sets that can be downloaded are downloaded
    into ``root`` when missing and ``download`` is true.

    Raises :class:`DatasetError` (one line, naming the file or folder and what to do) for an
    unknown name or split and for any missing, unreadable, corrupt or unsuitable data, including
    a train split holding a single class; no other exception comes out of a damaged file.
    """
    key = name.strip().lower().replace("_", "-")
    if key not in DATASETS:
        raise DatasetError(f"unknown data set {name!r}; known data sets: "
                           f"{', '.join(sorted(DATASETS))}")
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r} for data set {key}; use 'train' or 'test'")
    return DATASETS[key](None if root is None else Path(root).expanduser(), split, download)


def stratified_split(ds: ImageDataset, sizes: Sequence[int], seed: int) -> list[ImageDataset]:
    """Disjoint, seeded, class-stratified samples of ``ds`` with ``sizes`` images each.

    The ``n = sum(sizes)`` images drawn hold ``n * share`` of every class, rounded by largest
    remainders (ties to the lower class index) so that the total is exactly ``n``. The parts are
    cut from them in turn the same way: each part takes its size from what is left of every class
    in proportion, so the halves ``[n // 2, n - n // 2]`` split every class as evenly as possible.
    Which images: per class a random order drawn from a CPU :class:`torch.Generator` seeded with
    ``seed``, read from its start; each part is then shuffled by that generator. The global random
    state is neither used nor changed, so the same ``ds`` and ``seed`` give the same parts in every
    process (every torchrun rank, a resumed run), and every part holds every class in proportion
    whatever the order of the images in ``ds``.

    Raises :class:`DatasetError` when ``n`` exceeds the data set (a ``--subset`` that is too
    large), ``ValueError`` for a negative size.
    """
    if any(size < 0 for size in sizes):
        raise ValueError(f"sizes must not be negative, got {list(sizes)}")
    n = sum(sizes)
    if n > len(ds):
        raise DatasetError(f"--subset {n} is larger than the {ds.name} data set ({len(ds)} "
                           f"training images); use a smaller --subset")
    generator = torch.Generator().manual_seed(seed)
    # every class's images in a random order: a random permutation, stably sorted by class
    shuffled = torch.randperm(len(ds), generator=generator)
    by_class = shuffled[torch.sort(ds.labels[shuffled], stable=True).indices]
    counts = torch.bincount(ds.labels, minlength=ds.num_classes).tolist()
    starts = [sum(counts[:k]) for k in range(len(counts))]
    left = _apportion(counts, n)  # images still to hand out, per class
    parts = []
    for size in sizes:
        take = _apportion(left, size)
        rows = torch.cat([by_class[start:start + count] for start, count in zip(starts, take)])
        parts.append(ds.take(rows[torch.randperm(len(rows), generator=generator)]))
        starts = [start + count for start, count in zip(starts, take)]
        left = [have - count for have, count in zip(left, take)]
    return parts


def subset_of(ds: ImageDataset, subset: int | None, seed: int) -> ImageDataset:
    """``ds`` itself if ``subset`` is None, else its seeded, class-stratified sample of
    ``subset`` images (:func:`stratified_split`)."""
    return ds if subset is None else stratified_split(ds, [subset], seed)[0]


def search_split(ds: ImageDataset, subset: int | None, seed: int,
                 ) -> tuple[ImageDataset, ImageDataset]:
    """The search split: a seeded, class-stratified sample of ``subset`` images (all if None) cut
    into two halves, each holding every class in proportion (:func:`stratified_split`). The
    first half (``subset // 2`` images) trains the weights, the second the architecture.

    The same data set and ``seed`` give the same halves (the sample of ``subset`` images is that
    of :func:`subset_of`). Unlike DARTS, which takes the first and second 25,000 images of
    CIFAR-10 (it works only because CIFAR is already shuffled), the split does not depend on the
    order of the images: a data set read class by class gets every class in both halves.

    Raises :class:`DatasetError` when ``subset`` exceeds the data set, leaves fewer than 2
    images, or draws a single class.
    """
    n = len(ds) if subset is None else subset
    what = f"the {ds.name} data set ({len(ds)} images)"
    if n < 2:
        raise DatasetError(f"the search split needs at least 2 images, one per half, but got "
                           f"{n} from {what}; use --subset 2 or more")
    halves = stratified_split(ds, [n // 2, n - n // 2], seed)
    if torch.cat([half.labels for half in halves]).unique().numel() < 2:
        hint = ("use a data set with at least two classes" if subset is None
                else "use a larger --subset")
        raise DatasetError(f"the {n} images of the search split (a class-stratified sample of "
                           f"{what}) all belong to one class, so the search cannot learn "
                           f"anything; {hint}")
    return halves[0], halves[1]


def _apportion(counts: Sequence[int], total: int) -> list[int]:
    """``total`` (at most ``sum(counts)``) shared out in proportion to ``counts``: each share is
    the floor of its quota ``count * total / sum(counts)``, plus one for the largest remainders
    (ties to the lower index) until the shares sum to ``total``."""
    whole = sum(counts)
    if whole == 0:
        return [0] * len(counts)
    shares = [count * total // whole for count in counts]
    extra = sorted(range(len(counts)), key=lambda k: (-(counts[k] * total % whole), k))
    for k in extra[:total - sum(shares)]:
        shares[k] += 1
    return shares


# --- shared helpers ---------------------------------------------------------------------------


def _resolve_root(root: Path | None) -> Path:
    return default_data_dir() if root is None else Path(root).expanduser()


def _one_line(err: BaseException) -> str:
    """``str(err)`` on one line (errors of other libraries may span several)."""
    return " ".join(str(err).split()) or type(err).__name__


def _check_classes(labels: torch.Tensor, classes: Sequence[str], split: str, where: str,
                   hint: str) -> None:
    """Refuse a train split whose images all belong to one class: nothing can be learned."""
    if split == "train" and labels.numel() and bool((labels == labels[0]).all()):
        raise DatasetError(f"all {labels.numel()} images of the train split in {where} belong to "
                           f"one class ({classes[int(labels[0])]}), so there is nothing to "
                           f"learn. {hint}")


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 images on the [0, 1] scale.

    Computed in float64 over chunks; a constant channel gets std 1/255 instead of 0 so that
    normalising by it stays finite.
    """
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    squares = torch.zeros(c, dtype=torch.float64)
    for chunk in images.split(4096):
        x = chunk.transpose(0, 1).reshape(c, -1).to(torch.float64) / 255
        total += x.sum(1)
        squares += (x * x).sum(1)
    count = max(1, images.numel() // c)
    mean = total / count
    std = (squares / count - mean**2).clamp_min(0).sqrt().clamp_min(1 / 255)
    return tuple(mean.tolist()), tuple(std.tolist())


class _DownloadError(Exception):
    """A download failed; the message says which and why (wrapped into a DatasetError)."""


def _fetch(url: str, out: BinaryIO) -> None:
    """Copy the body of ``url`` into ``out``: the only code that touches the network."""
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response:
        while chunk := response.read(1 << 20):
            out.write(chunk)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _download(url: str, dest: Path, md5: str) -> None:
    """Download ``url`` to ``dest`` (in a temporary folder) and check its md5."""
    log.info("downloading %s", url)
    try:
        with open(dest, "wb") as out:
            _fetch(url, out)
    except (OSError, http.client.HTTPException, ValueError) as err:
        raise _DownloadError(f"downloading {url} failed ({_one_line(err)})") from err
    got = _md5(dest)
    if got != md5:
        raise _DownloadError(f"the file downloaded from {url} has md5 {got}, not the official "
                             f"{md5} (a damaged or changed download)")


def _staging_dir(folder: Path, title: str) -> tempfile.TemporaryDirectory:
    """A temporary folder inside ``folder`` (created if needed) to download and unpack into."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return tempfile.TemporaryDirectory(dir=folder, prefix=".nasp-download-")
    except OSError as err:
        raise DatasetError(f"{title} would be downloaded into {folder}, but that folder cannot "
                           f"be written ({_one_line(err)}); choose another with --data-dir"
                           ) from err


# --- digits -----------------------------------------------------------------------------------

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


# --- CIFAR ------------------------------------------------------------------------------------


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


def _extract(archive: Path, dest: Path, top: str) -> None:
    """Unpack the members of ``archive`` under ``top/`` into ``dest``; refuse unsafe members."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = []
            for member in tar.getmembers():
                parts = PurePosixPath(member.name).parts
                if (PurePosixPath(member.name).is_absolute() or ".." in parts
                        or not (member.isfile() or member.isdir())):
                    raise _DownloadError(f"the downloaded {archive.name} holds an unsafe "
                                         f"entry {member.name!r}, so it was not unpacked")
                if parts and parts[0] == top:
                    members.append(member)
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(dest, members=members, **extra)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise _DownloadError(f"the downloaded {archive.name} could not be unpacked "
                             f"({_one_line(err)})") from err
    if not (dest / top).is_dir():
        raise _DownloadError(f"the downloaded {archive.name} has no {top} folder")


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
    images = torch.from_numpy(np.concatenate(arrays).reshape(-1, 3, 32, 32))
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


# --- MNIST and Fashion-MNIST (idx files) ------------------------------------------------------


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


# --- image folders ----------------------------------------------------------------------------

_FOLDER_SEED = 0
_GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "F"}


def _pillow_image(root: Path):
    try:
        from PIL import Image
    except ImportError:
        raise DatasetError(f"the folder data set ({root}) needs Pillow to read images: "
                           f'pip install "torch-nasp[images]" (or pip install Pillow)') from None
    return Image


def _class_files(folder: Path, extensions: set[str]) -> tuple[tuple[str, ...],
                                                               list[tuple[Path, int]]]:
    """Class names (sorted sub-folder names) and (image file, label) pairs of ``folder``."""
    hint = "A folder data set needs one sub-folder of images per class, at least two classes."
    if not folder.is_dir():
        raise DatasetError(f"image folder {folder} does not exist or is not a folder. {hint}")
    try:
        class_dirs = sorted((p for p in folder.iterdir()
                             if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)
    except OSError as err:
        raise DatasetError(f"image folder {folder} cannot be listed ({_one_line(err)}). "
                           f"{hint}") from err
    if len(class_dirs) < 2:
        raise DatasetError(f"image folder {folder} has {len(class_dirs)} class sub-folder(s). "
                           f"{hint}")
    files = []
    for label, class_dir in enumerate(class_dirs):
        try:
            images = sorted(p for p in class_dir.rglob("*") if p.is_file()
                            and not p.name.startswith(".") and p.suffix.lower() in extensions)
        except OSError as err:
            raise DatasetError(f"class folder {class_dir} cannot be listed "
                               f"({_one_line(err)}). {hint}") from err
        if not images:
            raise DatasetError(f"class folder {class_dir} holds no image files "
                               f"({', '.join(sorted(extensions)[:6])}, ...). {hint}")
        files += [(p, label) for p in images]
    return tuple(p.name for p in class_dirs), files


def _read_images(files: Sequence[tuple[Path, int]], image_module,
                 expected: tuple[tuple[int, ...], Path] | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor, tuple[tuple[int, ...], Path]]:
    """Decode ``files`` into uint8 (N, C, H, W) and labels; all must share one shape, that of
    ``expected`` (shape, file that set it) or else of the first file. Returns it too."""
    arrays = []
    for path, _ in files:
        try:
            with image_module.open(path) as im:
                arr = np.asarray(im.convert("L" if im.mode in _GREY_MODES else "RGB"))
        except Exception as err:  # Pillow raises many types for unreadable files
            raise DatasetError(f"image {path} of the folder data set cannot be read "
                               f"({_one_line(err)}); remove or replace it") from err
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        if expected is None:
            expected = (arr.shape, path)
        elif arr.shape != expected[0]:
            (c, h, w), first = expected
            raise DatasetError(f"image {path} of the folder data set is {arr.shape[2]}x"
                               f"{arr.shape[1]} with {arr.shape[0]} channel(s), but {first} set "
                               f"the expected size {w}x{h} with {c} channel(s); all images must "
                               f"have the same size and colour type, so resize or convert them")
        arrays.append(arr)
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    return torch.from_numpy(np.stack(arrays)), labels, expected


def _load_folder(root: Path | None, split: str, download: bool) -> ImageDataset:
    """One sub-folder per class; ``train/`` + ``test/`` or ``val/`` splits, else a 10% hold-out.

    mean/std come from the train split, so both splits are normalised alike.
    """
    if root is None:
        raise DatasetError("the folder data set needs the folder of images: pass it with "
                           "--data-dir (one sub-folder of images per class)")
    root = Path(root).expanduser()
    image_module = _pillow_image(root)
    extensions = {ext for ext, fmt in image_module.registered_extensions().items()
                  if fmt in image_module.OPEN}
    test_dir = next((root / s for s in ("test", "val") if (root / s).is_dir()), None)
    if (root / "train").is_dir() and test_dir is not None:
        classes, train_files = _class_files(root / "train", extensions)
        test_classes, test_files = _class_files(test_dir, extensions)
        if test_classes != classes:
            raise DatasetError(f"image folders {root / 'train'} and {test_dir} have different "
                               f"class sub-folders ({', '.join(classes)} vs "
                               f"{', '.join(test_classes)}); they must match")
    else:
        classes, files = _class_files(root, extensions)
        order = np.random.RandomState(_FOLDER_SEED).permutation(len(files))
        held = set(order[:max(1, len(files) // 10)].tolist())
        train_files = [f for i, f in enumerate(files) if i not in held]
        test_files = [f for i, f in enumerate(files) if i in held]
    images, labels, expected = _read_images(train_files, image_module)
    mean, std = _channel_stats(images)
    if split == "test":
        images, labels, _ = _read_images(test_files, image_module, expected)
    _check_classes(labels, classes, split, str(root),
                   "Give every class images in the train split (without train/ and test/ "
                   "sub-folders, a seeded 10% of the images, at least one, is held out for "
                   "testing).")
    size = min(images.shape[2:])
    return ImageDataset("folder", images, labels, classes, mean, std, flip=True,
                        crop_padding=max(1, size // 8))


DATASETS: dict[str, Callable[..., ImageDataset]] = {
    "digits": _load_digits,
    "cifar10": functools.partial(_load_cifar, "cifar10"),
    "cifar100": functools.partial(_load_cifar, "cifar100"),
    "mnist": functools.partial(_load_idx, "mnist"),
    "fashion-mnist": functools.partial(_load_idx, "fashion-mnist"),
    "folder": _load_folder,
}
"""Registry: data set name -> loader ``(root: Path | None, split: str, download: bool)``."""
