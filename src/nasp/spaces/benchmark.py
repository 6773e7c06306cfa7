"""A space's benchmark look-up as a search records it: accuracy and percentile per genotype.

A space with a benchmark table (:attr:`SearchSpace.has_benchmark
<nasp.spaces.base.SearchSpace.has_benchmark>`) opens a :class:`~nasp.spaces.base.Benchmark`
with :meth:`~nasp.spaces.base.SearchSpace.open_benchmark`; the search loop adds
:func:`benchmark_record` to every epoch's metrics and :func:`benchmark_note` to its log line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nasp.spaces.base import Benchmark, Genotype, SearchSpace
from nasp.spaces.registry import build_space

__all__ = ["benchmark_note", "benchmark_record", "open_benchmark"]


def open_benchmark(config: Any, space: SearchSpace | None = None) -> Benchmark | None:
    """The look-up a search config asks for (``benchmark``, ``benchmark_column``, ``dataset``,
    in the table of ``space``, default: the config's), or None without a benchmark. Every
    problem is a :class:`~nasp.errors.BenchmarkError` raised here, before a search starts."""
    if getattr(config, "benchmark", None) is None:
        return None
    if space is None:
        space = build_space(config.space, config.primitives)
    return space.open_benchmark(config.benchmark, getattr(config, "benchmark_column", None),
                                config.dataset)


def benchmark_record(lookup: Benchmark | None, genotype: Genotype) -> dict[str, Any]:
    """``{"benchmark_acc": fraction or None, "benchmark_percentile": % or None}`` for a metrics
    record (the percentile: :meth:`Benchmark.percentile`); ``{}`` without a lookup."""
    if lookup is None:
        return {}
    acc = lookup(genotype)
    percentile = None if acc is None else lookup.percentile(acc)
    return {"benchmark_acc": acc, "benchmark_percentile": percentile}


def benchmark_note(lookup: Benchmark | None, record: Mapping[str, Any]) -> str:
    """The log-line part for :func:`benchmark_record`'s entry: ``""`` without a lookup."""
    if lookup is None:
        return ""
    value = record.get("benchmark_acc")
    shown = "not in the table" if value is None else f"{100 * value:.2f}%"
    if record.get("benchmark_percentile") is not None:
        shown += f" (percentile {record['benchmark_percentile']:.1f})"
    return f"  benchmark {lookup.column} acc {shown}"
