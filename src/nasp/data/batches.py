"""Mini-batches that live on the compute device, augmented there with vectorised tensor ops.

The uint8 images of an :class:`~nasp.data.base.ImageDataset` are copied to the device once.
Each batch is gathered there, converted to float, normalised with the data set's mean/std and,
if asked, augmented as in the DARTS code: random crop with black padding, horizontal flip,
cutout. All randomness comes from one CPU ``torch.Generator`` as small index tensors that are then
moved to the device, so one seed gives the same batches on every device.

:meth:`Batches.forever` gives a :class:`BatchStream`, an endless iterator whose position can be
saved and restored, so that a run stopped in the middle of an epoch continues with exactly the
batches it would have had.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from nasp.data.base import ImageDataset

__all__ = ["BatchStream", "Batches", "augment_batch"]


def augment_batch(x: torch.Tensor, *, padding: int, flip: bool, cutout: int,
                  generator: torch.Generator,
                  pad_value: float | torch.Tensor = 0.0,
                  part_of: tuple[int, int] | None = None) -> torch.Tensor:
    """Randomly augment a float batch ``x`` of shape (B, C, H, W); returns a new tensor.

    In order, each image independently:

    1. random crop (if ``padding > 0``): pad by ``padding`` pixels of ``pad_value`` (a scalar or a
       tensor broadcasting to (1, C, 1, 1)) and crop H x W back at an offset uniform in
       ``[0, 2 * padding]`` on each axis, i.e. shift the image by -padding..padding pixels;
    2. horizontal flip with probability 1/2 (if ``flip``);
    3. cutout (if ``cutout > 0``): set to 0 the ``cutout`` x ``cutout`` square whose centre
       (``cutout // 2`` from its top-left corner) is uniform over the pixels, clipped at the
       borders (DeVries & Taylor, 2017; applied to the normalised image as in DARTS).

    Random numbers are drawn from the CPU ``generator`` in this order: crop rows, crop columns,
    flips, cutout rows, cutout columns. With ``part_of=(offset, total)``, ``x`` holds the images
    ``offset .. offset + B - 1`` of a batch of ``total``: the numbers are drawn for all ``total``
    and those of ``x``'s rows used, so the parts of a batch are augmented as the whole would be.
    """
    b, _, h, w = x.shape
    offset, total = part_of if part_of is not None else (0, b)

    def draw(high: int) -> torch.Tensor:
        return torch.randint(high, (total,), generator=generator)[offset:offset + b].to(x.device)

    if padding > 0:
        x = _shift(x, draw(2 * padding + 1) - padding, draw(2 * padding + 1) - padding, pad_value)
    if flip:
        x = torch.where(draw(2).bool().view(b, 1, 1, 1), x.flip(3), x)
    if cutout > 0:
        x = _cutout(x, draw(h), draw(w), cutout)
    return x


def _shift(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor,
           fill: float | torch.Tensor) -> torch.Tensor:
    """``out[b, :, i, j] = x[b, :, i + dy[b], j + dx[b]]``, or ``fill`` where that is outside."""
    b, c, h, w = x.shape
    rows = torch.arange(h, device=x.device) + dy[:, None]
    cols = torch.arange(w, device=x.device) + dx[:, None]
    out = x.gather(2, rows.clamp(0, h - 1)[:, None, :, None].expand(b, c, h, w))
    out = out.gather(3, cols.clamp(0, w - 1)[:, None, None, :].expand(b, c, h, w))
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    return torch.where(inside[:, None], out, fill)


def _cutout(x: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor, size: int) -> torch.Tensor:
    """Zero the ``size`` x ``size`` square at top-left ``(cy, cx) - size // 2`` of each image."""
    h, w = x.shape[-2:]
    top, left = (cy - size // 2)[:, None], (cx - size // 2)[:, None]
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    in_rows = (rows >= top) & (rows < top + size)
    in_cols = (cols >= left) & (cols < left + size)
    return x.masked_fill((in_rows[:, :, None] & in_cols[:, None, :])[:, None], 0.0)


class Batches:
    """Mini-batches of one :class:`ImageDataset`, resident on ``device``.

    Iterating gives one epoch of ``(x, y)``: ``x`` float32 (B, C, H, W) normalised with the data
    set's mean/std, ``y`` int64 (B,), both on ``device``. With ``shuffle`` the order is a fresh
    permutation each epoch; the last batch is smaller unless ``drop_last``. With ``augment`` each
    batch goes through :func:`augment_batch` with the data set's ``crop_padding`` and ``flip``
    and this object's ``cutout`` (cutout applies only when ``augment``); the crop pads with black,
    i.e. pixel value 0 before normalisation, and cutout writes 0 after it, as in DARTS.

    All randomness is drawn from ``self.generator`` (a CPU generator; by default one seeded from
    PyTorch's global random state), so saving and restoring its state reproduces the stream.

    ``shard=(rank, world)`` (data-parallel runs, :mod:`nasp.runtime.distributed`): ``batch_size``
    is the global batch, a multiple of ``world``; each batch is drawn and augmented as without
    ``shard`` and this object keeps rows ``rank * b / world .. (rank + 1) * b / world - 1`` of
    it. A final partial batch is cut to a multiple of ``world`` rows, and skipped if it has fewer
    than ``world``; with the same generator seed, the shards of all ranks make up the batches of
    a single process.
    """

    def __init__(self, ds: ImageDataset, batch_size: int, *, device: torch.device | str = "cpu",
                 shuffle: bool = True, augment: bool = False, cutout: int = 0,
                 drop_last: bool = False, generator: torch.Generator | None = None,
                 channels_last: bool = False, shard: tuple[int, int] | None = None) -> None:
        if shard is not None and not (0 <= shard[0] < shard[1] and batch_size % shard[1] == 0):
            raise ValueError(f"shard must be (rank, world) with 0 <= rank < world and world "
                             f"dividing batch_size {batch_size}, got {shard}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if cutout < 0:
            raise ValueError(f"cutout must be 0 (off) or a size in pixels, got {cutout}")
        if len(ds) == 0:
            raise ValueError(f"data set {ds.name} has no images to make batches of")
        if generator is None:
            generator = torch.Generator()
            generator.manual_seed(int(torch.empty((), dtype=torch.int64).random_()))
        if generator.device.type != "cpu":
            raise ValueError(f"generator must be a CPU generator, got one on {generator.device}")
        self.dataset = ds
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.shuffle = shuffle
        self.augment = augment
        self.cutout = cutout
        self.drop_last = drop_last
        self.generator = generator
        self.channels_last = channels_last
        self.shard = shard
        self._images = ds.images.to(self.device)
        self._labels = ds.labels.to(self.device)
        self._mean, self._std = (torch.tensor(v, dtype=torch.float32, device=self.device)
                                 .view(1, -1, 1, 1) for v in (ds.mean, ds.std))
        self._black = -self._mean / self._std

    def __len__(self) -> int:
        """Batches per epoch."""
        full, rest = divmod(len(self.dataset), self.batch_size)
        world = self.shard[1] if self.shard is not None else 1
        return full + (0 if self.drop_last or rest < world else 1)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._new_order()
        for i in range(len(self)):
            yield self._batch_at(order, i)

    def forever(self) -> BatchStream:
        """One persistent iterator going through epoch after epoch, reshuffling each time; its
        position can be saved and restored (:class:`BatchStream`)."""
        return BatchStream(self)

    def _new_order(self) -> torch.Tensor:
        """The order of one epoch on the device: a fresh permutation with ``shuffle``."""
        n = len(self.dataset)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        return order.to(self.device)

    def _batch_at(self, order: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._batch(order[i * self.batch_size:(i + 1) * self.batch_size])

    def _batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        total, offset = len(rows), 0
        if self.shard is not None:  # this rank's slice of the global batch (see distributed)
            rank, world = self.shard
            kept = total - total % world
            offset = rank * kept // world
            rows = rows[offset:(rank + 1) * kept // world]
        x = self._images.index_select(0, rows).float().div_(255).sub_(self._mean).div_(self._std)
        if self.augment:
            x = augment_batch(x, padding=self.dataset.crop_padding, flip=self.dataset.flip,
                              cutout=self.cutout, generator=self.generator,
                              pad_value=self._black, part_of=(offset, total))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, self._labels.index_select(0, rows)


class BatchStream:
    """An endless iterator over the batches of a :class:`Batches`, epoch after epoch, that can be
    saved and restored in the middle of an epoch.

    Each epoch starts when its first batch is asked for, with a fresh order (a permutation drawn
    from ``batches.generator`` with ``shuffle``); then each batch draws its augmentation numbers
    from the same generator. These are the draws, in the same order, of iterating the
    :class:`Batches` epoch after epoch, so a stream gives exactly the batches of ``for epoch: for
    batch in batches``.

    :meth:`state_dict` holds the current epoch's order (on the CPU) and how many of its batches
    were given out. The generator's state is *not* part of it, since several streams may share
    one generator: save ``batches.generator.get_state()`` at the same moment. Restoring both
    (:meth:`load_state_dict` and ``generator.set_state``) continues the stream exactly.
    """

    def __init__(self, batches: Batches):
        if len(batches) == 0:
            raise ValueError(f"no batches: drop_last with batch_size {batches.batch_size} larger "
                             f"than the {len(batches.dataset)} images of {batches.dataset.name}")
        self.batches = batches
        self._order: torch.Tensor | None = None
        self._position = 0

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._order is None or self._position >= len(self.batches):
            self._order = self.batches._new_order()
            self._position = 0
        self._position += 1
        return self.batches._batch_at(self._order, self._position - 1)

    @property
    def position(self) -> int:
        """Batches of the current epoch given out so far (0 before the first epoch)."""
        return self._position

    def state_dict(self) -> dict[str, Any]:
        """``{"order": CPU int64 tensor or None, "position": int}``: one device-to-host copy."""
        order = None if self._order is None else self._order.cpu()
        return {"order": order, "position": self._position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict`; ValueError if it does not fit these batches."""
        order, position = state["order"], state["position"]
        n = len(self.batches.dataset)
        if order is not None and (not isinstance(order, torch.Tensor) or order.shape != (n,)
                                  or order.dtype != torch.int64):
            raise ValueError(f"the saved batch order is not an order of the {n} images of "
                             f"{self.batches.dataset.name}")
        if (not isinstance(position, int) or not 0 <= position <= len(self.batches)
                or (order is None and position != 0)):
            raise ValueError(f"the saved batch position {position!r} is not one of the "
                             f"{len(self.batches)} batches of an epoch")
        self._order = None if order is None else order.to(self.batches.device)
        self._position = position
