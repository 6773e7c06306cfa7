"""The NAS-Bench-201 cell space (Dong & Yang, ICLR 2020), as its benchmark defines it.

The cell: node 0 is the cell input, node ``j`` (1..3) ``= sum_{i<j} op_{i->j}(node_i)``, the
output is node 3; 6 edges in the arch-string order ``(1<-0), (2<-0), (2<-1), (3<-0), (3<-1),
(3<-2)`` (see :mod:`nasp.spaces.nb201.genotype`); every edge holds one of ``none``,
``skip_connect``, ``nor_conv_1x1``, ``nor_conv_3x3``, ``avg_pool_3x3`` (``nor_conv`` =
ReLU-Conv-BN, the pool is 3x3, stride 1, padding 1, ``count_include_pad=False``, ``none``
outputs zeros). All edges are kept: there is no per-node top-k rule, so ``prox_C1`` is the
per-edge one-hot alone.

The network (the benchmark's ``TinyNetwork``): a 3x3 convolution stem to ``C`` channels with
BatchNorm; stage 1: ``N`` cells at ``C``; a :class:`~nasp.core.ops.ResNetBasicBlock` (stride 2,
``C -> 2C``); stage 2: ``N`` cells at ``2C``; a block ``2C -> 4C``; stage 3: ``N`` cells at
``4C``; BatchNorm, ReLU, global average pooling, linear classifier. ``N`` is the config's
``layers`` and ``C`` its ``channels`` (the benchmark: N 5, C 16). The input size must be a
multiple of 4 (8x8 digits give 4x4 and 2x2 in stages 2 and 3; CIFAR's 32x32 16x16 and 8x8).
All cells share one architecture matrix, of cell type ``"cell"``, 6 edges x 5 ops.

Choices, as AutoDL-Projects' NAS-Bench-201 search models make them:

- In the search supernet the cells' ops have BatchNorm without affine parameters and the pooling
  op has no BatchNorm after it (unlike the DARTS supernet); the stem, the reduction blocks and
  the last BatchNorm keep their affine parameters. The child network has affine BatchNorm
  everywhere (``search_ops=True`` builds it with the supernet's ops, to take its weights).
- :meth:`NB201Space.derive` takes ``argmax softmax(A)`` on every edge over all five ops,
  ``none`` included, as AutoDL's NAS-Bench-201 baselines do (DARTS on the DARTS space excludes
  ``none``); that is what lets DARTS's collapse to parameter-free ops show.

Ties: in :meth:`NB201Space.project` and :meth:`NB201Space.derive` an edge where several ops tie
for the maximum takes the lowest-index op other than ``none`` (``none`` wins only when strictly
largest), the rule both spaces share (:func:`nasp.core.prox.tie_order`). So NASP starts from the
all-``skip_connect`` cell rather than from the all-``none`` network, whose architecture gradient
is zero.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nasp.core.budget import CellRule
from nasp.core.mixed import CellPlan, MixedOp, sparse_sum
from nasp.core.ops import OPS, ResNetBasicBlock, op_parameter_count
from nasp.core.prox import best_ops, prox_c1, tie_order
from nasp.errors import GenotypeError
from nasp.spaces.base import ArchTensors, EdgeOps, Selection
from nasp.spaces.costs import EdgeSite, EdgeSiteCosts, EdgeSites
from nasp.spaces.nb201 import drawing
from nasp.spaces.nb201.benchmark_table import BenchmarkLookup, open_table
from nasp.spaces.nb201.genotype import EDGES, NB201_PRIMITIVES, SPACE, NB201Genotype, is_nb201_dict

__all__ = ["PRIMITIVE_SETS", "NB201ChildNetwork", "NB201Space", "NB201Supernet"]

CELL = "cell"
NODES = 3

#: The space's one candidate op set, the benchmark's.
PRIMITIVE_SETS: dict[str, dict[str, tuple[str, ...]]] = {"nb201": {CELL: NB201_PRIMITIVES}}


def _nb201_op(name: str, C: int, affine: bool) -> nn.Module:
    """A cell op as the benchmark builds it (stride 1, no BatchNorm after pooling)."""
    return OPS[name](C, 1, affine)


class NB201MixedOp(MixedOp):
    """One supernet edge: the five ops with non-affine BatchNorm and a bare average pool.

    Runs in the four modes of :class:`~nasp.core.mixed.MixedOp` (its ``forward`` is reused).
    """

    def __init__(self, C: int, primitives: Sequence[str]):
        super().__init__(C, 1, ())
        self.primitives = tuple(primitives)
        self.ops = nn.ModuleList(_nb201_op(name, C, False) for name in self.primitives)


class NB201SearchCell(nn.Module):
    """A supernet cell: one :class:`NB201MixedOp` per edge."""

    def __init__(self, C: int, primitives: Sequence[str]):
        super().__init__()
        self.edges = nn.ModuleList(NB201MixedOp(C, primitives) for _ in EDGES)
        self.none = primitives.index("none") if "none" in primitives else -2

    def forward(self, x: torch.Tensor, plan: CellPlan) -> torch.Tensor:
        nodes = [x]
        rows = plan.weights.unbind(0) if plan.weights is not None else None
        selection = plan.selection
        e = 0
        for j in range(1, NODES + 1):
            if plan.mode == "sparse":
                node = sparse_sum(plan.weights[e:e + j], [
                    (self.edges[e + i], nodes[i], selection[e + i]) for i in range(j)])
            else:
                node = None
                for i in range(j):
                    index = selection[e + i] if selection is not None else -1
                    if plan.mode == "discrete" and index in (-1, self.none):
                        continue  # a zero term: not computed
                    y = self.edges[e + i](nodes[i], plan.mode,
                                          rows[e + i] if rows is not None else None, index)
                    node = y if node is None else node + y
                if node is None:
                    node = torch.zeros_like(x)
            nodes.append(node)
            e += j
        return nodes[-1]


class NB201ChildCell(nn.Module):
    """A cell of the discrete network: one op per edge (``none`` included, as the benchmark's
    ``InferCell``)."""

    def __init__(self, genotype: NB201Genotype, C: int, affine: bool):
        super().__init__()
        self.ops = nn.ModuleList(_nb201_op(name, C, affine) for name in genotype.ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        e = 0
        for j in range(1, NODES + 1):
            node = self.ops[e](nodes[0])
            for i in range(1, j):
                node = node + self.ops[e + i](nodes[i])
            nodes.append(node)
            e += j
        return nodes[-1]


def _check_size(layers: int, channels: int) -> None:
    if layers < 1:
        raise ValueError(f"--layers (cells per stage, N) must be at least 1; got {layers}")
    if channels < 1:
        raise ValueError(f"--channels (C) must be at least 1; got {channels}")


class _Macro(nn.Module):
    """The benchmark's macro network around cells made by ``make_cell(C)``."""

    def __init__(self, in_channels: int, num_classes: int, layers: int, channels: int,
                 make_cell: Callable[[int], nn.Module]):
        super().__init__()
        _check_size(layers, channels)
        C = channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(C))
        self.cells = nn.ModuleList()
        C_prev = C
        for stage in range(3):
            C_stage = C * 2 ** stage
            if stage:
                self.cells.append(ResNetBasicBlock(C_prev, C_stage, 2, affine=True))
            self.cells.extend(make_cell(C_stage) for _ in range(layers))
            C_prev = C_stage
        self.lastact = nn.Sequential(nn.BatchNorm2d(C_prev), nn.ReLU(inplace=False))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.global_pooling(self.lastact(x)).flatten(1))


class NB201Supernet(_Macro):
    """The search network; ``forward(x, plans)`` takes ``{"cell": CellPlan}``."""

    def __init__(self, in_channels: int, num_classes: int, layers: int, channels: int,
                 primitives: Sequence[str] = NB201_PRIMITIVES):
        super().__init__(in_channels, num_classes, layers, channels,
                         lambda C: NB201SearchCell(C, primitives))

    def forward(self, x: torch.Tensor, plans: Mapping[str, CellPlan]) -> torch.Tensor:
        plan = plans[CELL]
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x, plan) if isinstance(cell, NB201SearchCell) else cell(x)
        return self.head(x)


class NB201ChildNetwork(_Macro):
    """The discrete network of a genotype (the benchmark's ``TinyNetwork``): a plain
    ``nn.Module`` mapping images to logits.

    ``search_ops=True`` gives the cells the supernet's non-affine BatchNorm, so weights copied
    from a supernet reproduce its discrete forward pass (:meth:`NB201Space.extract_child`).
    """

    def __init__(self, genotype: NB201Genotype, in_channels: int, num_classes: int,
                 layers: int, channels: int, search_ops: bool = False):
        super().__init__(in_channels, num_classes, layers, channels,
                         lambda C: NB201ChildCell(genotype, C, not search_ops))
        self.genotype = genotype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x)
        return self.head(x)


def _as_nb201(genotype: object) -> NB201Genotype:
    if isinstance(genotype, NB201Genotype):
        return genotype
    if isinstance(genotype, str):
        return NB201Genotype.from_string(genotype)
    raise GenotypeError(
        f"the nb201 space takes a NAS-Bench-201 genotype (an arch string like "
        f"|nor_conv_3x3~0|+|...|+|...|), got a {type(genotype).__name__}; a DARTS cell belongs "
        f"to --space darts")


class NB201Space(EdgeSiteCosts):
    """The NAS-Bench-201 cell space (see the module docstring); one cell type, ``"cell"``.

    Implements :class:`~nasp.spaces.base.SearchSpace`.
    """

    name = SPACE
    description = ("the NAS-Bench-201 cell and network (--layers = cells per stage, "
                   "--channels = C)")
    genotype_type = NB201Genotype
    primitive_sets = PRIMITIVE_SETS
    default_primitives = "nb201"
    # Its values of the search presets. paper: the NAS-Bench-201 paper's one-shot baselines
    # (Dong & Yang, ICLR 2020), as AutoDL-Projects runs them (github.com/D-X-Y/AutoDL-Projects):
    # the network is the benchmark's own, N 5 cells per stage and C 16 (scripts-search/
    # NAS-Bench-201-algos/DARTS-V1.sh: --channel 16 --num_cells 5). The weights
    # (configs/nas-benchmark/algos/DARTS.config): SGD, lr 0.025 cosine down to eta_min 0.001
    # over 50 epochs, no warm-up, momentum 0.9, nesterov, weight decay 5e-4, batch 64; gradient
    # clipping 5 (exps/NAS-Bench-201-algos/DARTS-V1.py's default). The architecture
    # (DARTS-V1.sh and DARTS-V1.py): Adam, lr 3e-4, weight decay 1e-3, betas (0.5, 0.999). Data:
    # CIFAR-10's 50,000 training images in two disjoint halves of 25,000
    # (configs/nas-benchmark/cifar-split.txt, a fixed random split), one for the weights and one
    # for the architecture. Differences here: the two halves are a seeded, class-stratified
    # split (nasp.data.search_split), and the weights' SGD is plain momentum (SearchConfig has
    # no nesterov option). GDAS.config is the same but for 240 epochs.
    # faithful (not in the NASP paper): the benchmark's network, N 5, C 16.
    presets: Mapping[str, Mapping[str, Any]] = {
        "tiny": dict(layers=3, channels=4),
        "paper": dict(dataset="cifar10", layers=5, channels=16, epochs=50, batch_size=64,
                      w_lr=0.025, w_lr_min=0.001, w_momentum=0.9, w_weight_decay=5e-4,
                      grad_clip=5.0, a_lr=3e-4, a_weight_decay=1e-3, a_betas=(0.5, 0.999)),
        "faithful": dict(layers=5, channels=16),
    }
    evaluation_sizes: Mapping[str, int] = {"layers": 5, "channels": 16}  # the benchmark's
    builtin_genotypes: Mapping[str, NB201Genotype] = {}
    genotype_text_help = "a NAS-Bench-201 arch string like |nor_conv_3x3~0|+|...|+|...|"
    budget_metrics = ("params", "flops", "latency")
    budget_note = ""
    has_benchmark = True
    benchmark_about = ("a CSV table of arch strings and accuracies, or NATS-Bench tss files "
                       "with the nats_bench package")
    cell_types = (CELL,)

    def __init__(self, primitives: str = "nb201"):
        if primitives not in PRIMITIVE_SETS:
            raise ValueError(
                f"--space {self.name} has the benchmark's fixed op set: --primitives must be "
                f"nb201 (or left out), got {primitives!r}")
        self.primitive_set = primitives
        self.primitives = dict(PRIMITIVE_SETS[primitives])
        self.num_edges = len(EDGES)
        self.keep = NODES  # at least every node's in-degree: prox_C1 keeps every edge
        self.edge_node = torch.tensor([j - 1 for j, _ in EDGES])
        self.tie_order = tie_order(NB201_PRIMITIVES)  # none loses ties (module docstring)

    # -- sizes --------------------------------------------------------------------------------
    @classmethod
    def check_sizes(cls, layers: int, channels: int) -> None:
        _check_size(layers, channels)

    @classmethod
    def describe_sizes(cls, layers: int, channels: int) -> str:
        return f"N {layers} cells per stage, C {channels}"

    def arch_shapes(self) -> dict[str, tuple[int, int]]:
        return {CELL: (self.num_edges, len(NB201_PRIMITIVES))}

    def project(self, A: ArchTensors) -> dict[str, torch.Tensor]:
        """``prox_C1``: per edge, the one-hot of its largest entry (``none`` loses ties)."""
        a = A[CELL]
        return {CELL: prox_c1(a, self.edge_node.to(a.device), self.keep, self.tie_order)}

    def derive(self, A: ArchTensors) -> NB201Genotype:
        """``argmax_k softmax(A)[e, k]`` on every edge, over all ops (``none`` included)."""
        W = torch.softmax(A[CELL].detach().double().cpu(), dim=-1)
        best = best_ops(W, self.tie_order).tolist()
        return NB201Genotype(tuple(NB201_PRIMITIVES[k] for k in best))

    def genotype_of(self, selection: Selection) -> NB201Genotype:
        chosen = tuple(selection[CELL])
        if len(chosen) != self.num_edges or any(not 0 <= k < len(NB201_PRIMITIVES)
                                                for k in chosen):
            raise ValueError(f"a NAS-Bench-201 selection holds one op index in "
                             f"0..{len(NB201_PRIMITIVES) - 1} per edge ({self.num_edges} "
                             f"edges, none dropped); got {chosen}")
        return NB201Genotype(tuple(NB201_PRIMITIVES[k] for k in chosen))

    def selection_of(self, genotype: NB201Genotype | str) -> dict[str, tuple[int, ...]]:
        genotype = _as_nb201(genotype)
        return {CELL: tuple(NB201_PRIMITIVES.index(op) for op in genotype.ops)}

    def random_selection(self, generator: torch.Generator) -> dict[str, tuple[int, ...]]:
        """A selection drawn uniformly from the 5^6 = 15625 cells of the space (``none``
        included, as the benchmark includes it), with ``generator``."""
        draw = torch.randint(len(NB201_PRIMITIVES), (self.num_edges,), generator=generator)
        return {CELL: tuple(draw.tolist())}

    def op_costs(self, cell_type: str) -> torch.Tensor:
        counts = torch.tensor(
            [float(op_parameter_count(n, 16)) for n in self.primitives[cell_type]])
        total = counts.sum()
        return counts / total if total > 0 else counts

    # -- hard budgets (nasp.core.budget) ------------------------------------------------------
    def budget_rules(self) -> dict[str, CellRule]:
        """``C1``: every edge kept, ``none`` last in ties; ``derive`` may choose any op."""
        return {CELL: CellRule(tuple(self.edge_node.tolist()), self.keep,
                               tuple(self.tie_order.tolist()))}

    def edge_sites(self, input_shape: Sequence[int], num_classes: int, layers: int | None = None,
                   channels: int | None = None) -> EdgeSites:
        """Every edge of every cell of the evaluation network (N cells per stage at ``C``,
        ``2C``, ``4C``; stride 1; each edge runs on the cell's input shape)."""
        layers = layers or self.evaluation_sizes["layers"]
        channels = channels or self.evaluation_sizes["channels"]
        shape = tuple(int(s) for s in input_shape)
        none = NB201Genotype(("none",) * self.num_edges)

        def baseline() -> NB201ChildNetwork:
            return self.build_evaluation_network(none, shape[0], num_classes, layers, channels)

        sites = []
        for stage in range(3):
            C = channels * 2 ** stage
            H, W = shape[1] // 2 ** stage, shape[2] // 2 ** stage
            sites += [EdgeSite(CELL, e, C, 1, (C, H, W))
                      for _ in range(layers) for e in range(self.num_edges)]
        about = (f"{self.describe_sizes(layers, channels)}, {'x'.join(map(str, shape))} input, "
                 f"{num_classes} classes")
        return EdgeSites(baseline, tuple(sites), self.primitives, shape, about)

    def build_supernet(self, in_channels: int, num_classes: int, layers: int,
                       channels: int) -> NB201Supernet:
        return NB201Supernet(in_channels, num_classes, layers, channels, NB201_PRIMITIVES)

    def build_child(self, genotype: NB201Genotype | str, in_channels: int, num_classes: int,
                    layers: int, channels: int, search_ops: bool = False) -> NB201ChildNetwork:
        return NB201ChildNetwork(_as_nb201(genotype), in_channels, num_classes, layers,
                                 channels, search_ops)

    def build_evaluation_network(self, genotype: NB201Genotype | str, in_channels: int,
                                 num_classes: int, layers: int, channels: int, *,
                                 auxiliary: bool = False,
                                 imagenet: bool = False) -> NB201ChildNetwork:
        """The benchmark's network of ``genotype`` (``layers`` cells per stage, C
        ``channels``); it has no auxiliary head and no ImageNet stem, so ``auxiliary`` and
        ``imagenet`` do not apply."""
        return NB201ChildNetwork(_as_nb201(genotype), in_channels, num_classes, layers,
                                 channels)

    def extract_child(self, supernet: NB201Supernet,
                      genotype: NB201Genotype | str) -> NB201ChildNetwork:
        """The child network of ``genotype`` holding a copy of the supernet's weights.

        Its forward pass equals ``supernet(x, plans)`` with the discrete plans of ``genotype``.
        """
        genotype = _as_nb201(genotype)
        stem = supernet.stem[0]
        layers = sum(isinstance(c, NB201SearchCell) for c in supernet.cells) // 3
        child = NB201ChildNetwork(genotype, stem.in_channels, supernet.classifier.out_features,
                                  layers, stem.out_channels, search_ops=True
                                  ).to(stem.weight.device, stem.weight.dtype)
        selection = self.selection_of(genotype)[CELL]
        state = {}
        for name, value in supernet.state_dict().items():
            parts = name.split(".")
            if len(parts) > 4 and parts[2] == "edges":  # cells.c.edges.e.ops.k.rest
                c, e, k = parts[1], int(parts[3]), int(parts[5])
                if k == selection[e]:
                    state[".".join(["cells", c, "ops", str(e), *parts[6:]])] = value
            else:
                state[name] = value
        child.load_state_dict(state)
        return child

    def edge_labels(self, cell_type: str) -> list[str]:
        return list(drawing.EDGE_LABELS)

    # -- genotype formats ---------------------------------------------------------------------
    @classmethod
    def claims_genotype_dict(cls, data: Any) -> bool:
        """A dict with an ``arch`` string."""
        return is_nb201_dict(data)

    @classmethod
    def parse_genotype(cls, text: str) -> NB201Genotype | None:
        """An arch string: any text starting with ``|``."""
        return NB201Genotype.from_string(text) if text.strip().startswith("|") else None

    # -- benchmark ----------------------------------------------------------------------------
    def open_benchmark(self, path: str | os.PathLike[str], column: str | None,
                       dataset: str) -> BenchmarkLookup:
        """The NAS-Bench-201 table ``path`` (:mod:`nasp.spaces.nb201.benchmark_table`)."""
        return open_table(path, column, dataset)

    # -- pictures -----------------------------------------------------------------------------
    @classmethod
    def picture_cells(cls, genotype: NB201Genotype) -> dict[str, str]:
        return {CELL: "cell"}

    @classmethod
    def cell_dot(cls, genotype: NB201Genotype, cell: str = CELL) -> str:
        return drawing.cell_dot(genotype)

    @classmethod
    def draw_cell(cls, genotype: NB201Genotype, cell: str, path: Path) -> None:
        drawing.draw_cell(genotype, path)

    @classmethod
    def genotype_edges(cls, genotype: NB201Genotype) -> EdgeOps:
        return drawing.genotype_edges(genotype)
