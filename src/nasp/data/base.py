"""What every data source shares: the in-memory :class:`ImageDataset`, its :class:`DataShape`,
the default data folder, the seeded splits and the small helpers the loaders use.

:func:`search_split` cuts a training split into the search's two halves and :func:`subset_of`
draws a ``--subset``; both are seeded, class-stratified samples (:func:`stratified_split`), so
they hold every class in proportion whatever the order of the images (a folder data set is read
class by class).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch

from nasp.errors import DatasetError

__all__ = [
    "DataShape",
    "ImageDataset",
    "default_data_dir",
    "search_split",
    "stratified_split",
    "subset_of",
]


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


class DataShape(NamedTuple):
    """What the network needs to know of the data: image channels, size (H, W), classes."""

    in_channels: int
    image_size: tuple[int, int]
    num_classes: int

    @classmethod
    def of(cls, ds: ImageDataset) -> DataShape:
        return cls(ds.in_channels, tuple(ds.image_size), ds.num_classes)

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> DataShape:
        """The shape stored in a checkpoint's ``data`` entry."""
        return cls(data["in_channels"], tuple(data["image_size"]), data["num_classes"])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return (self.in_channels, *self.image_size)


def default_data_dir() -> Path:
    """``$NASP_DATA_DIR`` if set, else ``~/.cache/nasp/data``."""
    env = os.environ.get("NASP_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "nasp" / "data"


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

