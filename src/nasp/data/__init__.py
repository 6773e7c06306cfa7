"""Data sets by name as uint8 tensors, and device-resident augmented mini-batches.

One module per source (:mod:`~nasp.data.digits`, :mod:`~nasp.data.cifar`, :mod:`~nasp.data.idx`,
:mod:`~nasp.data.folder`) declares its loaders; :mod:`~nasp.data.registry` gathers them by name;
:mod:`~nasp.data.base` holds what they share (:class:`ImageDataset`, the seeded splits) and
:mod:`~nasp.data.download` the downloads.
Of the rest of nasp, this package imports only :mod:`nasp.errors` and :mod:`nasp.runtime`.
"""

from nasp.data.base import (
    ImageDataset,
    default_data_dir,
    search_split,
    stratified_split,
    subset_of,
)
from nasp.data.batches import Batches, augment_batch
from nasp.data.registry import DATASETS, load_dataset
from nasp.errors import DatasetError

__all__ = [
    "DATASETS",
    "Batches",
    "DatasetError",
    "ImageDataset",
    "augment_batch",
    "default_data_dir",
    "load_dataset",
    "search_split",
    "stratified_split",
    "subset_of",
]
