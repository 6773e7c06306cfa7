"""Search strategies by name: ``nasp``, ``darts`` (first order), ``darts2`` (second order),
``random`` (random search), ``random-ws`` (random search with weight sharing).

Each module registers its strategies in :data:`nasp.registry.STRATEGIES` (``@STRATEGIES.register``);
importing it here is the one line a new strategy adds (see :mod:`nasp.strategies.base`).
"""

from __future__ import annotations

from torch import nn

from nasp.config import SearchConfig
from nasp.registry import STRATEGIES
from nasp.spaces.base import SearchSpace
from nasp.strategies.base import ArchOptions, Strategy, StrategyOptions
from nasp.strategies.darts import DARTS, DARTS2, DARTS2Options
from nasp.strategies.nasp import NASP, NASPOptions
from nasp.strategies.random import RandomOptions, RandomSearch, SharedWeightRandomSearch
from nasp.tasks import Task


def build_strategy(name: str, space: SearchSpace, net: nn.Module, config: SearchConfig,
                   task: Task | None = None) -> Strategy:
    """The strategy ``name`` searching ``space`` with the supernet ``net``, optimising ``task``'s
    loss (default: :class:`~nasp.tasks.ClassificationTask`, plain cross-entropy); an unknown name
    is a :class:`~nasp.errors.ConfigError` that lists the known ones."""
    strategy = STRATEGIES.lookup(name)(space, net, config)
    if task is not None:
        strategy.task = task
    return strategy


__all__ = ["DARTS", "DARTS2", "NASP", "STRATEGIES", "ArchOptions", "DARTS2Options", "NASPOptions",
           "RandomOptions", "RandomSearch", "SharedWeightRandomSearch", "Strategy",
           "StrategyOptions", "build_strategy"]
