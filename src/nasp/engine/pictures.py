"""Pictures of a run: cell diagrams, learning curves, architecture weights (extra ``viz``).

:func:`plot_run` writes into a search or train run directory whatever its files allow:

- one file stem per cell the genotype's space draws (:meth:`SearchSpace.picture_cells
  <nasp.spaces.base.SearchSpace.picture_cells>`: ``cell_normal.*`` / ``cell_reduce.*`` for a DARTS
  cell, ``cell.*`` for a space with one cell): the cells of ``genotype.json`` (or of the latest
  epoch in ``metrics.jsonl``) as diagrams: ``.dot`` (graphviz source, the space's
  :meth:`~nasp.spaces.base.SearchSpace.cell_dot`) always, rendered to ``.png`` by graphviz
  ``dot`` when it is installed, else drawn with matplotlib by the space;
- ``curves.png``: every ``*_loss`` and ``*_acc`` / ``*_top5`` series of ``metrics.jsonl`` and the
  learning rate, per epoch;
- search runs: ``genotype_evolution.png``, the op each edge holds in the derived cell after
  every epoch; ``arch_weights.png``, the final architecture weights of ``arch.pt`` (or of
  ``checkpoint.pt`` while the search runs): NASP's ``A`` as it is (in [0, 1]), DARTS' ``alpha``
  as ``softmax(alpha)`` per edge; ``arch_evolution.png``, those weights per edge over the
  epochs, when the metrics record them (an ``"arch"`` entry per epoch:
  ``{cell type: edges x ops nested list}`` of the raw parameters).

The cells are drawn by their space; this module draws the curves and weights every space shares.
matplotlib is imported only when a picture is drawn, through its object API (no pyplot, no global
backend).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from nasp.config import load_config
from nasp.errors import ConfigError, MissingExtraError, RunDirError
from nasp.runtime.atomic import atomic_write_text
from nasp.runtime.extras import require
from nasp.spaces import (
    Genotype,
    SearchSpace,
    build_space,
    genotype_from_dict,
    load_genotype,
    space_of,
)
from nasp.spaces.drawing import figure as _figure

__all__ = ["cell_dot", "draw_cell", "plot_curves", "plot_genotype_evolution", "plot_run"]


def cell_dot(genotype: Genotype, cell: str) -> str:
    """Graphviz source of one cell of ``genotype``, as its space draws it
    (:meth:`~nasp.spaces.base.SearchSpace.cell_dot`)."""
    return space_of(genotype).cell_dot(genotype, cell)


def draw_cell(genotype: Genotype, cell: str, stem: str | os.PathLike,
              use_dot: bool | None = None) -> list[Path]:
    """Write ``stem.dot`` and ``stem.png`` for one cell; returns the files written.

    The PNG is rendered by graphviz ``dot`` when ``use_dot`` (default: when ``dot`` is on the
    PATH), else drawn with matplotlib by the genotype's space
    (:meth:`~nasp.spaces.base.SearchSpace.draw_cell`).
    """
    stem = Path(stem)
    dot_file, png = stem.with_suffix(".dot"), stem.with_suffix(".png")
    atomic_write_text(dot_file, cell_dot(genotype, cell))
    dot = shutil.which("dot") if use_dot is not False else None
    if use_dot and dot is None:
        raise FileNotFoundError("graphviz dot is not on the PATH")
    if dot:
        subprocess.run([dot, "-Tpng", "-Gdpi=110", "-o", str(png), str(dot_file)], check=True,
                       capture_output=True, timeout=60)
    else:
        space_of(genotype).draw_cell(genotype, cell, png)
    return [dot_file, png]


def plot_curves(records: Sequence[Mapping[str, Any]], path: str | os.PathLike,
                title: str = "") -> Path:
    """Per-epoch curves: losses, accuracies (in %) and the learning rate, one panel each."""
    def series(select) -> list[str]:
        return [k for k in records[0] if select(k)
                and all(isinstance(r.get(k), (int, float)) for r in records)]

    panels = [("loss", series(lambda k: k.endswith("_loss"))),
              ("accuracy (%)", series(lambda k: k.endswith(("_acc", "_top5")))),
              ("learning rate", series(lambda k: k == "lr"))]
    panels = [(name, keys) for name, keys in panels if keys]
    epochs = [r.get("epoch", i + 1) for i, r in enumerate(records)]
    fig = _figure(figsize=(4.2 * len(panels), 3.4), layout="constrained")
    for i, (name, keys) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        scale = 100 if name.startswith("accuracy") else 1
        for key in keys:
            ax.plot(epochs, [scale * r[key] for r in records], marker="." if len(epochs) < 30
                    else None, label=key.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=110)
    return Path(path)


def plot_genotype_evolution(records: Sequence[Mapping[str, Any]],
                            path: str | os.PathLike) -> Path:
    """The derived cells after every epoch: per cell type, one row per edge, one column per
    epoch, coloured by the op the edge holds (blank: edge not kept)."""
    edges = [_kept_edges(genotype_from_dict(r["genotype"])) for r in records]
    cells = list(edges[0])
    epochs = [r.get("epoch", i + 1) for i, r in enumerate(records)]
    fig = _figure(figsize=(3.0 + 0.25 * len(epochs), 3.75 * len(cells)), layout="constrained")
    for c, cell in enumerate(cells):
        labels = edges[0][cell][0]
        ops = sorted({op for g in edges for op in g[cell][1].values()})
        grid = torch.full((len(labels), len(epochs)), float("nan"))
        for t, g in enumerate(edges):
            for e, op in g[cell][1].items():
                grid[e, t] = ops.index(op)
        ax = fig.add_subplot(len(cells), 1, c + 1)
        cmap = _discrete_cmap(len(ops))
        ax.imshow(grid.numpy(), aspect="auto", cmap=cmap, vmin=-0.5, vmax=len(ops) - 0.5,
                  interpolation="nearest",
                  extent=(epochs[0] - 0.5, epochs[-1] + 0.5, grid.shape[0] - 0.5, -0.5))
        ax.set_yticks(range(grid.shape[0]), labels, fontsize=7)
        ax.set_ylabel("edge (node<-input)")
        ax.set_xlabel("epoch")
        ax.set_title(f"{cell} cell: op on each kept edge", fontsize=10)
        handles = [_patch(cmap(k), op) for k, op in enumerate(ops)]
        ax.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.savefig(path, dpi=110)
    return Path(path)


def _kept_edges(genotype: Genotype) -> dict[str, tuple[list[str], dict[int, str]]]:
    """Per cell type: the labels of all edges and ``{edge index: op}`` of the kept ones
    (:meth:`~nasp.spaces.base.SearchSpace.genotype_edges`)."""
    return space_of(genotype).genotype_edges(genotype)


def _discrete_cmap(n: int):
    from matplotlib.colors import ListedColormap

    return ListedColormap([f"C{k % 10}" for k in range(max(n, 1))])


def _patch(colour, label: str):
    from matplotlib.patches import Patch

    return Patch(facecolor=colour, label=label)


def _weights(matrix: Any, softmax: bool) -> torch.Tensor:
    weights = torch.as_tensor(matrix, dtype=torch.float64)
    return weights.softmax(-1) if softmax else weights


def plot_arch_weights(arch: Mapping[str, Any], space: SearchSpace, path: str | os.PathLike,
                      softmax: bool) -> Path:
    """Heat maps of the architecture matrices (edges x ops) of ``space``, one per cell type."""
    primitives = space.primitives
    cells = list(primitives)
    fig = _figure(figsize=(4.5 * len(cells), 5.5), layout="constrained")
    for c, cell in enumerate(cells):
        weights = _weights(arch[cell], softmax)
        ax = fig.add_subplot(1, len(cells), c + 1)
        image = ax.imshow(weights.numpy(), aspect="auto", cmap="viridis")
        ax.set_xticks(range(len(primitives[cell])), primitives[cell], rotation=60, ha="right",
                      fontsize=7)
        ax.set_yticks(range(weights.shape[0]), space.edge_labels(cell), fontsize=7)
        ax.set_title(f"{cell}: {'softmax(alpha)' if softmax else 'A'}", fontsize=10)
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.savefig(path, dpi=110)
    return Path(path)


def plot_arch_evolution(records: Sequence[Mapping[str, Any]], space: SearchSpace,
                        path: str | os.PathLike, softmax: bool) -> Path:
    """The weight of every op on every edge of ``space``'s cells over the epochs: one panel per
    edge, a row of panels per node, the cell types side by side."""
    epochs = [r.get("epoch", i + 1) for i, r in enumerate(records)]
    primitives = space.primitives
    cells = list(primitives)
    series = {cell: torch.stack([_weights(r["arch"][cell], softmax) for r in records])
              for cell in cells}  # epochs x edges x ops
    edges = {cell: [tuple(map(int, label.split("<-"))) for label in space.edge_labels(cell)]
             for cell in cells}
    first = min(node for cell in cells for node, _ in edges[cell])
    rows = max(node for cell in cells for node, _ in edges[cell]) - first + 1
    cols = max(j for cell in cells for _, j in edges[cell]) + 1
    fig = _figure(figsize=(2.2 * len(cells) * cols, 1.9 * rows + 0.8), layout="constrained")
    grid = fig.add_gridspec(rows, len(cells) * cols)
    for c, cell in enumerate(cells):
        for e, (node, j) in enumerate(edges[cell]):
            label = f"{node}<-{j}"
            ax = fig.add_subplot(grid[node - first, c * cols + j])
            for k, name in enumerate(primitives[cell]):
                ax.plot(epochs, series[cell][:, e, k].tolist(), color=f"C{k % 10}", label=name)
            ax.set_title(f"{cell} {label}", fontsize=7)
            ax.set_ylim(-0.02, 1.02)  # softmax weights and NASP's A both lie in [0, 1]
            ax.tick_params(labelsize=6)
            if e == 0:
                ax.legend(fontsize=5, loc="best")
    fig.savefig(path, dpi=100)
    return Path(path)


def _read_records(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    records = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except ValueError:
                raise RunDirError(f"{path} line {n} is not JSON; the metrics file is damaged"
                                  ) from None
    return records


def _final_arch(run: Path) -> dict[str, torch.Tensor] | None:
    """The architecture parameters of ``arch.pt``, else of a search ``checkpoint.pt``."""
    if (run / "arch.pt").is_file():
        return torch.load(run / "arch.pt", map_location="cpu", weights_only=True)
    if (run / "checkpoint.pt").is_file():
        state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
        return state.get("strategy", {}).get("arch")
    return None


def plot_run(run_dir: str | os.PathLike, use_dot: bool | None = None) -> list[Path]:
    """Write every picture the run directory's files allow (see the module doc); return them.

    Raises :class:`~nasp.runtime.extras.MissingExtraError` without matplotlib, and
    :class:`~nasp.runtime.runs.RunDirError` for a directory with nothing to draw.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise RunDirError(f"run directory {run} does not exist; pass the --out folder of a "
                          f"nasp search or nasp train run")
    require("matplotlib", "viz", "Drawing pictures (nasp plot)")
    records = _read_records(run / "metrics.jsonl")
    genotype = None
    if (run / "genotype.json").is_file():
        genotype = load_genotype(run / "genotype.json")
    elif records and "genotype" in records[-1]:
        genotype = genotype_from_dict(records[-1]["genotype"])
    if genotype is None and not records:
        raise RunDirError(f"{run} holds neither genotype.json nor metrics.jsonl, so there is "
                          f"nothing to draw; pass the --out folder of a nasp search or nasp "
                          f"train run")
    written: list[Path] = []
    if genotype is not None:
        for cell, stem in space_of(genotype).picture_cells(genotype).items():
            written += draw_cell(genotype, cell, run / stem, use_dot)
    if records:
        kind = "search" if any("genotype" in r for r in records) else "training"
        written.append(plot_curves(records, run / "curves.png", f"{kind}: {run.name}"))
    if any("genotype" in r for r in records):
        written.append(plot_genotype_evolution([r for r in records if "genotype" in r],
                                               run / "genotype_evolution.png"))
    written += _search_weights(run, records)
    return written


def _search_weights(run: Path, records: Sequence[Mapping[str, Any]]) -> list[Path]:
    """The architecture-weight pictures of a search run (none without its config.yaml)."""
    if not (run / "config.yaml").is_file():
        return []
    try:
        config = load_config(run / "config.yaml")
    except ConfigError:
        return []  # a train run's config
    try:
        space = build_space(config.space, config.primitives)
    except ValueError:
        return []  # a space or op set this version does not know
    softmax = config.strategy != "nasp"
    written = []
    arch = _final_arch(run)
    if arch is not None:
        written.append(plot_arch_weights(arch, space, run / "arch_weights.png", softmax))
    with_arch = [r for r in records if "arch" in r]
    if with_arch:
        written.append(plot_arch_evolution(with_arch, space, run / "arch_evolution.png",
                                           softmax))
    return written


def write_pictures(run_dir: str | os.PathLike, log: Callable[[str], None]) -> None:
    """:func:`plot_run` at the end of a run: a missing matplotlib is one logged line, not an
    error, so a run without the ``viz`` extra still finishes."""
    try:
        written = plot_run(run_dir)
    except MissingExtraError as err:
        log(f"no pictures: {err}")
        return
    log(f"pictures: {', '.join(p.name for p in written)}")
