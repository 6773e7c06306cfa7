"""Data sets by name as uint8 tensors, and device-resident augmented mini-batches."""

from nasp.data.batches import Batches, augment_batch
from nasp.data.datasets import (
    DATASETS,
    ImageDataset,
    default_data_dir,
    load_dataset,
    search_split,
    stratified_split,
    subset_of,
)
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
