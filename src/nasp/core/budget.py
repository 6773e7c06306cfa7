"""Hard budgets: the exact projection onto ``C1 ∩ {cost <= budget}`` and what it needs.

A network's cost (parameters, FLOPs, or latency from a table) is a constant plus one term per
chosen ``(edge, op)`` pair of every cell type (:class:`CostTable`). The projection of NASP onto
the discrete set ``C1`` (:func:`nasp.core.prox.prox_c1`) maximises ``sum over kept edges of
A[e, op]`` (``||A - A_bar||^2`` with the per-node edge count fixed), edge by edge and node by
node; under a budget the nodes are tied together by the one sum of costs over the whole network
(all cell types jointly), and :func:`best_within` solves that problem exactly:

- Every node of every cell type is a *group*; its *options* are the ways to choose ``keep`` of its
  incoming edges (all of them where ``keep`` is at least the in-degree) and one op on each.
- Backward over the groups, the Pareto set of ``(cost, score)`` of every suffix of groups (the
  most score for each cost; dominated pairs dropped, pairs that exceed what the budget leaves
  dropped). This is exact for any costs: no discretisation.
- Forward, each group takes the option that maximises its score plus the best score the suffix
  reaches in the budget left; among equal maxima the option with the lexicographically smallest
  *code* (per edge of the node, in edge order: the position of its op in the tie order, or K for
  a dropped edge).

The tie-break is a total order: among selections of equal score, the one whose codes over all
cell types and edges in order are lexicographically smallest. It is the order of ``prox_c1``
(ops by ``tie_order``, ``none`` last; kept edges: lowest index), so with a budget that does not
bind the result is ``prox_c1``'s exactly, ties included (:func:`best_within` returns
``prox_c1``'s selection itself when it fits). Sums are float64.

:func:`sample_within` draws uniformly among the selections within a budget by the same
decomposition, with counts in place of the best score (random search).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from nasp.core.prox import prox_c1, selection_indices
from nasp.errors import ConfigError

__all__ = ["METRICS", "Budget", "CellRule", "CostTable", "best_within", "cheapest",
           "format_cost", "one_hot", "sample_within"]

#: The cost metrics, each with its command-line option and unit.
METRICS: dict[str, tuple[str, str]] = {
    "params": ("--max-params", "parameters"),
    "flops": ("--max-flops", "FLOPs"),
    "latency": ("--max-latency", "ms"),
}

Selection = Mapping[str, Sequence[int]]


def format_cost(metric: str, value: float) -> str:
    """A cost in its unit: ``1,234,567 parameters``, ``12.345 ms``."""
    unit = METRICS[metric][1]
    if metric == "latency":
        return f"{value:.4g} {unit}"
    return f"{int(round(value)):,} {unit}"


@dataclass(frozen=True)
class CostTable:
    """A network's cost: ``constant + sum over cell types t, kept edges e of tables[t][e, op]``.

    ``tables[t]`` is float64 ``(edges, ops)`` on the CPU; ``metric`` is a key of
    :data:`METRICS`; ``about`` says what network the costs are of (for messages)."""

    metric: str
    constant: float
    tables: Mapping[str, torch.Tensor]
    about: str = ""

    def cost(self, selection: Selection) -> float:
        """The cost of a selection (one op index per edge per cell type, -1: dropped)."""
        total = float(self.constant)
        for t, table in self.tables.items():
            rows = table.tolist()
            for e, k in enumerate(selection[t]):
                if k >= 0:
                    total += rows[e][k]
        return total


@dataclass(frozen=True)
class CellRule:
    """What ``C1`` is for one cell type: the node every edge enters (edges of a node must be
    consecutive, nodes in order), the incoming edges kept per node, the op tie order
    (:func:`nasp.core.prox.tie_order`), and the ops the space's derivation may choose (None: all;
    the DARTS space's ``derive`` never picks ``none``)."""

    edge_node: tuple[int, ...]
    keep: int
    order: tuple[int, ...]
    derive_allowed: tuple[bool, ...] | None = None


@dataclass(frozen=True)
class _Group:
    """One node of one cell type: its options, sorted by code (the tie-break order)."""

    cell_type: str
    edges: tuple[int, ...]
    opt_edges: torch.Tensor  # (options, kept) edge indices
    opt_ops: torch.Tensor  # (options, kept) op indices
    cost: torch.Tensor  # (options,) float64


def _groups(costs: CostTable, rules: Mapping[str, CellRule],
            allowed: Mapping[str, Sequence[bool]] | None) -> list[_Group]:
    groups = []
    for t, table in costs.tables.items():
        rule = rules[t]
        E, K = table.shape
        ok = list(allowed[t]) if allowed is not None and allowed.get(t) is not None else [True] * K
        position = {k: p for p, k in enumerate(rule.order)}
        ops = [k for k in rule.order if ok[k]]  # in tie order
        nodes: list[tuple[int, list[int]]] = []
        for e, n in enumerate(rule.edge_node):
            if nodes and nodes[-1][0] == n:
                nodes[-1][1].append(e)
            elif any(m == n for m, _ in nodes):
                raise ValueError(f"cell type {t}: the edges of node {n} are not consecutive")
            else:
                nodes.append((n, [e]))
        for _, edges in nodes:
            kept = min(rule.keep, len(edges))
            options = []
            for chosen in itertools.combinations(edges, kept):
                for choice in itertools.product(ops, repeat=kept):
                    pick = dict(zip(chosen, choice))
                    code = tuple(position[pick[e]] if e in pick else K for e in edges)
                    options.append((code, chosen, choice))
            options.sort()
            if options and kept:
                opt_edges = torch.tensor([o[1] for o in options], dtype=torch.long)
                opt_ops = torch.tensor([o[2] for o in options], dtype=torch.long)
                cost = table[opt_edges, opt_ops].sum(dim=1)
            else:
                shape = (len(options), kept)
                opt_edges = torch.zeros(shape, dtype=torch.long)
                opt_ops = torch.zeros(shape, dtype=torch.long)
                cost = torch.zeros(len(options), dtype=torch.float64)
            groups.append(_Group(t, tuple(edges), opt_edges, opt_ops, cost))
    return groups


def _pareto(cost: torch.Tensor, score: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The points no other point beats (cost at most and score higher), sorted by cost; the
    score strictly increases along them."""
    order = torch.argsort(score, descending=True, stable=True)
    cost, score = cost[order], score[order]
    order = torch.argsort(cost, stable=True)
    cost, score = cost[order], score[order]
    best = torch.cummax(score, dim=0).values
    keep = torch.ones_like(score, dtype=torch.bool)
    keep[1:] = score[1:] > best[:-1]
    return cost[keep], score[keep]


def _lookup(front: tuple[torch.Tensor, torch.Tensor], left: torch.Tensor) -> torch.Tensor:
    """The best suffix score within each budget left (``-inf`` where none fits)."""
    cost, score = front
    i = torch.searchsorted(cost, left, right=True) - 1
    out = score[i.clamp(min=0)]
    return torch.where(i >= 0, out, torch.full_like(out, -math.inf))


class Budget:
    """A hard budget: the costs of a space's network, the ``C1`` rules of its cell types, and the
    limit. Holds the option tables of :func:`best_within` once built (they depend on the costs
    and rules only)."""

    def __init__(self, costs: CostTable, rules: Mapping[str, CellRule], limit: float):
        self.costs = costs
        self.rules = dict(rules)
        self.limit = float(limit)
        self._groups: dict[bool, list[_Group]] = {}
        self._counts: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # sample_within

    @property
    def metric(self) -> str:
        return self.costs.metric

    def groups(self, derive: bool) -> list[_Group]:
        """The option tables: of the projection (every op) or of the derivation
        (:attr:`CellRule.derive_allowed`)."""
        if derive not in self._groups:
            allowed = {t: r.derive_allowed for t, r in self.rules.items()} if derive else None
            self._groups[derive] = _groups(self.costs, self.rules, allowed)
        return self._groups[derive]

    def allowed(self, derive: bool) -> dict[str, torch.Tensor] | None:
        if not derive:
            return None
        return {t: torch.tensor(r.derive_allowed) for t, r in self.rules.items()
                if r.derive_allowed is not None}

    def cheapest(self, derive: bool = False) -> float:
        """The least cost any selection can have (:func:`cheapest`)."""
        return cheapest(self.groups(derive), self.costs)

    def check(self, derive: bool = True) -> None:
        """:class:`ConfigError` when no selection fits the limit (naming the cheapest cost)."""
        low = self.cheapest(derive)
        if low > self.limit:
            option, _ = METRICS[self.metric]
            about = f" ({self.costs.about})" if self.costs.about else ""
            raise ConfigError(
                f"{option} {format_cost(self.metric, self.limit)} is below the cheapest "
                f"architecture of the space{about}, which costs "
                f"{format_cost(self.metric, low)}: give {option} at least that")

    def fits(self, selection: Selection) -> bool:
        return self.costs.cost(selection) <= self.limit

    def describe(self, selection: Selection) -> dict[str, float | str]:
        """The record a run reports: metric, limit and the selection's cost."""
        return {"metric": self.metric, "limit": self.limit, "cost": self.costs.cost(selection)}


def cheapest(groups: Sequence[_Group], costs: CostTable) -> float:
    """``constant + sum over groups of the cheapest option`` (``inf`` where a group has none)."""
    total = float(costs.constant)
    for g in groups:
        total += g.cost.min().item() if len(g.cost) else math.inf
    return total


def _as_selection(A_bar: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {t: tuple(selection_indices(a).tolist()) for t, a in A_bar.items()}


def best_within(scores: Mapping[str, torch.Tensor], budget: Budget,
                derive: bool = False) -> dict[str, tuple[int, ...]]:
    """The selection of greatest total score among those within ``budget.limit`` (ties: the
    module docstring's order). ``scores[t]``: ``(edges, ops)``, e.g. NASP's ``A`` (``derive``
    False: every op may be chosen) or the softmax weights DARTS derives from (``derive``: only
    the ops :attr:`CellRule.derive_allowed` allows). :class:`ConfigError` when nothing fits."""
    scores = {t: s.detach().double().cpu() for t, s in scores.items()}
    allowed = budget.allowed(derive)
    masked = {t: s.masked_fill(~allowed[t], -math.inf) if allowed and t in allowed else s
              for t, s in scores.items()}
    free = _as_selection({t: prox_c1(masked[t], torch.tensor(budget.rules[t].edge_node),
                                     budget.rules[t].keep, torch.tensor(budget.rules[t].order))
                          for t in masked})
    if budget.fits(free):
        return free
    budget.check(derive)
    return _dp(scores, budget, derive)


def _dp(scores: Mapping[str, torch.Tensor], budget: Budget,
        derive: bool) -> dict[str, tuple[int, ...]]:
    """The dynamic programme of the module docstring (see :func:`best_within`)."""
    groups = budget.groups(derive)
    left_total = budget.limit - budget.costs.constant
    values = [scores[g.cell_type].double()[g.opt_edges, g.opt_ops].sum(dim=1)
              if g.opt_edges.shape[1] else torch.zeros(len(g.cost), dtype=torch.float64)
              for g in groups]
    lows = [g.cost.min().item() for g in groups]
    prefix = [0.0]
    for low in lows:
        prefix.append(prefix[-1] + low)
    fronts = [None] * (len(groups) + 1)
    fronts[-1] = (torch.zeros(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64))
    for i in range(len(groups) - 1, -1, -1):
        g = groups[i]
        oc, os_ = _pareto(g.cost, values[i])
        fc, fs = fronts[i + 1]
        cost = (oc[:, None] + fc[None, :]).flatten()
        score = (os_[:, None] + fs[None, :]).flatten()
        fit = cost <= left_total - prefix[i]
        fronts[i] = _pareto(cost[fit], score[fit])
    selection = {t: [-1] * table.shape[0] for t, table in budget.costs.tables.items()}
    left = torch.tensor(left_total, dtype=torch.float64)
    for i, g in enumerate(groups):
        total = values[i] + _lookup(fronts[i + 1], left - g.cost)
        best = total.max()
        if best.item() == -math.inf:
            raise AssertionError("best_within: no option fits the budget left")  # check() passed
        o = int(torch.nonzero(total == best)[0, 0])  # the first in code order
        for e, k in zip(g.opt_edges[o].tolist(), g.opt_ops[o].tolist()):
            selection[g.cell_type][e] = k
        left = left - g.cost[o]
    return {t: tuple(s) for t, s in selection.items()}


def one_hot(selection: Selection, like: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``A_bar`` of a selection: one-hot rows on kept edges, zero rows on dropped ones, in the
    dtype and on the device of ``like[t]``."""
    out = {}
    for t, a in like.items():
        rows = torch.zeros(a.shape, dtype=a.dtype)
        for e, k in enumerate(selection[t]):
            if k >= 0:
                rows[e, k] = 1.0
        out[t] = rows.to(a.device)
    return out


def sample_within(budget: Budget, generator: torch.Generator) -> dict[str, tuple[int, ...]]:
    """A selection drawn uniformly among those within the budget, over the derivation's options
    (every op the space's derivation may choose, ``keep`` distinct edges per node: the cells a
    space's ``random_selection`` draws from).

    An exact draw by counting: backward over the groups (nodes), the number of selections of
    the remaining groups within each budget left (one entry per distinct cost that can still
    fit; the table is built once per budget); forward, each group's option with probability
    proportional to its number of completions within the budget left. Counts are float64 (the
    DARTS cell has about 1e18 cells: uniform up to a relative 1e-16). Every random number comes
    from ``generator``."""
    if budget._counts is None:
        budget.check(True)
        budget._counts = _count_tables(budget)
    groups, tables = budget.groups(True), budget._counts
    selection = {t: [-1] * table.shape[0] for t, table in budget.costs.tables.items()}
    left = torch.tensor(budget.limit - budget.costs.constant, dtype=torch.float64)
    for i, g in enumerate(groups):
        cost, cumulative = tables[i + 1]
        j = torch.searchsorted(cost, left - g.cost, right=True) - 1
        weights = torch.where(j >= 0, cumulative[j.clamp(min=0)], torch.zeros_like(g.cost))
        o = int(torch.multinomial(weights, 1, generator=generator))
        for e, k in zip(g.opt_edges[o].tolist(), g.opt_ops[o].tolist()):
            selection[g.cell_type][e] = k
        left = left - g.cost[o]
    return {t: tuple(s) for t, s in selection.items()}


#: The most distinct suffix costs the counting of :func:`sample_within` keeps per group.
MAX_COUNT_STATES = 2_000_000


def _too_many(budget: Budget) -> None:
    option, _ = METRICS[budget.metric]
    raise ConfigError(
        f"random search cannot sample within {option} "
        f"{format_cost(budget.metric, budget.limit)}: too many distinct costs to count the "
        f"architectures within it; give a smaller or larger {option}")


def _count_tables(budget: Budget) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per group ``g`` (and one past the last): the distinct costs of the selections of groups
    ``g..`` that can still fit, sorted, with the cumulative count of selections up to each."""
    groups = budget.groups(True)
    left_total = budget.limit - budget.costs.constant
    prefix = [0.0]
    for g in groups:
        prefix.append(prefix[-1] + g.cost.min().item())
    cost, count = torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    tables = [(cost, count)]
    for i in range(len(groups) - 1, -1, -1):
        if len(groups[i].cost) * len(cost) > MAX_COUNT_STATES * 8:
            _too_many(budget)
        c = (groups[i].cost[:, None] + cost[None, :]).flatten()
        n = count.expand(len(groups[i].cost), -1).flatten()
        fit = c <= left_total - prefix[i]
        cost, inverse = torch.unique(c[fit], sorted=True, return_inverse=True)
        if len(cost) > MAX_COUNT_STATES:
            _too_many(budget)
        count = torch.zeros(len(cost), dtype=torch.float64).index_add_(0, inverse, n[fit])
        tables.append((cost, count))
    tables.reverse()  # tables[g]: the groups from g on; tables[-1]: none left
    return [(c, n.cumsum(0)) for c, n in tables]
