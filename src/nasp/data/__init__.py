"""Data sets by name as uint8 tensors, and device-resident augmented mini-batches.

One module per source (:mod:`~nasp.data.digits`, :mod:`~nasp.data.cifar`, :mod:`~nasp.data.idx`,
:mod:`~nasp.data.folder`) declares its loaders and the shapes of its data sets;
:mod:`~nasp.data.registry` gathers them by name (:data:`DATASETS`, :data:`DATASET_SHAPES`);
:mod:`~nasp.data.base` holds what they share (:class:`ImageDataset`, :class:`DataShape`, the
seeded splits) and :mod:`~nasp.data.download` the downloads. Text corpora (Penn Treebank):
:mod:`~nasp.data.text` (corpus, batchify) and :mod:`~nasp.data.tokens` (the BPTT window stream).
Of the rest of nasp, this package imports only :mod:`nasp.errors` and :mod:`nasp.runtime`.
"""

from nasp.data.base import (
    DataShape,
    ImageDataset,
    default_data_dir,
    search_split,
    stratified_split,
    subset_of,
)
from nasp.data.batches import Batches, augment_batch
from nasp.data.registry import DATASET_NAMES, DATASET_SHAPES, DATASETS, known_shape, load_dataset
from nasp.data.text import (
    TEXT_DATASETS,
    Corpus,
    batchify,
    fixed_windows,
    is_text_dataset,
    load_corpus,
)
from nasp.data.tokens import BPTT_RULES, TokenStream
from nasp.errors import DatasetError

__all__ = [
    "BPTT_RULES",
    "DATASETS",
    "DATASET_NAMES",
    "DATASET_SHAPES",
    "TEXT_DATASETS",
    "Batches",
    "Corpus",
    "DataShape",
    "DatasetError",
    "ImageDataset",
    "augment_batch",
    "batchify",
    "fixed_windows",
    "is_text_dataset",
    "load_corpus",
    "default_data_dir",
    "known_shape",
    "load_dataset",
    "search_split",
    "stratified_split",
    "subset_of",
    "TokenStream",
]
