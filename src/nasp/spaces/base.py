"""The SearchSpace protocol: everything strategies, engine, export and pictures may know about a
search space, with the Genotype and Benchmark protocols it speaks in.

A space is a plugin: one folder under ``nasp/spaces/`` holding its architecture shapes and
projection, supernet, genotype type and file formats, child and evaluation networks, presets,
size rules, benchmark look-up (if any) and drawings, and one line in
:mod:`nasp.spaces.registry`. Code outside ``nasp/spaces/`` reaches a space only through the
members below: never by importing a space's modules or naming its classes.

Members marked *class level* are read from the class (the registry holds classes), so they must
not need an instance: they are class attributes, ``classmethod`` or ``staticmethod``. The rest are
called on an instance, built by :func:`nasp.spaces.build_space` with one of the space's
``primitive_sets``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import nn

from nasp.core.budget import CellRule, CostTable

ArchTensors = Mapping[str, torch.Tensor]
"""One architecture matrix ``(edges, ops)`` per cell type."""
Selection = Mapping[str, tuple[int, ...]]
"""One op index per edge per cell type (-1: the edge is dropped)."""
EdgeOps = dict[str, tuple[list[str], dict[int, str]]]
"""Per cell type: the labels (``node<-input``) of all its edges and ``{edge index: op}`` of the
edges a genotype keeps."""


@runtime_checkable
class Genotype(Protocol):
    """A space's searched architecture: immutable, validated data of the space's own type.

    ``space`` (a class attribute) is the registry name of its space; :meth:`to_dict` holds it
    under the key ``"space"``, so every ``genotype.json`` names its space.
    """

    space: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data, with the space named under ``"space"``."""
        ...

    def to_json(self) -> str:
        """:meth:`to_dict` as JSON text."""
        ...

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_json` to ``path`` atomically."""
        ...

    def compact(self) -> str:
        """One short line for logs."""
        ...

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Genotype:
        """Inverse of :meth:`to_dict` (the ``"space"`` key may be left out, as older files
        do); anything invalid is a :class:`~nasp.errors.GenotypeError`."""
        ...

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Genotype:
        """Read a file written by :meth:`save`; any problem is a
        :class:`~nasp.errors.GenotypeError` naming ``path``."""
        ...


@runtime_checkable
class Benchmark(Protocol):
    """A look-up of a genotype's accuracy in a benchmark table, in one column of it."""

    column: str

    def __call__(self, genotype: Genotype) -> float | None:
        """The genotype's accuracy (a fraction), or None when the table lacks it."""
        ...

    def percentile(self, accuracy: float) -> float | None:
        """Percent of the table's cells with an accuracy at most ``accuracy`` in the column."""
        ...


@runtime_checkable
class SearchSpace(Protocol):
    """A cell search space.

    Architecture parameters are one ``(num_edges, len(primitives[t]))`` matrix per cell type
    ``t`` (:meth:`arch_shapes`), shared by all cells of that type.
    """

    # -- what the space is (class level) -------------------------------------------------------
    name: ClassVar[str]
    """The registry name (``--space NAME``); also every genotype's ``space``."""
    description: ClassVar[str]
    """A line for ``--space``'s help: the cell and the network, and what the sizes mean."""
    genotype_type: ClassVar[type[Genotype]]
    """The class of this space's genotypes."""
    primitive_sets: ClassVar[Mapping[str, Mapping[str, tuple[str, ...]]]]
    """Candidate op sets by name (``--primitives``): per cell type, its ops. Names are unique
    over all spaces."""
    default_primitives: ClassVar[str]
    """The set searched when none is given."""
    presets: ClassVar[Mapping[str, Mapping[str, Any]]]
    """Per search preset name (:data:`nasp.config.PRESETS`), this space's own option values
    (network sizes, optimiser settings of the space's paper); they replace the preset's shared
    values."""
    evaluation_sizes: ClassVar[Mapping[str, int]]
    """``layers`` and ``channels`` of the evaluation network of the space's paper (the sizes
    ``nasp info`` measures a genotype at)."""
    builtin_genotypes: ClassVar[Mapping[str, Genotype]]
    """Published cells by name (``nasp train NAME``); names are unique over all spaces."""
    genotype_text_help: ClassVar[str]
    """How this space's genotypes are written as text, for help and error messages."""
    has_benchmark: ClassVar[bool]
    """Whether :meth:`open_benchmark` can look genotypes up (``--benchmark``)."""
    benchmark_about: ClassVar[str]
    """What ``--benchmark PATH`` may name for this space ("" without a benchmark)."""

    budget_metrics: ClassVar[tuple[str, ...]]
    """The costs a hard budget (``--max-params``, ``--max-flops``, ``--max-latency``) can bound
    in this space: some of ``params``, ``flops``, ``latency``; :attr:`budget_note` says why
    the others cannot be."""
    budget_note: ClassVar[str]
    """Why a budget metric is not available here ("" when all are)."""

    # -- what a space instance is --------------------------------------------------------------
    cell_types: tuple[str, ...]
    primitive_set: str
    """The name of the op set this instance searches."""
    primitives: Mapping[str, tuple[str, ...]]
    """Per cell type, its candidate ops (the rows of :attr:`primitive_sets`)."""

    # -- sizes (class level) -------------------------------------------------------------------
    @classmethod
    def check_sizes(cls, layers: int, channels: int) -> None:
        """Raise ``ValueError`` naming ``--layers`` or ``--channels`` unless the space's networks
        can be built with these sizes."""
        ...

    @classmethod
    def describe_sizes(cls, layers: int, channels: int) -> str:
        """The sizes in the space's words, e.g. ``8 cells, C 16``."""
        ...

    # -- architecture parameters ---------------------------------------------------------------
    def arch_shapes(self) -> dict[str, tuple[int, int]]:
        """Shape of the architecture matrix of every cell type."""
        ...

    def project(self, A: ArchTensors) -> dict[str, torch.Tensor]:
        """prox_C1 of every cell type's matrix: one-hot rows on kept edges, zero rows elsewhere."""
        ...

    def derive(self, A: ArchTensors) -> Genotype:
        """The genotype the search returns from its architecture parameters."""
        ...

    def genotype_of(self, selection: Selection) -> Genotype:
        """The genotype of a discrete selection (one op index per edge, -1 = dropped)."""
        ...

    def selection_of(self, genotype: Genotype) -> dict[str, tuple[int, ...]]:
        """The per-edge selection that runs ``genotype`` on the supernet; ``ValueError`` when
        the genotype does not fit this space and op set."""
        ...

    def random_selection(self, generator: torch.Generator) -> dict[str, tuple[int, ...]]:
        """A selection drawn uniformly from the space's valid cells, every random number from
        ``generator`` (random search, warm-up paths)."""
        ...

    def op_costs(self, cell_type: str) -> torch.Tensor:
        """Per op of ``cell_type``, its parameter count normalised to sum to 1 (the b_k of NASP)."""
        ...

    def edge_labels(self, cell_type: str) -> list[str]:
        """``node<-input`` label of every row of ``cell_type``'s architecture matrix."""
        ...

    # -- hard budgets (nasp.core.budget) --------------------------------------------------------
    def budget_rules(self) -> dict[str, CellRule]:
        """Per cell type, what ``C1`` is (nodes of the edges, edges kept per node, op tie order,
        the ops :meth:`derive` may choose), for the constrained projection and derivation."""
        ...

    def cost_table(self, metric: str, input_shape: Sequence[int], num_classes: int,
                   layers: int | None = None, channels: int | None = None,
                   latency_table: str | os.PathLike[str] | None = None) -> CostTable:
        """The cost (``params``, ``flops``, or ``latency`` from ``latency_table``, a ``nasp
        profile`` file) of the evaluation network at :attr:`evaluation_sizes` (or ``layers``,
        ``channels``) for inputs of ``input_shape`` and ``num_classes`` classes: a constant
        plus one ``(edges, ops)`` table per cell type, exactly additive over the chosen ops
        (:mod:`nasp.spaces.costs`)."""
        ...

    def edge_sites(self, input_shape: Sequence[int], num_classes: int, layers: int | None = None,
                   channels: int | None = None) -> Any:
        """The evaluation network's edges as :mod:`nasp.spaces.costs` measures them (an
        ``EdgeSites``: the all-``none`` network, and channels, stride and input shape of every
        edge of every cell)."""
        ...

    # -- networks ------------------------------------------------------------------------------
    def build_supernet(self, in_channels: int, num_classes: int, layers: int,
                       channels: int) -> nn.Module:
        """The supernet, whose ``forward(x, plans)`` takes one CellPlan per cell type."""
        ...

    def build_child(self, genotype: Genotype, in_channels: int, num_classes: int, layers: int,
                    channels: int, search_ops: bool = False) -> nn.Module:
        """The discrete network of ``genotype`` (a plain ``nn.Module``: images to logits);
        ``search_ops=True`` builds its ops as the supernet's, to take its weights. The genotype
        must fit this instance's op set."""
        ...

    def extract_child(self, supernet: nn.Module, genotype: Genotype) -> nn.Module:
        """The child network of ``genotype`` holding a copy of the supernet's weights; its
        forward pass equals the supernet's at the discrete plans of ``genotype``."""
        ...

    def build_evaluation_network(self, genotype: Genotype, in_channels: int, num_classes: int,
                                 layers: int, channels: int, *, auxiliary: bool = False,
                                 imagenet: bool = False) -> nn.Module:
        """The train-from-scratch network of ``genotype`` (any op, whatever this instance's op
        set). ``auxiliary`` and ``imagenet`` ask for an auxiliary head and an ImageNet stem; a
        space whose network has none ignores them."""
        ...

    # -- genotype formats (class level) --------------------------------------------------------
    @classmethod
    def claims_genotype_dict(cls, data: Any) -> bool:
        """Whether ``data``, a parsed genotype file without a ``"space"`` key (as written before
        files named their space), is in this space's format."""
        ...

    @classmethod
    def parse_genotype(cls, text: str) -> Genotype | None:
        """The genotype written as ``text`` in this space's text format, None when ``text`` is
        not in that format; ``GenotypeError`` when it is but is invalid."""
        ...

    # -- benchmark -----------------------------------------------------------------------------
    def open_benchmark(self, path: str | os.PathLike[str], column: str | None,
                       dataset: str) -> Benchmark:
        """The look-up of ``path`` in ``column`` (None: the column of ``dataset``); every problem
        is a :class:`~nasp.errors.BenchmarkError` raised here. Only when :attr:`has_benchmark`."""
        ...

    # -- pictures (class level) ----------------------------------------------------------------
    @classmethod
    def picture_cells(cls, genotype: Genotype) -> dict[str, str]:
        """The cells to draw: ``{cell: file stem}``, e.g. ``{"normal": "cell_normal"}``."""
        ...

    @classmethod
    def cell_dot(cls, genotype: Genotype, cell: str) -> str:
        """Graphviz source of one cell of ``genotype``."""
        ...

    @classmethod
    def draw_cell(cls, genotype: Genotype, cell: str, path: Path) -> None:
        """The :meth:`cell_dot` picture drawn with matplotlib into the PNG ``path``."""
        ...

    @classmethod
    def genotype_edges(cls, genotype: Genotype) -> EdgeOps:
        """Per cell type, the labels of all edges and the op of every edge ``genotype`` keeps."""
        ...
