"""The search space of a user's model: every label of its :class:`~nasp.nn.Choice` and
:class:`~nasp.nn.InputChoice` modules is one "cell type" of the
:class:`~nasp.spaces.base.SearchSpace` protocol, so the strategies, projections, execution
modes and the run engine of the built-in spaces search it unchanged.

Architecture layout, per label:

- a Choice of ``K`` options: one row ``(1, K)``, one column per option. ``project`` is
  ``prox_C1`` with one edge and ``keep = 1``: a one-hot row at the largest entry (ties: the
  lowest option index).
- an InputChoice of ``keep`` of ``n`` inputs: ``(n, 2)``, one row per input with the columns
  (take it, ``none``). ``project`` is ``prox_C1`` of the first column with the ``n`` rows as the
  edges of one node and ``keep`` kept: the ``keep`` inputs with the largest entry (ties: the
  lowest index) get a 1 in the first column, every other entry is 0; so exactly ``keep``
  inputs are always taken. In dense mode (DARTS) input ``e`` is mixed with weight
  ``softmax(alpha_e)[0]`` (its ``none`` column gives zeros), and ``derive`` keeps the ``keep``
  inputs with the largest such weight, as DARTS keeps the strongest edges of a node.

A selection holds per label one op index per row: ``(k,)`` for a Choice, ``0`` (taken) or ``-1``
per input of an InputChoice. The genotype is :class:`~nasp.spaces.user_model.genotype.ModuleArch`,
the plain mapping ``{label: choice}``.

What makes no sense for a user's model has honest empty values: no op sets, presets, builtin
genotypes, benchmark or evaluation sizes, no cell pictures; the supernet, child and evaluation
networks are the user's model (sizes are ignored). The space is not in the ``--space`` registry:
it needs the model, so it is built by :func:`nasp.search` (``ModuleSpace(model)``).

A run directory keeps the space's layout (:meth:`ModuleSpace.describe`, in ``searched.json``);
:meth:`ModuleSpace.from_description` rebuilds the space from it without the model, for what
needs no network: the architecture layout, projection, derivation and the pictures of a run
(``nasp plot``, ``nasp report``). Its networks are a :class:`~nasp.errors.GenotypeError` saying
that ``nasp.fix(model, arch)`` gives the network.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from nasp.core.mixed import CellPlan
from nasp.core.prox import best_ops, edge_keep_mask, prox_c1
from nasp.errors import BenchmarkError, ConfigError, GenotypeError
from nasp.nn import Choice, Decision, InputChoice, check_arch, decisions_of, fix
from nasp.spaces.base import ArchTensors, Benchmark, EdgeOps, Selection
from nasp.spaces.user_model.genotype import SPACE, ModuleArch

__all__ = ["ModuleSpace", "ModuleSupernet"]


class ModuleSupernet(nn.Module):
    """The user's model as the search runs it: ``forward(x, plans)`` gives every choice the plan
    of its label, calls the model on ``x`` and takes the plans away again (so the model called
    on its own afterwards runs without a plan)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self._choices = [m for m in model.modules() if isinstance(m, (Choice, InputChoice))]

    def forward(self, x: Any, plans: Mapping[str, CellPlan]) -> Any:
        try:
            for m in self._choices:
                m.plan = plans[m.label]
            return self.model(x)
        finally:
            for m in self._choices:
                m.plan = None


class ModuleSpace:
    """The :class:`~nasp.spaces.base.SearchSpace` of ``model`` (see the module docstring).

    ``example``: an input batch the model is run on once, without gradients and in eval mode, to
    check every choice (options of one shape) before the search starts; the error names the
    label.
    """

    name: ClassVar[str] = SPACE
    description: ClassVar[str] = "your own model with nasp.nn choices (nasp.search)"
    genotype_type: ClassVar[type] = ModuleArch
    primitive_sets: ClassVar[Mapping[str, Mapping[str, tuple[str, ...]]]] = {}
    default_primitives: ClassVar[str] = "model"
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    evaluation_sizes: ClassVar[Mapping[str, int]] = {}
    builtin_genotypes: ClassVar[Mapping[str, Any]] = {}
    genotype_text_help: ClassVar[str] = ("a model's architecture is a JSON mapping {label: "
                                         "option index or list of input indices}")
    budget_metrics: ClassVar[tuple[str, ...]] = ()
    budget_note: ClassVar[str] = "budgets on a user's model are not supported yet"
    has_benchmark: ClassVar[bool] = False
    benchmark_about: ClassVar[str] = ""

    def __init__(self, model: nn.Module, example: Any = None):
        self.model: nn.Module | None = model
        self._set_decisions(decisions_of(model))
        if example is not None:
            was_training = model.training
            model.eval()
            try:
                with torch.no_grad():
                    model(example)
            finally:
                model.train(was_training)

    def _set_decisions(self, decisions: Mapping[str, Decision]) -> None:
        self.decisions = dict(decisions)
        self.cell_types = tuple(self.decisions)
        self.primitive_set = "model"
        self.primitives = {t: d.names for t, d in self.decisions.items()}

    # -- the space without its model (a run directory's pictures) -------------------------------
    def describe(self) -> dict[str, Any]:
        """The layout of the space as JSON data (a run's ``searched.json`` holds it): per label
        its kind, number of options or inputs, ``keep`` and option names."""
        return {"space": SPACE, "labels": {
            t: {"kind": d.kind, "options": d.options, "keep": d.keep, "names": list(d.names)}
            for t, d in self.decisions.items()}}

    @classmethod
    def from_description(cls, data: Mapping[str, Any] | None = None) -> ModuleSpace:
        """The space :meth:`describe` wrote, without the model (``None``: no label known, for
        what the genotype alone gives: its text and kept options by index). Its networks are
        an error; a description that is not one is a :class:`~nasp.errors.GenotypeError`."""
        space = cls.__new__(cls)
        space.model = None
        labels = {} if data is None else data.get("labels") if isinstance(data, Mapping) else None
        try:
            decisions = {str(t): Decision(str(t), str(d["kind"]), int(d["options"]),
                                          int(d["keep"]), tuple(map(str, d["names"])), ())
                         for t, d in labels.items()}
        except (AttributeError, KeyError, TypeError, ValueError):
            raise GenotypeError(f"not a description of a model's choices (label: {{kind, "
                                f"options, keep, names}}): {str(data)[:200]}") from None
        space._set_decisions(decisions)
        return space

    def _the_model(self) -> nn.Module:
        if self.model is None:
            raise GenotypeError("the architecture of a model with nasp.nn choices has no network "
                                "without the model: nasp.fix(model, arch) gives it (arch: the "
                                "run's arch.json); nasp train and nasp info take a built-in "
                                "space's genotype")
        return self.model

    # -- sizes ----------------------------------------------------------------------------------
    @classmethod
    def check_sizes(cls, layers: int, channels: int) -> None:
        return None  # the model has its own sizes

    @classmethod
    def describe_sizes(cls, layers: int, channels: int) -> str:
        return "nasp.fix(model, arch)"  # the model's own sizes

    # -- architecture ---------------------------------------------------------------------------
    def arch_shapes(self) -> dict[str, tuple[int, int]]:
        return {t: (1, d.options) if d.kind == "choice" else (d.options, 2)
                for t, d in self.decisions.items()}

    def project(self, A: ArchTensors) -> dict[str, torch.Tensor]:
        out = {}
        for t, d in self.decisions.items():
            a = A[t].detach()
            nodes = torch.zeros(a.shape[0], dtype=torch.long, device=a.device)
            if d.kind == "choice":
                out[t] = prox_c1(a, nodes, 1)
            else:
                out[t] = torch.cat([prox_c1(a[:, :1], nodes, d.keep), torch.zeros_like(a[:, 1:])],
                                   dim=1)
        return out

    def derive(self, A: ArchTensors) -> ModuleArch:
        """The option with the largest ``softmax(A)`` weight (ties: the lowest index); the
        ``keep`` inputs with the largest weight of being taken (ties: the lowest index)."""
        chosen: dict[str, Any] = {}
        for t, d in self.decisions.items():
            W = torch.softmax(A[t].detach().double().cpu(), dim=-1)
            if d.kind == "choice":
                chosen[t] = int(best_ops(W)[0])
            else:
                kept = edge_keep_mask(W[:, 0], torch.zeros(d.options, dtype=torch.long), d.keep)
                chosen[t] = kept.nonzero().flatten().tolist()
        return ModuleArch(chosen)

    def genotype_of(self, selection: Selection) -> ModuleArch:
        chosen: dict[str, Any] = {}
        for t, d in self.decisions.items():
            sel = tuple(selection[t])
            chosen[t] = sel[0] if d.kind == "choice" else [e for e, k in enumerate(sel) if k >= 0]
        return ModuleArch(check_arch(self.decisions, chosen))

    def selection_of(self, genotype: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
        values = check_arch(self.decisions, genotype)
        return {t: (values[t],) if d.kind == "choice"
                else tuple(0 if e in values[t] else -1 for e in range(d.options))
                for t, d in self.decisions.items()}

    def random_selection(self, generator: torch.Generator) -> dict[str, tuple[int, ...]]:
        """Every option of a Choice, every ``keep``-subset of an InputChoice equally likely."""
        out = {}
        for t, d in self.decisions.items():
            if d.kind == "choice":
                out[t] = (int(torch.randint(d.options, (), generator=generator)),)
            else:
                taken = set(torch.randperm(d.options, generator=generator)[:d.keep].tolist())
                out[t] = tuple(0 if e in taken else -1 for e in range(d.options))
        return out

    # -- budgets: not yet on a user's model (budget_note) ------------------------------------
    def budget_rules(self) -> dict[str, Any]:
        raise ConfigError(self.budget_note)

    def cost_table(self, metric: str, input_shape: Any, num_classes: int,
                   layers: int | None = None, channels: int | None = None,
                   latency_table: str | os.PathLike | None = None) -> Any:
        raise ConfigError(self.budget_note)

    def edge_sites(self, input_shape: Any, num_classes: int, layers: int | None = None,
                   channels: int | None = None) -> Any:
        raise ConfigError(self.budget_note)

    def op_costs(self, cell_type: str) -> torch.Tensor:
        """A Choice: the parameter counts of its options (of the first place it stands),
        normalised to sum 1; an InputChoice: zeros (taking an input costs no parameter)."""
        d = self.decisions[cell_type]
        if d.kind == "input":
            return torch.zeros(2)
        model = self._the_model()
        choice = model.get_submodule(d.places[0]) if d.places[0] else model
        counts = torch.tensor([float(sum(p.numel() for p in op.parameters()))
                               for op in choice.ops])
        total = counts.sum()
        return counts / total if total > 0 else counts

    def edge_labels(self, cell_type: str) -> list[str]:
        d = self.decisions[cell_type]
        return [cell_type] if d.kind == "choice" else [f"{cell_type}<-{e}"
                                                        for e in range(d.options)]

    # -- networks -------------------------------------------------------------------------------
    def build_supernet(self, in_channels: int = 0, num_classes: int = 0, layers: int = 0,
                       channels: int = 0) -> ModuleSupernet:
        """The model itself (not a copy: the search trains its weights), sizes ignored."""
        return ModuleSupernet(self._the_model())

    def build_child(self, genotype: Mapping[str, Any], in_channels: int = 0,
                    num_classes: int = 0, layers: int = 0, channels: int = 0,
                    search_ops: bool = False) -> nn.Module:
        return fix(self._the_model(), genotype)

    def extract_child(self, supernet: nn.Module, genotype: Mapping[str, Any]) -> nn.Module:
        return fix(supernet.model, genotype)

    def build_evaluation_network(self, genotype: Mapping[str, Any], in_channels: int = 0,
                                 num_classes: int = 0, layers: int = 0, channels: int = 0, *,
                                 auxiliary: bool = False, imagenet: bool = False) -> nn.Module:
        return fix(self._the_model(), genotype)

    # -- genotype formats, benchmark, pictures --------------------------------------------------
    @classmethod
    def claims_genotype_dict(cls, data: Any) -> bool:
        """``arch.json``: a mapping of labels to option indices or lists of input indices."""
        return isinstance(data, Mapping) and bool(data) and all(
            _is_index(v) or (isinstance(v, list) and all(_is_index(i) for i in v))
            for v in data.values())

    @classmethod
    def parse_genotype(cls, text: str) -> ModuleArch | None:
        return None

    def open_benchmark(self, path: str | os.PathLike[str], column: str | None,
                       dataset: str) -> Benchmark:
        raise BenchmarkError("a model with nasp.nn choices has no benchmark table to look "
                             "architectures up in; leave --benchmark out")

    @classmethod
    def picture_cells(cls, genotype: ModuleArch) -> dict[str, str]:
        return {}

    @classmethod
    def cell_dot(cls, genotype: ModuleArch, cell: str) -> str:
        return ""

    @classmethod
    def draw_cell(cls, genotype: ModuleArch, cell: str, path: Path) -> None:
        return None

    def genotype_edges(self, genotype: ModuleArch) -> EdgeOps:
        """Per label its rows and the options the architecture takes: named as in
        :attr:`primitives` where the space knows the label (an instance, also one
        :meth:`from_description` rebuilt), else by index. Called on an instance, unlike the
        built-in spaces' (the names are the model's)."""
        out: EdgeOps = {}
        for t, v in genotype.items():
            d = self.decisions.get(t)
            if isinstance(v, tuple):
                n = d.options if d is not None else max(v) + 1 if v else 0
                out[t] = ([f"{t}<-{e}" for e in range(n)], {e: "input" for e in v})
            else:
                names = d.names if d is not None else ()
                out[t] = ([t], {0: names[v] if 0 <= v < len(names) else str(v)})
        return out


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
