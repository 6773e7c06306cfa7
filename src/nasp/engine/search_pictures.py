"""Pictures of a search (extra ``viz``): how the derived cell, the architecture weights, the
collapse diagnostics and the benchmark look-up move over the epochs.

The weights are drawn relative to their edge (:func:`relative_weights`): a short search moves
NASP's ``A`` by hundredths around its start of 0.5 and DARTS' ``softmax(alpha)`` by as little
around ``1/K``, so on a fixed 0..1 scale every line would be flat. Every axis is scaled to what
it shows.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from nasp.engine.plotting import (
    epoch_axis,
    epochs_of,
    figure,
    line,
    listed_cmap,
    marker,
    number,
    numeric_keys,
    patch,
    save,
    styled,
)
from nasp.spaces import Genotype, SearchSpace, genotype_from_dict, space_of

__all__ = [
    "DIAGNOSTIC_TITLES", "diagnostic_panels", "plot_arch_evolution", "plot_arch_weights",
    "plot_benchmark", "plot_diagnostics", "plot_genotype_evolution", "relative_weights",
    "weight_label",
]


@styled
def plot_genotype_evolution(records: Sequence[Mapping[str, Any]], path: str | os.PathLike,
                            space: SearchSpace | None = None) -> Path:
    """The derived cells after every epoch: per cell type, one row per edge, one column per
    epoch, coloured by the op the edge holds (blank: edge not kept). With the searched
    ``space`` an op has the colour it has in :func:`plot_arch_evolution`; without, the
    colours follow the sorted names of the ops seen, the same in every cell type."""
    primitives = space.primitives if space is not None else None
    edges = [_kept_edges(genotype_from_dict(r["genotype"]), space) for r in records]
    cells = list(edges[0])
    epochs = epochs_of(records)
    seen = sorted({op for g in edges for cell in cells for op in g[cell][1].values()})
    rows = max(len(edges[0][cell][0]) for cell in cells)
    width = min(10.0, 4.2 + 0.18 * len(epochs))
    fig = figure(figsize=(width, len(cells) * (0.22 * rows + 1.3)), layout="constrained")
    for c, cell in enumerate(cells):
        labels = edges[0][cell][0]
        names = list(primitives.get(cell, ())) if primitives else []
        names += [op for op in seen if op not in names]
        colour = {op: f"C{k % 10}" for k, op in enumerate(names)}
        used = [op for op in names if any(op in g[cell][1].values() for g in edges)]
        grid = torch.full((len(labels), len(epochs)), float("nan"))
        for t, g in enumerate(edges):
            for e, op in g[cell][1].items():
                grid[e, t] = used.index(op)
        ax = fig.add_subplot(len(cells), 1, c + 1)
        cmap = listed_cmap([colour[op] for op in used])
        ax.imshow(grid.numpy(), aspect="auto", cmap=cmap, vmin=-0.5, vmax=len(used) - 0.5,
                  interpolation="nearest",
                  extent=(epochs[0] - 0.5, epochs[-1] + 0.5, grid.shape[0] - 0.5, -0.5))
        ax.set_yticks(range(grid.shape[0]), labels)
        ax.set_ylabel("edge (node<-input)")
        epoch_axis(ax)
        ax.grid(False)
        ax.set_title(f"{cell} cell: the op on each kept edge (blank: dropped)")
        handles = [patch(colour[op], op) for op in used]
        ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return save(fig, path)


def _kept_edges(genotype: Genotype, space: SearchSpace | None = None
                ) -> dict[str, tuple[list[str], dict[int, str]]]:
    """Per cell type: the labels of all edges and ``{edge index: op}`` of the kept ones
    (:meth:`~nasp.spaces.base.SearchSpace.genotype_edges` of the searched ``space``, else of
    the genotype's: a model's space names its options only where it knows the model's)."""
    return (space if space is not None else space_of(genotype)).genotype_edges(genotype)


def _weights(matrix: Any, softmax: bool) -> torch.Tensor:
    weights = torch.as_tensor(matrix, dtype=torch.float64)
    return weights.softmax(-1) if softmax else weights


def relative_weights(matrix: Any, softmax: bool) -> torch.Tensor:
    """Every op's weight minus the mean of its edge's row: ``A - mean(A_e)`` (NASP), or
    ``softmax(alpha_e) - 1/K`` (DARTS). A short search moves the weights by hundredths around
    their start (NASP's ``A`` starts at 0.5), so the pictures show them relative to the edge:
    which op leads on every edge, and by how much."""
    weights = _weights(matrix, softmax)
    return weights - weights.mean(-1, keepdim=True)


def weight_label(softmax: bool) -> str:
    """What :func:`relative_weights` are, for axis and colour-bar labels."""
    return "softmax(α) − 1/K" if softmax else "A − mean of the edge"


def _symmetric_limit(values: torch.Tensor) -> float:
    finite = values[torch.isfinite(values)].abs()
    limit = float(finite.max()) if finite.numel() else 0.0
    return limit if limit > 0 else 1e-3


def _kept_ops(genotype: Genotype | None, space: SearchSpace) -> dict[str, dict[int, int]]:
    """Per cell type ``{edge: op index}`` of the edges ``genotype`` keeps (empty without one
    or when it does not fit ``space``'s op set)."""
    if genotype is None:
        return {cell: {} for cell in space.primitives}
    kept = _kept_edges(genotype, space)
    out: dict[str, dict[int, int]] = {}
    for cell, names in space.primitives.items():
        ops = kept.get(cell, ([], {}))[1]
        out[cell] = {e: names.index(op) for e, op in ops.items() if op in names}
    return out


@styled
def plot_arch_weights(arch: Mapping[str, Any], space: SearchSpace, path: str | os.PathLike,
                      softmax: bool, genotype: Genotype | None = None) -> Path:
    """Heat maps of the final architecture matrices (edges x ops) of ``space``, one per cell
    type, as :func:`relative_weights` on a diverging colour scale centred on 0 and scaled to the
    largest value; a ring marks the op ``genotype`` keeps on each edge."""
    primitives = space.primitives
    cells = list(primitives)
    rows = max(space.arch_shapes()[cell][0] for cell in cells)
    kept = _kept_ops(genotype, space)
    fig = figure(figsize=(4.9 * len(cells) + 0.3, 0.3 * rows + 2.4), layout="constrained")
    for c, cell in enumerate(cells):
        weights = relative_weights(arch[cell], softmax)
        limit = _symmetric_limit(weights)
        ax = fig.add_subplot(1, len(cells), c + 1)
        image = ax.imshow(weights.numpy(), aspect="auto", cmap="RdBu_r", vmin=-limit,
                          vmax=limit, interpolation="nearest")
        if kept[cell]:
            edges, ops = zip(*kept[cell].items())
            ax.scatter(ops, edges, s=70, facecolors="none", edgecolors="black", linewidths=1.4,
                       label="kept op")
        ax.set_xticks(range(len(primitives[cell])), primitives[cell], rotation=40, ha="right")
        ax.set_yticks(range(weights.shape[0]), space.edge_labels(cell))
        ax.set_ylabel("edge (node<-input)")
        ax.set_title(f"{cell} cell" + (" (ring: the kept op)" if kept[cell] else ""))
        bar = fig.colorbar(image, ax=ax, shrink=0.9)
        bar.set_label(weight_label(softmax))
        bar.formatter.set_useOffset(False)
    return save(fig, path)


@styled
def plot_arch_evolution(records: Sequence[Mapping[str, Any]], space: SearchSpace,
                        path: str | os.PathLike, softmax: bool,
                        genotype: Genotype | None = None) -> Path:
    """Every op's weight on every edge of ``space``'s cells over the epochs, as
    :func:`relative_weights` (the y axes scaled to the values, the same within a cell type):
    one panel per edge, a row of panels per node, one block per cell type. The op ``genotype``
    keeps on an edge is drawn thick; an edge it drops is titled so."""
    epochs = epochs_of(records)
    primitives = space.primitives
    cells = list(primitives)
    series = {cell: torch.stack([relative_weights(r["arch"][cell], softmax) for r in records])
              for cell in cells}  # epochs x edges x ops
    labels = {cell: space.edge_labels(cell) for cell in cells}
    edges = {cell: _edge_grid(labels[cell]) for cell in cells}
    kept = _kept_ops(genotype, space)
    shape = {cell: (max(n for n, _ in edges[cell]) - min(n for n, _ in edges[cell]) + 1,
                    max(j for _, j in edges[cell]) + 1) for cell in cells}
    cols = max(c for _, c in shape.values())
    heights = [shape[cell][0] for cell in cells]
    fig = figure(figsize=(2.0 * cols + 0.8, 1.45 * sum(heights) + 0.75 * len(cells)),
                  layout="constrained")
    blocks = fig.subfigures(len(cells), 1, height_ratios=heights, squeeze=False)[:, 0]
    for block, cell in zip(blocks, cells):
        rows = shape[cell][0]
        first = min(n for n, _ in edges[cell])
        grid = block.add_gridspec(rows, cols)
        shared = None
        for e, (node, j) in enumerate(edges[cell]):
            ax = block.add_subplot(grid[node - first, j], sharex=shared, sharey=shared)
            shared = shared or ax
            for k, name in enumerate(primitives[cell]):
                thick = kept[cell].get(e) == k
                ax.plot(epochs, series[cell][:, e, k].tolist(), color=f"C{k % 10}",
                        lw=2.4 if thick else 1.0, alpha=1.0 if thick else 0.75,
                        marker=marker(epochs), markersize=3, label=name)
            ax.axhline(0.0, color="0.5", lw=0.6, zorder=0)
            dropped = bool(kept[cell]) and e not in kept[cell]
            ax.set_title(labels[cell][e] + (" (dropped)" if dropped else ""),
                         color="0.45" if dropped else "black")
            epoch_axis(ax, label=node - first == rows - 1)
            ax.label_outer()
        limit = _symmetric_limit(series[cell])
        shared.set_ylim(-1.1 * limit, 1.1 * limit)
        shared.yaxis.get_major_formatter().set_useOffset(False)
        block.suptitle(f"{cell} cell" + (" (thick: the op kept at the end)" if kept[cell]
                                          else ""))
        block.supylabel(weight_label(softmax))
        if block is blocks[0] or primitives[cell] != primitives[cells[0]]:
            handles = [line(f"C{k % 10}", name) for k, name in enumerate(primitives[cell])]
            block.legend(handles=handles, loc="upper right",
                         ncols=2 if len(handles) > 5 else 1, title="op")
    return save(fig, path)


def _edge_grid(labels: Sequence[str]) -> list[tuple[int, int]]:
    """Where each row's panel goes: ``(node, input)`` of a ``node<-input`` label (a cell's
    edges, a row of panels per node); rows labelled otherwise (a model's choices) side by
    side in one row."""
    try:
        return [(int(node), int(j)) for node, j in (label.split("<-") for label in labels)]
    except ValueError:
        return [(0, e) for e in range(len(labels))]


#: Titles of the collapse diagnostics' panels (:mod:`nasp.engine.diagnostics`); other keys are
#: titled by their names.
DIAGNOSTIC_TITLES = {
    "param_free": "parameter-free ops among kept edges",
    "entropy": "mean entropy of softmax(A) per edge",
    "changed_edges": "edges whose op changed",
    "op_correlation": "correlation of op outputs (mean)",
}
ENTROPY_GAP_TITLE = "log K − mean edge entropy (0: uniform)"
#: Keys of a search record that are not per-epoch measurements of the strategy.
_NOT_MEASUREMENTS = {"genotype", "arch", "diagnostics", "cells"}


def diagnostic_panels(records: Sequence[Mapping[str, Any]]
                      ) -> list[tuple[str, dict[str, list[float]]]]:
    """The panels of :func:`plot_diagnostics`: ``(title, {series: value per epoch})``: one per
    collapse diagnostic (its numbers per cell type and in total or mean), then one per number
    a strategy records in its own entry (e.g. NASP's ``flips`` and ``margin``)."""
    panels: list[tuple[str, dict[str, list[float]]]] = []

    def add(title: str, entries: list[Mapping[str, Any]]) -> None:
        keys = numeric_keys(entries, lambda k: k not in ("edges", "per_edge"))
        if keys:
            panels.append((title, {k: [number(e.get(k)) for e in entries] for k in keys}))

    diagnostics = [r.get("diagnostics") if isinstance(r.get("diagnostics"), Mapping) else {}
                   for r in records]
    names = list(dict.fromkeys(k for d in diagnostics for k in d))
    for name in names:
        entries = [d.get(name) if isinstance(d.get(name), Mapping) else {} for d in diagnostics]
        if name == "entropy" and all(_entropy_gap(e, r) for e, r in zip(entries, records)):
            add(ENTROPY_GAP_TITLE, [_entropy_gap(e, r) for e, r in zip(entries, records)])
        else:
            add(DIAGNOSTIC_TITLES.get(name, name.replace("_", " ")), entries)
    own = list(dict.fromkeys(k for r in records for k, v in r.items()
                             if isinstance(v, Mapping) and k not in _NOT_MEASUREMENTS))
    for name in own:
        entries = [r.get(name) if isinstance(r.get(name), Mapping) else {} for r in records]
        for key in numeric_keys(entries, lambda k: True):
            panels.append((f"{name}: {key.replace('_', ' ')}",
                           {key: [number(e.get(key)) for e in entries]}))
    return panels


def _entropy_gap(entropy: Mapping[str, Any], record: Mapping[str, Any]) -> dict[str, float]:
    """The entropy diagnostic as its distance below the uniform weights' ``log K`` (K: the ops
    per edge, read from the record's architecture matrices); a mean entropy is many nines
    after the point in a short search, its distance from ``log K`` is not. Empty when the
    record has no matrices to count the ops of."""
    arch = record.get("arch")
    if not isinstance(arch, Mapping) or not arch:
        return {}
    try:
        ops = {cell: len(matrix[0]) for cell, matrix in arch.items()}
    except (TypeError, IndexError, KeyError):
        return {}
    gap = {cell: math.log(k) - number(entropy.get(cell)) for cell, k in ops.items()
           if k > 0 and cell in entropy}
    if len(set(ops.values())) == 1 and "mean" in entropy:
        gap["mean"] = math.log(next(iter(ops.values()))) - number(entropy["mean"])
    return gap


@styled
def plot_diagnostics(records: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """The collapse diagnostics of a search over the epochs (see :func:`diagnostic_panels`),
    one panel each, every axis scaled to its values."""
    from matplotlib.ticker import MaxNLocator

    panels = diagnostic_panels(records)
    epochs = epochs_of(records)
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = figure(figsize=(3.6 * cols + 0.3, 2.6 * rows + 0.2), layout="constrained")
    for i, (title, series) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        for key, values in series.items():
            ax.plot(epochs, values, marker=marker(epochs), label=key.replace("_", " "))
        ax.set_title(title)
        epoch_axis(ax, label=i >= len(panels) - cols)
        if all(v == int(v) for values in series.values() for v in values if not math.isnan(v)):
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts
        if len(series) > 1:
            ax.legend()
    return save(fig, path)


@styled
def plot_benchmark(records: Sequence[Mapping[str, Any]], path: str | os.PathLike,
                   column: str | None = None) -> Path:
    """The benchmark table's accuracy of every epoch's derived cell (in %) and its percentile
    among the table's cells; an epoch whose cell the table lacks is a gap."""
    epochs = epochs_of(records)
    panels = [("accuracy (%)", [100 * number(r.get("benchmark_acc")) for r in records]),
              ("percentile in the table", [number(r.get("benchmark_percentile"))
                                           for r in records])]
    fig = figure(figsize=(7.6, 2.9), layout="constrained")
    for i, (name, values) in enumerate(panels):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.plot(epochs, values, marker="o", markersize=3, color=f"C{i + 2}")
        ax.set_ylabel(name)
        epoch_axis(ax)
    fig.suptitle("benchmark look-up of the derived cell" + (f" ({column})" if column else ""))
    return save(fig, path)
