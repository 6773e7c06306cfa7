"""Search strategies by name: ``nasp``, ``darts`` (first order), ``darts2`` (second order),
``random`` (random search), ``random-ws`` (random search with weight sharing)."""

from __future__ import annotations

from torch import nn

from nasp.config import SearchConfig
from nasp.spaces.base import SearchSpace
from nasp.strategies.base import Strategy
from nasp.strategies.darts import DARTS, DARTS2
from nasp.strategies.nasp import NASP
from nasp.strategies.random import RandomSearch, SharedWeightRandomSearch
from nasp.tasks import Task

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (NASP, DARTS, DARTS2, RandomSearch, SharedWeightRandomSearch)}


def build_strategy(name: str, space: SearchSpace, net: nn.Module, config: SearchConfig,
                   task: Task | None = None) -> Strategy:
    """The strategy ``name`` searching ``space`` with the supernet ``net``, optimising ``task``'s
    loss (default: :class:`~nasp.tasks.ClassificationTask`, plain cross-entropy)."""
    try:
        cls = STRATEGIES[name]
    except KeyError:
        raise ValueError(
            f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}") from None
    strategy = cls(space, net, config)
    if task is not None:
        strategy.task = task
    return strategy


__all__ = ["DARTS", "DARTS2", "NASP", "STRATEGIES", "RandomSearch", "SharedWeightRandomSearch",
           "Strategy", "build_strategy"]
