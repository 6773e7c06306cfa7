"""A user's own data in memory: :class:`TensorData` (inputs and targets of any shape) and its
mini-batches, :class:`TensorBatches`, which a :class:`~nasp.data.batches.BatchStream` reads as
it reads image batches (an endless, resumable stream).

:func:`as_tensor_data` takes what a user has: a pair of tensors ``(x, y)``, a
``torch.utils.data.Dataset`` of ``(x, y)`` items, or a ``DataLoader`` of ``(x, y)`` batches,
read once into memory (whatever the loader does per item, e.g. a random transform, is done once
then; the search draws its own shuffled batches of ``batch_size`` from the tensors). No
normalisation or augmentation is applied: the data is used as given.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from nasp.data.batches import BatchStream
from nasp.errors import DatasetError

__all__ = ["TensorBatches", "TensorData", "as_tensor_data"]


@dataclass(frozen=True, eq=False)
class TensorData:
    """Inputs ``images`` ``(N, ...)`` and targets ``labels`` ``(N, ...)`` on the CPU (named as
    :class:`~nasp.data.base.ImageDataset`'s, so that the run engine records them alike)."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if len(self.images) != len(self.labels):
            raise DatasetError(f"{self.name}: {len(self.images)} inputs but {len(self.labels)} "
                               f"targets; give one target per input")
        if len(self.images) == 0:
            raise DatasetError(f"{self.name} holds no samples")

    def __len__(self) -> int:
        return len(self.images)

    def take(self, rows: torch.Tensor | slice) -> TensorData:
        return TensorData(self.name, self.images[rows], self.labels[rows])


def as_tensor_data(data: Any, name: str) -> TensorData:
    """``data`` (tensors ``(x, y)``, a Dataset or a DataLoader of ``(x, y)``) as a
    :class:`TensorData`; anything else is a :class:`~nasp.errors.DatasetError` naming ``name``
    (the argument, e.g. ``train_data``)."""
    if isinstance(data, TensorData):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(
            isinstance(t, torch.Tensor) for t in data):
        return TensorData(name, data[0].detach().cpu(), data[1].detach().cpu())
    if isinstance(data, DataLoader):
        pairs = [_pair(batch, name) for batch in data]
        if not pairs:
            raise DatasetError(f"{name}: the DataLoader gave no batches")
        return TensorData(name, torch.cat([x for x, _ in pairs]), torch.cat([y for _, y in pairs]))
    if isinstance(data, Dataset):
        try:
            n = len(data)
        except TypeError:
            raise DatasetError(f"{name}: an iterable Dataset has no length; wrap it in a "
                               f"DataLoader") from None
        pairs = [_pair(data[i], name) for i in range(n)]
        if not pairs:
            raise DatasetError(f"{name}: the Dataset is empty")
        return TensorData(name, torch.stack([x for x, _ in pairs]),
                          torch.stack([y for _, y in pairs]))
    raise DatasetError(f"{name} must be a pair of tensors (inputs, targets), a torch Dataset or "
                       f"a DataLoader of (input, target) items, got {type(data).__name__}")


def _pair(item: Any, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not (isinstance(item, (tuple, list)) and len(item) == 2):
        raise DatasetError(f"{name}: every item must be a pair (input, target), got "
                           f"{type(item).__name__}")
    x, y = (t if isinstance(t, torch.Tensor) else torch.as_tensor(t) for t in item)
    return x.detach().cpu(), y.detach().cpu()


class TensorBatches:
    """Mini-batches of a :class:`TensorData` on ``device``: one epoch per iteration, a fresh
    permutation from ``generator`` each epoch with ``shuffle``, the last batch smaller. The
    members a :class:`~nasp.data.batches.BatchStream` reads are those of
    :class:`~nasp.data.batches.Batches`."""

    def __init__(self, ds: TensorData, batch_size: int, *, device: torch.device | str = "cpu",
                 shuffle: bool = True, generator: torch.Generator | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.dataset = ds
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.shuffle = shuffle
        self.generator = generator if generator is not None else torch.Generator()
        self._x = ds.images.to(self.device)
        self._y = ds.labels.to(self.device)

    def __len__(self) -> int:
        return -(-len(self.dataset) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._new_order()
        for i in range(len(self)):
            yield self._batch_at(order, i)

    def forever(self) -> BatchStream:
        """An endless, resumable stream of batches (see :meth:`Batches.forever`)."""
        return BatchStream(self)

    def _new_order(self) -> torch.Tensor:
        n = len(self.dataset)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        return order.to(self.device)

    def _batch_at(self, order: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = order[i * self.batch_size:(i + 1) * self.batch_size]
        return self._x.index_select(0, rows), self._y.index_select(0, rows)
