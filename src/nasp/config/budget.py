"""A search's hard budget (``--max-params``, ``--max-flops``, ``--max-latency``) as a
:class:`~nasp.core.budget.Budget`: the space's cost table of the evaluation network the search's
cell will be trained in (the space's :attr:`~nasp.spaces.base.SearchSpace.evaluation_sizes`,
the search data set's image shape and classes), its ``C1`` rules and the limit.

Tables are cached per space, op set, metric, shape and latency file: a config is validated
many times (every :meth:`~nasp.config.SearchConfig.replace`), and a DARTS FLOP table takes about
a second to count.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from nasp.core.budget import METRICS, Budget, CostTable
from nasp.data import DataShape, known_shape, load_dataset
from nasp.errors import ConfigError
from nasp.spaces import build_space

__all__ = ["BUDGET_FIELDS", "budget_of", "run_budget"]

#: The config fields that set a budget, by metric.
BUDGET_FIELDS = {"params": "max_params", "flops": "max_flops", "latency": "max_latency"}


def budget_of(config: Any) -> tuple[str, float] | None:
    """``(metric, limit)`` of the config's budget, None without one; :class:`ConfigError` for
    more than one (one budget at a time) or a limit that is not a positive number."""
    given = [(m, getattr(config, f)) for m, f in BUDGET_FIELDS.items()
             if getattr(config, f) is not None]
    if len(given) > 1:
        raise ConfigError(f"{' and '.join(METRICS[m][0] for m, _ in given)}: give one budget "
                          f"at a time")
    if not given:
        if config.latency_table is not None:
            raise ConfigError("--latency-table is the per-op latency table of --max-latency: "
                              "give --max-latency MS too, or leave the table out")
        return None
    metric, limit = given[0]
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not limit > 0:
        raise ConfigError(f"{METRICS[metric][0]} must be a positive number, got {limit!r}")
    return metric, float(limit)


@functools.lru_cache(maxsize=16)
def _table(space: str, primitives: str, metric: str, input_shape: tuple[int, ...],
           num_classes: int, latency_table: str | None, stamp: float) -> CostTable:
    return build_space(space, primitives).cost_table(metric, input_shape, num_classes,
                                                     latency_table=latency_table)


def run_budget(config: Any, shape: DataShape | None = None, *,
               read_data: bool = True) -> Budget | None:
    """The budget of a search config (None without one), its feasibility checked.

    ``shape``: the search data's shape (default: the data set's known shape; a ``folder`` data
    set is read for it, unless ``read_data`` is false, when the budget is not built yet and
    None is returned)."""
    wanted = budget_of(config)
    if wanted is None:
        return None
    metric, limit = wanted
    space = build_space(config.space, config.primitives)
    if metric not in space.budget_metrics:
        raise ConfigError(f"{METRICS[metric][0]} is not available with --space {config.space}: "
                          f"{space.budget_note}; leave the budget out")
    if shape is None:
        shape = known_shape(config.dataset)
    if shape is None:
        if not read_data:
            return None
        shape = DataShape.of(load_dataset(config.dataset, config.data_dir, "train"))
    table = config.latency_table if metric == "latency" else None
    stamp = 0.0
    if table is not None:
        path = Path(table)
        if not path.is_file():
            raise ConfigError(f"--latency-table {path} does not exist: measure one with `nasp "
                              f"profile --out {path}`")
        stamp = os.stat(path).st_mtime
    input_shape = (shape.in_channels, *shape.image_size)
    costs = _table(config.space, config.primitives, metric, tuple(input_shape),
                   shape.num_classes, None if table is None else str(table), stamp)
    budget = Budget(costs, space.budget_rules(), limit)
    budget.check()
    return budget
