"""The DARTS convolutional cell space (Liu et al., 2019), as NASP searches it.

A cell has two inputs (the outputs of the two previous cells, states 0 and 1), ``steps`` (4)
intermediate nodes and outputs the channel concatenation of the intermediate nodes. Node ``i``
(state ``i + 2``) sums one edge from every earlier state, so the cell has
``2 + 3 + 4 + 5 = 14`` edges, numbered node by node: rows 0-1 enter node 0, 2-4 node 1, 5-8 node 2
and 9-13 node 3. After derivation each node keeps 2 incoming edges.

The network: a 3x3 convolution stem to ``3 C`` channels, ``layers`` cells of which those at
``layers // 3`` and ``2 * layers // 3`` are reduction cells (stride 2 on the edges leaving the cell
inputs, channels doubled), global average pooling and a linear classifier. All normal cells share
one architecture matrix and all reduction cells another.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from nasp.core.budget import CellRule
from nasp.core.ops import op_parameter_count
from nasp.core.prox import prox_c1, tie_order
from nasp.errors import BenchmarkError
from nasp.spaces.base import ArchTensors, Benchmark, EdgeOps, Selection
from nasp.spaces.costs import EdgeSite, EdgeSiteCosts, EdgeSites
from nasp.spaces.darts_cnn import drawing
from nasp.spaces.darts_cnn.child import ChildNetwork
from nasp.spaces.darts_cnn.genotype import BUILTIN_GENOTYPES, SPACE, Genotype
from nasp.spaces.darts_cnn.network_parts import check_size
from nasp.spaces.darts_cnn.supernet import Supernet

__all__ = ["PRIMITIVE_SETS", "DartsCNNSpace"]

CELL_TYPES = ("normal", "reduce")

_DARTS = (
    "none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
    "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5",
)

#: The candidate op sets of the space by name: per cell type, its ops.
PRIMITIVE_SETS: dict[str, dict[str, tuple[str, ...]]] = {
    "darts": {"normal": _DARTS, "reduce": _DARTS},
    "darts-7": {"normal": _DARTS[1:], "reduce": _DARTS[1:]},
    "nasp-12": {
        "normal": ("skip_connect", "conv_3x1_1x3", "dil_conv_3x3", "conv_1x1", "conv_3x3",
                   "sep_conv_3x3", "sep_conv_5x5", "sep_conv_7x7"),
        "reduce": ("skip_connect", "avg_pool_3x3", "max_pool_3x3", "max_pool_5x5", "max_pool_7x7"),
    },
}


def _edge_offsets(steps: int) -> list[int]:
    """Index of the first edge entering each node."""
    offsets, e = [], 0
    for i in range(steps):
        offsets.append(e)
        e += i + 2
    return offsets


class DartsCNNSpace(EdgeSiteCosts):
    """The DARTS CNN cell space with a named primitive set (``darts``, ``darts-7``, ``nasp-12``).

    Implements :class:`~nasp.spaces.base.SearchSpace`.
    """

    name = SPACE
    description = ("the DARTS cell (--layers = cells, --channels = C; normal cells and two "
                   "reduction cells)")
    genotype_type = Genotype
    primitive_sets = PRIMITIVE_SETS
    default_primitives = "darts-7"
    # Its values of the search presets: the sizes of NASP's and DARTS's search on CIFAR-10 (8
    # cells, C 16: the NASP paper, Yao et al. 2020, and DARTS, Liu et al. 2019); the optimisers
    # are SearchConfig's defaults, the DARTS code's.
    presets: Mapping[str, Mapping[str, Any]] = {
        "tiny": dict(layers=3, channels=4),
        "paper": dict(layers=8, channels=16),
        "faithful": dict(layers=8, channels=16),
    }
    evaluation_sizes: Mapping[str, int] = {"layers": 20, "channels": 36}  # DARTS/NASP on CIFAR
    builtin_genotypes = BUILTIN_GENOTYPES
    genotype_text_help = "DARTS genotype text like Genotype(normal=[('sep_conv_3x3', 0), ...], ...)"
    budget_metrics = ("params", "flops", "latency")
    budget_note = ""
    has_benchmark = False
    benchmark_about = ""
    cell_types = CELL_TYPES

    def __init__(self, primitives: str = "darts-7", steps: int = 4, keep: int = 2):
        if primitives not in PRIMITIVE_SETS:
            raise ValueError(f"--space {self.name} has the op sets {', '.join(PRIMITIVE_SETS)}: "
                             f"--primitives must be one of them, got {primitives!r}")
        self.primitive_set = primitives
        self.primitives = dict(PRIMITIVE_SETS[primitives])
        self.steps = steps
        self.keep = keep
        self.offsets = _edge_offsets(steps)
        self.num_edges = sum(i + 2 for i in range(steps))
        self.edge_node = torch.tensor([i for i in range(steps) for _ in range(i + 2)])
        # none loses ties in the projection (nasp.core.prox.tie_order): A = 0.5 is not a dead point
        self.tie_order = {t: tie_order(self.primitives[t]) for t in CELL_TYPES}

    # -- sizes --------------------------------------------------------------------------------
    @classmethod
    def check_sizes(cls, layers: int, channels: int) -> None:
        check_size(layers, channels)

    @classmethod
    def describe_sizes(cls, layers: int, channels: int) -> str:
        return f"{layers} cells, C {channels}"

    def arch_shapes(self) -> dict[str, tuple[int, int]]:
        return {t: (self.num_edges, len(self.primitives[t])) for t in CELL_TYPES}

    def project(self, A: ArchTensors) -> dict[str, torch.Tensor]:
        return {t: prox_c1(A[t], self.edge_node.to(A[t].device), self.keep, self.tie_order[t])
                for t in CELL_TYPES}

    def build_supernet(self, in_channels: int, num_classes: int, layers: int,
                       channels: int) -> Supernet:
        return Supernet(in_channels, num_classes, layers, channels, self.primitives, self.steps)

    def build_child(self, genotype: Genotype, in_channels: int, num_classes: int, layers: int,
                    channels: int, search_ops: bool = False) -> ChildNetwork:
        self.selection_of(genotype)  # checks the genotype fits this space
        return ChildNetwork(genotype, in_channels, num_classes, layers, channels, search_ops)

    def build_evaluation_network(self, genotype: Genotype, in_channels: int, num_classes: int,
                                 layers: int, channels: int, *, auxiliary: bool = False,
                                 imagenet: bool = False) -> ChildNetwork:
        """The DARTS train-from-scratch network (``NetworkCIFAR``, or ``NetworkImageNet`` with
        ``imagenet``) of ``genotype``, any ops; see :class:`ChildNetwork`."""
        return ChildNetwork(genotype, in_channels, num_classes, layers, channels,
                            auxiliary=auxiliary, imagenet=imagenet)

    def extract_child(self, supernet: Supernet, genotype: Genotype) -> ChildNetwork:
        """The child network of ``genotype`` holding a copy of the supernet's weights.

        Its forward pass equals ``supernet(x, plans)`` with the discrete plans of ``genotype``.
        """
        first = supernet.stem[0]
        layers = len(supernet.cells)
        channels = supernet.cells[0].preprocess1[1].out_channels
        child = ChildNetwork(genotype, first.in_channels, supernet.classifier.out_features,
                             layers, channels, search_ops=True,
                             stem_multiplier=first.out_channels // channels
                             ).to(first.weight.device, first.weight.dtype)
        source = supernet.state_dict()
        state = {name: value for name, value in source.items() if ".edges." not in name}
        selection = self.selection_of(genotype)
        for c, cell in enumerate(child.cells):
            cell_type = "reduce" if cell.reduction else "normal"
            pairs = genotype.reduce if cell.reduction else genotype.normal
            for m, (_, j) in enumerate(pairs):
                e = self.offsets[m // 2] + j
                k = selection[cell_type][e]
                prefix = f"cells.{c}.edges.{e}.ops.{k}."
                for name, value in source.items():
                    if name.startswith(prefix):
                        state[f"cells.{c}.ops.{m}." + name[len(prefix):]] = value
        child.load_state_dict(state)
        return child

    def derive(self, A: ArchTensors) -> Genotype:
        """DARTS/NASP derivation on ``W = softmax(A)`` per row, ``none`` excluded.

        Per node, the 2 incoming edges with the largest ``max_k W[e, k]`` (ties: lowest edge
        index), listed strongest first; on each, the op ``argmax_k W[e, k]`` (ties: lowest op).
        """
        cells = {}
        for t in CELL_TYPES:
            names = self.primitives[t]
            W = torch.softmax(A[t].detach().double().cpu(), dim=-1)
            usable = torch.tensor([name != "none" for name in names])
            W = W.masked_fill(~usable, float("-inf"))
            strength, best = W.max(dim=1)
            pairs = []
            for i, start in enumerate(self.offsets):
                inputs = sorted(range(i + 2), key=lambda j, s=start: -strength[s + j].item())
                for j in inputs[: self.keep]:
                    pairs.append((names[best[start + j].item()], j))
            cells[t] = pairs
        concat = list(range(2, self.steps + 2))
        return Genotype(normal=cells["normal"], normal_concat=concat,
                        reduce=cells["reduce"], reduce_concat=concat)

    def genotype_of(self, selection: Selection) -> Genotype:
        cells = {}
        for t in CELL_TYPES:
            names = self.primitives[t]
            pairs = []
            for i, start in enumerate(self.offsets):
                kept = [(names[selection[t][start + j]], j)
                        for j in range(i + 2) if selection[t][start + j] >= 0]
                if len(kept) != self.keep:
                    raise ValueError(f"{t} cell node {i + 2} has {len(kept)} selected edges, "
                                     f"expected {self.keep}")
                pairs.extend(kept)
            cells[t] = pairs
        concat = list(range(2, self.steps + 2))
        return Genotype(normal=cells["normal"], normal_concat=concat,
                        reduce=cells["reduce"], reduce_concat=concat)

    def selection_of(self, genotype: Genotype) -> dict[str, tuple[int, ...]]:
        if genotype.steps != self.steps:
            raise ValueError(f"the genotype has {genotype.steps} nodes per cell; this space has "
                             f"{self.steps}")
        out = {}
        for t, pairs in (("normal", genotype.normal), ("reduce", genotype.reduce)):
            names = self.primitives[t]
            sel = [-1] * self.num_edges
            for m, (name, j) in enumerate(pairs):
                if name not in names:
                    raise ValueError(
                        f"the genotype's {t} cell uses {name!r}, which is not in the "
                        f"{self.primitive_set!r} primitive set ({', '.join(names)}); "
                        f"choose a set that has it with --primitives")
                e = self.offsets[m // 2] + j
                if sel[e] >= 0:
                    raise ValueError(f"the genotype's {t} cell node {m // 2 + 2} uses input {j} "
                                     f"twice, which one supernet edge cannot represent")
                sel[e] = names.index(name)
            out[t] = tuple(sel)
        return out

    def random_selection(self, generator: torch.Generator) -> dict[str, tuple[int, ...]]:
        """A selection drawn uniformly from the valid cells of this space (random search).

        Per cell type and node, ``keep`` distinct incoming edges uniformly among the node's
        ``i + 2`` inputs, and on each kept edge one op uniformly among the primitives other than
        ``none`` (derivation never picks ``none`` either); every other edge is -1 (dropped).
        All random numbers come from ``generator``, cell type by cell type, node by node.
        """
        out = {}
        for t in CELL_TYPES:
            usable = [k for k, name in enumerate(self.primitives[t]) if name != "none"]
            sel = [-1] * self.num_edges
            for i, start in enumerate(self.offsets):
                inputs = torch.randperm(i + 2, generator=generator)[: self.keep].tolist()
                ops = torch.randint(len(usable), (len(inputs),), generator=generator).tolist()
                for j, k in zip(inputs, ops):
                    sel[start + j] = usable[k]
            out[t] = tuple(sel)
        return out

    def op_costs(self, cell_type: str) -> torch.Tensor:
        counts = torch.tensor(
            [float(op_parameter_count(n, 16)) for n in self.primitives[cell_type]])
        total = counts.sum()
        return counts / total if total > 0 else counts

    def edge_labels(self, cell_type: str) -> list[str]:
        return drawing.edge_labels(self.steps)

    # -- hard budgets (nasp.core.budget) ------------------------------------------------------
    def budget_rules(self) -> dict[str, CellRule]:
        """``C1``: ``keep`` edges per node, ``none`` last in ties; ``derive`` never picks
        ``none``."""
        return {t: CellRule(tuple(self.edge_node.tolist()), self.keep,
                            tuple(self.tie_order[t].tolist()),
                            tuple(name != "none" for name in self.primitives[t]))
                for t in CELL_TYPES}

    def edge_sites(self, input_shape: Sequence[int], num_classes: int, layers: int | None = None,
                   channels: int | None = None) -> EdgeSites:
        """Every edge of every cell of the evaluation network (``NetworkCIFAR``, auxiliary head
        left out as :func:`~nasp.core.measure.parameter_count` leaves it out). A cell's
        preprocessing, and so the network's cost but for its ops, is the same whatever the
        genotype (the concatenated nodes are fixed), so the cost is exactly additive. The
        channels and input sizes of every cell are read from the all-``none`` network run once
        on the ``meta`` device: edges from the cell inputs (stride 2 in a reduction cell) run
        on the preprocessed inputs, the others on the cell's output size."""
        layers = layers or self.evaluation_sizes["layers"]
        channels = channels or self.evaluation_sizes["channels"]
        shape = tuple(int(s) for s in input_shape)
        pairs = [("none", j) for i in range(self.steps) for j in (0, 1)]
        concat = list(range(2, self.steps + 2))
        none = Genotype(normal=pairs, normal_concat=concat, reduce=pairs, reduce_concat=concat)

        def baseline() -> ChildNetwork:
            return self.build_evaluation_network(none, shape[0], num_classes, layers, channels)

        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            net = baseline()
            seen: list[tuple[torch.Size, torch.Size]] = []
            hooks = [cell.register_forward_hook(
                lambda m, args, out: seen.append((m.preprocess1(args[1]).shape, out.shape)))
                for cell in net.cells]
            net.eval()(torch.zeros(1, *shape))
            for h in hooks:
                h.remove()
        sites = []
        for cell, (inputs, output) in zip(net.cells, seen):
            t = "reduce" if cell.reduction else "normal"
            C, H, W = inputs[1:]
            for i, start in enumerate(self.offsets):
                for j in range(i + 2):
                    first = j < 2
                    stride = 2 if cell.reduction and first else 1
                    size = (C, H, W) if first else (C, output[2], output[3])
                    sites.append(EdgeSite(t, start + j, C, stride, size))
        about = (f"{self.describe_sizes(layers, channels)}, {'x'.join(map(str, shape))} input, "
                 f"{num_classes} classes")
        return EdgeSites(baseline, tuple(sites), self.primitives, shape, about)

    # -- genotype formats ---------------------------------------------------------------------
    @classmethod
    def claims_genotype_dict(cls, data: Any) -> bool:
        """A dict with a ``normal`` cell (the DARTS JSON layout)."""
        return isinstance(data, Mapping) and "normal" in data

    @classmethod
    def parse_genotype(cls, text: str) -> Genotype | None:
        """DARTS tuple text (:meth:`Genotype.parse`): any text mentioning ``Genotype`` but
        not ``recurrent`` (DARTS writes its recurrent cells as ``Genotype(recurrent=...)``)."""
        return Genotype.parse(text) if "Genotype" in text and "recurrent" not in text else None

    # -- benchmark ----------------------------------------------------------------------------
    def open_benchmark(self, path: str | os.PathLike[str], column: str | None,
                       dataset: str) -> Benchmark:
        raise BenchmarkError(f"the {self.name} space has no benchmark table to look cells up in")

    # -- pictures -----------------------------------------------------------------------------
    @classmethod
    def picture_cells(cls, genotype: Genotype) -> dict[str, str]:
        return {cell: f"cell_{cell}" for cell in CELL_TYPES}

    @classmethod
    def cell_dot(cls, genotype: Genotype, cell: str) -> str:
        return drawing.cell_dot(genotype, cell)

    @classmethod
    def draw_cell(cls, genotype: Genotype, cell: str, path: Path) -> None:
        drawing.draw_cell(genotype, cell, path)

    @classmethod
    def genotype_edges(cls, genotype: Genotype) -> EdgeOps:
        return drawing.genotype_edges(genotype)
