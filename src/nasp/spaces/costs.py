"""Cost tables of a space's evaluation network (the network ``nasp train`` trains), for hard
budgets (:mod:`nasp.core.budget`).

The network's cost is additive: a constant (everything but the cells' chosen ops: stem, cell
preprocessing, reduction blocks, classifier; counted on the network whose every edge is
``none``) plus, per cell type ``t``, edge ``e`` and op ``k``, the sum over the cells of type
``t`` of the cost of op ``k`` built as that cell builds it (channels, stride, input size).
A space lists its edge *sites* (:class:`EdgeSite`: every edge of every cell, with what its op
is built and run with) and builds the all-``none`` network (:class:`EdgeSites`); the rest is
here. Parameters and FLOPs are those of :mod:`nasp.core.measure`; latencies come from a table
measured by ``nasp profile`` (:mod:`nasp.apps.profile`), whose sum is a model (each op timed
alone, the additions between them in the constant).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nasp.core.budget import CostTable
from nasp.core.measure import flop_count, parameter_count
from nasp.core.ops import OPS
from nasp.errors import ConfigError

__all__ = ["EdgeSite", "EdgeSiteCosts", "EdgeSites", "cost_table", "op_counts",
           "read_latency_table"]


@dataclass(frozen=True)
class EdgeSite:
    """One edge of one cell of the network: its cell type and edge index, and the channels,
    stride and input shape ``(C, H, W)`` its op is built and run with."""

    cell_type: str
    edge: int
    channels: int
    stride: int
    input_shape: tuple[int, int, int]


@dataclass(frozen=True)
class EdgeSites:
    """A space's evaluation network as the cost tables see it: ``baseline()`` builds the
    network with ``none`` on every edge (on the current default device), ``sites`` lists every
    edge of every cell, ``primitives`` the ops of each cell type, ``about`` the network in words
    (sizes, input, classes)."""

    baseline: Callable[[], nn.Module]
    sites: tuple[EdgeSite, ...]
    primitives: Mapping[str, tuple[str, ...]]
    input_shape: tuple[int, int, int]
    about: str


def make_op(name: str, site: EdgeSite) -> nn.Module:
    """The op ``name`` as the evaluation network builds it on ``site`` (affine BatchNorm)."""
    return OPS[name](site.channels, site.stride, True)


@functools.lru_cache(maxsize=4096)
def op_counts(name: str, channels: int, stride: int,
              input_shape: tuple[int, int, int]) -> tuple[int, int]:
    """Parameters and FLOPs of op ``name`` built as the evaluation network builds it, for one
    input of ``input_shape`` (counted on the ``meta`` device: nothing allocated)."""
    site = EdgeSite("", 0, channels, stride, input_shape)
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        op = make_op(name, site)
    return parameter_count(op), flop_count(op, input_shape)


def cost_table(metric: str, sites: EdgeSites, latency_table: str | os.PathLike | None = None,
               *, space: str = "", primitive_set: str = "") -> CostTable:
    """The :class:`CostTable` of ``metric`` (``params``, ``flops``, ``latency``) for ``sites``.

    ``latency`` reads ``latency_table`` (:func:`read_latency_table`; ``space`` and
    ``primitive_set`` are checked against it)."""
    if metric == "latency":
        if latency_table is None:
            raise ConfigError("--max-latency needs a per-op latency table: measure one on the "
                              "target device with `nasp profile --out ops.json` and give "
                              "--latency-table ops.json")
        return read_latency_table(latency_table, sites, space, primitive_set)
    if metric not in ("params", "flops"):
        raise ValueError(f"unknown cost metric {metric!r}")
    column = 0 if metric == "params" else 1
    tables = {t: torch.zeros(max((s.edge for s in sites.sites if s.cell_type == t),
                                 default=-1) + 1, len(ops), dtype=torch.float64)
              for t, ops in sites.primitives.items()}
    for s in sites.sites:
        for k, name in enumerate(sites.primitives[s.cell_type]):
            tables[s.cell_type][s.edge, k] += op_counts(name, s.channels, s.stride,
                                                        s.input_shape)[column]
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        net = sites.baseline()
    constant = parameter_count(net) if metric == "params" else flop_count(net, sites.input_shape)
    return CostTable(metric, float(constant), tables, sites.about)


class EdgeSiteCosts:
    """``SearchSpace.cost_table`` of a space that lists its evaluation network's edge sites
    (``edge_sites``), ``name`` and ``primitive_set``: the :func:`cost_table` of those sites."""

    def cost_table(self, metric: str, input_shape: Sequence[int], num_classes: int,
                   layers: int | None = None, channels: int | None = None,
                   latency_table: str | os.PathLike | None = None) -> CostTable:
        """The cost of the evaluation network: ``params``, ``flops`` or ``latency`` (from
        ``latency_table``, a ``nasp profile`` file)."""
        sites = self.edge_sites(input_shape, num_classes, layers, channels)
        return cost_table(metric, sites, latency_table, space=self.name,
                          primitive_set=self.primitive_set)


def _latency_error(path: Path, what: str) -> ConfigError:
    return ConfigError(f"--latency-table {path}: {what}; measure the table again with `nasp "
                       f"profile` for this space, op set, sizes and data set")


def read_latency_table(path: str | os.PathLike, sites: EdgeSites, space: str,
                       primitive_set: str) -> CostTable:
    """A latency :class:`CostTable` (milliseconds) from a ``nasp profile`` JSON file, checked
    to be of this space, op set, network and input."""
    path = Path(path)
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ConfigError(f"--latency-table {path} cannot be read as JSON ({err}); give the "
                          f"file `nasp profile --out` wrote") from None
    want = {"space": space, "primitives": primitive_set, "network": sites.about}
    for key, value in want.items():
        if data.get(key) != value:
            raise _latency_error(path, f"it was measured for {key} {data.get(key)!r}, this "
                                       f"search has {value!r}")
    ops_ms = data.get("ops_ms", {})
    tables = {}
    for t, names in sites.primitives.items():
        if tuple(data.get("op_names", {}).get(t, ())) != tuple(names):
            raise _latency_error(path, f"its {t} ops differ from {', '.join(names)}")
        table = torch.tensor(ops_ms.get(t, []), dtype=torch.float64)
        edges = max(s.edge for s in sites.sites if s.cell_type == t) + 1
        if table.shape != (edges, len(names)):
            raise _latency_error(path, f"its {t} table is not {edges} edges x {len(names)} ops")
        tables[t] = table
    return CostTable("latency", float(data.get("constant_ms", 0.0)), tables, sites.about)


def latency_record(sites: EdgeSites, ops_ms: Mapping[str, Sequence[Sequence[float]]],
                   constant_ms: float, space: str, primitive_set: str,
                   **extra: Any) -> dict[str, Any]:
    """The JSON ``nasp profile`` writes and :func:`read_latency_table` reads."""
    return {"space": space, "primitives": primitive_set, "network": sites.about,
            **extra, "unit": "ms", "constant_ms": constant_ms,
            "op_names": {t: list(n) for t, n in sites.primitives.items()},
            "ops_ms": {t: [list(map(float, row)) for row in rows] for t, rows in ops_ms.items()}}
