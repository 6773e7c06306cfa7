"""The DARTS recurrent cell space (Liu et al., ICLR 2019, Penn Treebank), as NASP searches it.

The cell (:mod:`.cells`): an initial state ``s_0`` from ``x_t`` and ``h_{t-1}``, then 8 nodes;
node ``i`` (state ``i + 1``) takes one earlier state ``j <= i`` through one op of ``none``,
``tanh``, ``relu``, ``sigmoid``, ``identity`` (the activation of a highway update with the node's
own matrix); ``h_t`` is the mean of ``s_1..s_8``. One architecture matrix, cell type
``"recurrent"``: 36 rows (node ``i`` has ``i + 1``, node by node, inputs in order; labels
``i+1<-j``) x 5 ops; the projection keeps one row per node (``prox_C1`` with ``keep = 1``;
``none`` loses ties, :func:`nasp.core.prox.tie_order`).

The network (:mod:`.network`): a language model, embedding size = hidden size = ``channels``, one
cell (``layers`` must be 1), tied decoder; ``num_classes`` is the vocabulary size and
``in_channels`` is ignored. Its input is a :class:`~nasp.tasks.windows.TokenWindow` (tokens
``(T, B)``, the state to start from); it writes its last hidden state ``(B, channels)``, not
detached, into ``x.final`` and returns log-probabilities ``(T * B, vocab)``; in training mode with
``net.slowness > 0`` the pair ``(log_probs, penalty)`` (DARTS's temporal activation regularisation,
``beta = 1e-3``), which the language-model task adds to its objective, the loss of the weight steps
only (the architecture steps, as DARTS's, see the likelihood alone). ``net.dropouts`` (a
:class:`~.network.RecurrentDropouts`: ``output``, ``hidden``, ``input_x``, ``embedding_input``,
``embedding_words``) holds DARTS's search values on the supernet (0.75, 0.25, 0.75, 0.2, 0) and its
evaluation values on the evaluation network (0.75, 0.25, 0.75, 0.2, 0.1); a run may replace both
attributes. The supernet is ``supernet(x, {"recurrent": CellPlan})``; the child
(:meth:`DartsRNNSpace.extract_child`, ``build_child``) and the evaluation network are ``net(x)``.

Derivation (:meth:`DartsRNNSpace.derive`) is DARTS's ``_parse`` on ``softmax(A)``: per node the
input whose best non-``none`` weight is largest (ties: the lowest input), then its best
non-``none`` op (ties: the first). Random cells (:meth:`DartsRNNSpace.random_selection`) never
hold ``none`` either; a NASP projection may select ``none`` (a node of zeros), so genotypes
accept it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from nasp.core.budget import CellRule, CostTable
from nasp.core.prox import prox_c1, tie_order
from nasp.data import DATASET_NAMES
from nasp.errors import BenchmarkError, ConfigError
from nasp.spaces.base import ArchTensors, Benchmark, EdgeOps, Selection
from nasp.spaces.darts_rnn import drawing
from nasp.spaces.darts_rnn.cells import STEPS
from nasp.spaces.darts_rnn.genotype import (
    BUILTIN_GENOTYPES,
    RNN_PRIMITIVES,
    SPACE,
    TEXT_EXAMPLE,
    RecurrentGenotype,
)
from nasp.spaces.darts_rnn.network import (
    CELL,
    EVALUATION_DROPOUTS,
    SEARCH_DROPOUTS,
    RecurrentNetwork,
    RecurrentSupernet,
)

__all__ = ["PRIMITIVE_SETS", "DartsRNNSpace"]

#: The space's candidate op set by name (DARTS's recurrent PRIMITIVES).
PRIMITIVE_SETS: dict[str, dict[str, tuple[str, ...]]] = {SPACE: {CELL: RNN_PRIMITIVES}}

# The corpus of the presets, Penn Treebank, named only where nasp.data knows it: a preset must
# stay a valid configuration (and `nasp search --help` describable) in a build without it.
_CORPUS: dict[str, Any] = {"dataset": "ptb"} if "ptb" in DATASET_NAMES else {}

# DARTS's search on PTB (rnn/train_search.py): emsize = nhid = 300, batch 256, 50 epochs, SGD lr
# 20 without a schedule (w_lr_min = w_lr), no momentum, weight decay 5e-7, gradient clipping
# 0.25; the architecture: Adam 3e-3, betas (0.9, 0.999), weight decay 1e-3.
_PAPER = dict(**_CORPUS, layers=1, channels=300, batch_size=256, epochs=50, w_lr=20.0,
              w_lr_min=20.0, w_momentum=0.0, w_weight_decay=5e-7, grad_clip=0.25, a_lr=3e-3,
              a_weight_decay=1e-3, a_betas=(0.9, 0.999))


def _check_size(layers: int, channels: int) -> None:
    if layers != 1:
        raise ValueError(f"--layers must be 1 on the {SPACE} space (one recurrent cell, as "
                         f"DARTS's language model), got {layers}")
    if channels < 1:
        raise ValueError(f"--channels (the embedding and hidden size) must be at least 1 on "
                         f"the {SPACE} space, got {channels}")


class DartsRNNSpace:
    """The DARTS recurrent cell space (module docstring); one cell type, ``"recurrent"``.

    Implements :class:`~nasp.spaces.base.SearchSpace`.
    """

    name = SPACE
    description = ("the DARTS recurrent cell in a language model (--layers 1, --channels = "
                   "embedding and hidden size)")
    genotype_type = RecurrentGenotype
    primitive_sets = PRIMITIVE_SETS
    default_primitives = SPACE
    # tiny: tests and smoke runs; cpu: a small model a laptop trains; paper: DARTS's search
    # setting (_PAPER); faithful: the same (the NASP paper searches the recurrent cell in
    # DARTS's setting), with the faithful preset's NASP options.
    presets: Mapping[str, Mapping[str, Any]] = {
        "tiny": dict(**_CORPUS, layers=1, channels=16, batch_size=8),
        "cpu": dict(**_CORPUS, layers=1, channels=64, batch_size=32, w_lr=20.0,
                    w_lr_min=20.0, w_momentum=0.0, w_weight_decay=5e-7, grad_clip=0.25,
                    a_lr=3e-3, a_weight_decay=1e-3, a_betas=(0.9, 0.999)),
        "paper": _PAPER,
        "faithful": _PAPER,
    }
    evaluation_sizes: Mapping[str, int] = {"layers": 1, "channels": 850}  # DARTS's PTB model
    builtin_genotypes = BUILTIN_GENOTYPES
    genotype_text_help = f"DARTS recurrent genotype text like {TEXT_EXAMPLE}"
    budget_metrics = ()
    budget_note = ("every cell of the DARTS recurrent space has the same parameters (each node "
                   "owns its matrix whatever its op), and its FLOPs and latency are not tabled "
                   "per op")
    has_benchmark = False
    benchmark_about = ""
    cell_types = (CELL,)
    #: it searches and trains language models on a text corpus (nasp.data.TEXT_DATASETS)
    data_kind = "text"

    def __init__(self, primitives: str = SPACE, steps: int = STEPS):
        if primitives not in PRIMITIVE_SETS:
            raise ValueError(f"--space {self.name} has one op set: --primitives must be "
                             f"{SPACE} (or left out), got {primitives!r}")
        self.primitive_set = primitives
        self.primitives = dict(PRIMITIVE_SETS[primitives])
        self.steps = steps
        self.offsets = [i * (i + 1) // 2 for i in range(steps)]
        self.num_edges = steps * (steps + 1) // 2
        self.edge_node = torch.tensor([i for i in range(steps) for _ in range(i + 1)])
        self.concat = tuple(range(1, steps + 1))  # the supernet's output: every node
        self.tie_order = tie_order(RNN_PRIMITIVES)

    # -- sizes --------------------------------------------------------------------------------
    @classmethod
    def check_sizes(cls, layers: int, channels: int) -> None:
        _check_size(layers, channels)

    @classmethod
    def describe_sizes(cls, layers: int, channels: int) -> str:
        return f"1 recurrent cell, {channels} units"

    # -- architecture parameters --------------------------------------------------------------
    def arch_shapes(self) -> dict[str, tuple[int, int]]:
        return {CELL: (self.num_edges, len(RNN_PRIMITIVES))}

    def project(self, A: ArchTensors) -> dict[str, torch.Tensor]:
        """``prox_C1``: one-hot rows, one row kept per node (``none`` loses ties)."""
        a = A[CELL]
        return {CELL: prox_c1(a, self.edge_node.to(a.device), 1, self.tie_order)}

    def derive(self, A: ArchTensors) -> RecurrentGenotype:
        """DARTS's rule on ``W = softmax(A)`` (module docstring)."""
        W = torch.softmax(A[CELL].detach().double().cpu(), dim=-1)
        usable = torch.tensor([name != "none" for name in RNN_PRIMITIVES])
        W = W.masked_fill(~usable, float("-inf"))
        strength, best = W.max(dim=1)  # the first maximum on ties
        pairs = []
        for i, start in enumerate(self.offsets):
            j = int(strength[start:start + i + 1].argmax())  # the lowest input on ties
            pairs.append((RNN_PRIMITIVES[int(best[start + j])], j))
        return RecurrentGenotype(pairs, self.concat)

    def genotype_of(self, selection: Selection) -> RecurrentGenotype:
        chosen = tuple(selection[CELL])
        if len(chosen) != self.num_edges:
            raise ValueError(f"a recurrent selection has {self.num_edges} entries, got "
                             f"{len(chosen)}")
        pairs = []
        for i, start in enumerate(self.offsets):
            kept = [(j, k) for j, k in enumerate(chosen[start:start + i + 1]) if k >= 0]
            if len(kept) != 1:
                raise ValueError(f"node {i + 1} of the recurrent cell has {len(kept)} selected "
                                 f"inputs, expected 1")
            j, k = kept[0]
            pairs.append((RNN_PRIMITIVES[k], j))
        return RecurrentGenotype(pairs, self.concat)

    def selection_of(self, genotype: RecurrentGenotype) -> dict[str, tuple[int, ...]]:
        if not isinstance(genotype, RecurrentGenotype):
            raise ValueError(f"the {SPACE} space takes a recurrent genotype "
                             f"({TEXT_EXAMPLE}), got a {type(genotype).__name__}")
        if genotype.steps != self.steps:
            raise ValueError(f"the genotype has {genotype.steps} nodes; this space's cell has "
                             f"{self.steps}")
        if genotype.concat != self.concat:
            raise ValueError(f"the genotype's output averages states {list(genotype.concat)}; "
                             f"the supernet's averages every node, states 1..{self.steps}")
        sel = [-1] * self.num_edges
        for i, (op, j) in enumerate(genotype.recurrent):
            sel[self.offsets[i] + j] = RNN_PRIMITIVES.index(op)
        return {CELL: tuple(sel)}

    def random_selection(self, generator: torch.Generator) -> dict[str, tuple[int, ...]]:
        """Per node, one input uniformly among ``0..i`` and one op uniformly among those other
        than ``none`` (as DARTS's derivation: its cells never hold ``none``), node by node, all
        from ``generator``."""
        usable = [k for k, name in enumerate(RNN_PRIMITIVES) if name != "none"]
        sel = [-1] * self.num_edges
        for i, start in enumerate(self.offsets):
            j = int(torch.randint(i + 1, (), generator=generator))
            k = int(torch.randint(len(usable), (), generator=generator))
            sel[start + j] = usable[k]
        return {CELL: tuple(sel)}

    # -- budgets: none in this space (budget_note) ------------------------------------------
    def budget_rules(self) -> dict[str, CellRule]:
        """``C1``: one incoming edge kept per node, ``none`` last in ties; DARTS's derivation
        never chooses ``none``."""
        allowed = tuple(name != "none" for name in self.primitives[CELL])
        return {CELL: CellRule(tuple(self.edge_node.tolist()), 1,
                               tuple(self.tie_order.tolist()), allowed)}

    def cost_table(self, metric: str, input_shape: Any, num_classes: int,
                   layers: int | None = None, channels: int | None = None,
                   latency_table: str | os.PathLike | None = None) -> CostTable:
        raise ConfigError(f"--space {self.name} takes no budget: {self.budget_note}")

    def edge_sites(self, input_shape: Any, num_classes: int, layers: int | None = None,
                   channels: int | None = None) -> Any:
        raise ConfigError(f"--space {self.name} takes no budget: {self.budget_note}")

    def op_costs(self, cell_type: str) -> torch.Tensor:
        """Every op but ``none`` runs its node's matrix (``nhid x 2 nhid`` parameters, the same
        for all), ``none`` none: ``[0, 1/4, 1/4, 1/4, 1/4]``."""
        counts = torch.tensor([0.0 if name == "none" else 1.0 for name in RNN_PRIMITIVES])
        return counts / counts.sum()

    def edge_labels(self, cell_type: str) -> list[str]:
        return drawing.edge_labels(self.steps)

    # -- networks -----------------------------------------------------------------------------
    def build_supernet(self, in_channels: int, num_classes: int, layers: int,
                       channels: int) -> RecurrentSupernet:
        """The search language model: vocabulary ``num_classes``, ``channels`` units."""
        _check_size(layers, channels)
        return RecurrentSupernet(num_classes, channels, RNN_PRIMITIVES, self.steps,
                                 dropouts=SEARCH_DROPOUTS)

    def build_child(self, genotype: RecurrentGenotype, in_channels: int, num_classes: int,
                    layers: int, channels: int, search_ops: bool = False) -> RecurrentNetwork:
        """The network of ``genotype``; ``search_ops=True``: as the supernet's (BatchNorm in the
        cell, the search dropouts), to take its weights."""
        self.selection_of(genotype)  # checks the genotype fits this space
        _check_size(layers, channels)
        return RecurrentNetwork(genotype, num_classes, channels, batchnorm=search_ops,
                                dropouts=SEARCH_DROPOUTS if search_ops else EVALUATION_DROPOUTS)

    def build_evaluation_network(self, genotype: RecurrentGenotype, in_channels: int,
                                 num_classes: int, layers: int, channels: int, *,
                                 auxiliary: bool = False,
                                 imagenet: bool = False) -> RecurrentNetwork:
        """DARTS's train-from-scratch language model of ``genotype`` (no BatchNorm, the
        evaluation dropouts); it has no auxiliary head or ImageNet stem: those are ignored."""
        if not isinstance(genotype, RecurrentGenotype):
            raise ValueError(f"the {SPACE} space takes a recurrent genotype, got a "
                             f"{type(genotype).__name__}")
        _check_size(layers, channels)
        return RecurrentNetwork(genotype, num_classes, channels)

    def extract_child(self, supernet: RecurrentSupernet,
                      genotype: RecurrentGenotype) -> RecurrentNetwork:
        """The child of ``genotype`` with a copy of the supernet's weights (every op of a node
        shares the node's matrix, so the state dicts match name by name), its dropouts and
        slowness. Its forward pass equals the supernet's at the discrete plans of ``genotype``."""
        self.selection_of(genotype)
        first = supernet.encoder.weight
        child = RecurrentNetwork(genotype, supernet.vocab, supernet.nhid, batchnorm=True,
                                 dropouts=supernet.dropouts, slowness=supernet.slowness
                                 ).to(first.device, first.dtype)
        child.load_state_dict(supernet.state_dict())
        child.train(supernet.training)
        return child

    # -- genotype formats ---------------------------------------------------------------------
    @classmethod
    def claims_genotype_dict(cls, data: Any) -> bool:
        """A dict with a ``recurrent`` cell."""
        return isinstance(data, Mapping) and "recurrent" in data

    @classmethod
    def parse_genotype(cls, text: str) -> RecurrentGenotype | None:
        """DARTS recurrent tuple text: text mentioning ``Genotype`` and ``recurrent``."""
        return (RecurrentGenotype.parse(text)
                if "Genotype" in text and "recurrent" in text else None)

    # -- benchmark ----------------------------------------------------------------------------
    def open_benchmark(self, path: str | os.PathLike[str], column: str | None,
                       dataset: str) -> Benchmark:
        raise BenchmarkError(f"the {self.name} space has no benchmark table to look cells up in")

    # -- pictures -----------------------------------------------------------------------------
    @classmethod
    def picture_cells(cls, genotype: RecurrentGenotype) -> dict[str, str]:
        return {CELL: f"cell_{CELL}"}

    @classmethod
    def cell_dot(cls, genotype: RecurrentGenotype, cell: str = CELL) -> str:
        return drawing.cell_dot(genotype)

    @classmethod
    def draw_cell(cls, genotype: RecurrentGenotype, cell: str, path: Path) -> None:
        drawing.draw_cell(genotype, path)

    @classmethod
    def genotype_edges(cls, genotype: RecurrentGenotype) -> EdgeOps:
        return drawing.genotype_edges(genotype)
