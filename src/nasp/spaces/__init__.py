"""Search spaces: one folder per space, known by name through :mod:`nasp.spaces.registry`.

Outside this package a space is reached only through the :class:`SearchSpace` protocol
(:mod:`nasp.spaces.base`), the registry and the space-independent helpers here: genotypes of any
space (:mod:`nasp.spaces.genotypes`) and benchmark records (:mod:`nasp.spaces.benchmark`).
"""

from __future__ import annotations

from nasp.spaces.base import ArchTensors, Benchmark, Genotype, SearchSpace, Selection
from nasp.spaces.benchmark import benchmark_note, benchmark_record, open_benchmark
from nasp.spaces.darts_cnn.child import ChildNetwork
from nasp.spaces.darts_cnn.space import DartsCNNSpace
from nasp.spaces.darts_cnn.supernet import Supernet
from nasp.spaces.darts_rnn import (
    DartsRNNSpace,
    RecurrentDropouts,
    RecurrentGenotype,
    RecurrentNetwork,
    RecurrentSupernet,
)
from nasp.spaces.genotypes import (
    GENOTYPE_FILE,
    builtin_genotypes,
    genotype_from_dict,
    is_genotype,
    load_genotype,
    resolve_genotype,
)
from nasp.spaces.nb201.space import NB201ChildNetwork, NB201Space, NB201Supernet
from nasp.spaces.registry import (
    DEFAULT_SPACE,
    MODEL_SPACES,
    PRIMITIVE_SETS,
    SPACES,
    benchmark_help,
    build_space,
    described_space,
    primitive_sets_help,
    primitives_help,
    space_help,
    space_of,
)
from nasp.spaces.user_model import ModuleSpace as _ModuleSpace


def model_space(model, example=None) -> SearchSpace:
    """The search space of a user's model with ``nasp.nn`` choices (one architecture row per
    label; :mod:`nasp.spaces.user_model`), checked by running ``model`` on ``example`` once
    when given. Not in the ``--space`` registry: it needs the model."""
    return _ModuleSpace(model, example)


__all__ = [
    "DEFAULT_SPACE",
    "GENOTYPE_FILE",
    "MODEL_SPACES",
    "PRIMITIVE_SETS",
    "SPACES",
    "ArchTensors",
    "Benchmark",
    "ChildNetwork",
    "DartsCNNSpace",
    "DartsRNNSpace",
    "Genotype",
    "NB201ChildNetwork",
    "NB201Space",
    "NB201Supernet",
    "RecurrentDropouts",
    "RecurrentGenotype",
    "RecurrentNetwork",
    "RecurrentSupernet",
    "SearchSpace",
    "Selection",
    "Supernet",
    "benchmark_help",
    "benchmark_note",
    "benchmark_record",
    "build_space",
    "builtin_genotypes",
    "described_space",
    "genotype_from_dict",
    "is_genotype",
    "load_genotype",
    "model_space",
    "open_benchmark",
    "primitive_sets_help",
    "primitives_help",
    "resolve_genotype",
    "space_help",
    "space_of",
]
