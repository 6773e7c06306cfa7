"""Pictures of a run: cell diagrams, learning curves, architecture weights (extra ``viz``).

:func:`plot_run` writes into a search or train run directory whatever its files allow:

- ``cell_normal.*`` / ``cell_reduce.*`` (NAS-Bench-201: ``cell.*``, its one cell, ``none`` edges
  left out): the cells of ``genotype.json`` (or of the latest epoch in ``metrics.jsonl``) as
  diagrams: ``.dot`` (graphviz source) always, rendered to ``.png`` by
  graphviz ``dot`` when it is installed, else drawn with matplotlib;
- ``curves.png``: every ``*_loss`` and ``*_acc`` / ``*_top5`` series of ``metrics.jsonl`` and the
  learning rate, per epoch;
- search runs: ``genotype_evolution.png``, the op each edge holds in the derived cell after
  every epoch; ``arch_weights.png``, the final architecture weights of ``arch.pt`` (or of
  ``checkpoint.pt`` while the search runs): NASP's ``A`` as it is (in [0, 1]), DARTS' ``alpha``
  as ``softmax(alpha)`` per edge; ``arch_evolution.png``, those weights per edge over the
  epochs, when the metrics record them (an ``"arch"`` entry per epoch:
  ``{cell type: edges x ops nested list}`` of the raw parameters).

matplotlib is imported only here, through its object API (no pyplot, no global backend).
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
from nasp.spaces import build_space
from nasp.spaces.darts_cnn.genotype import Genotype
from nasp.spaces.nb201.genotype import EDGES as NB201_EDGES
from nasp.spaces.nb201.genotype import NB201Genotype, genotype_from_dict, load_genotype

__all__ = ["cell_dot", "draw_cell", "plot_curves", "plot_genotype_evolution", "plot_run"]

_CELLS = ("normal", "reduce")
_INPUTS = ("c_{k-2}", "c_{k-1}")
_OUTPUT = "c_{k}"


def _figure(**kwargs):
    require("matplotlib", "viz", "Drawing pictures (nasp plot)")
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _state_name(j: int) -> str:
    return _INPUTS[j] if j < 2 else str(j - 2)


def cell_dot(genotype: Genotype | NB201Genotype, cell: str) -> str:
    """Graphviz source of one cell, drawn as the DARTS paper does: the two cell inputs
    ``c_{k-2}``, ``c_{k-1}``, the intermediate nodes ``0..steps-1`` with one labelled edge per
    (op, input) pair, and the output ``c_{k}`` fed by the concatenated nodes.

    A NAS-Bench-201 cell: its input node 0, nodes 1 and 2 and the output node 3, one labelled
    edge per op other than ``none``."""
    if isinstance(genotype, NB201Genotype):
        return _nb201_cell_dot(genotype)
    pairs, concat = getattr(genotype, cell), getattr(genotype, f"{cell}_concat")
    lines = [f'digraph "{cell}" {{', "  rankdir=LR;",
             '  node [style=filled, shape=rect, fontname="Helvetica", penwidth=2];',
             '  edge [fontname="Helvetica"];']
    lines += [f'  "{name}" [fillcolor=darkseagreen2];' for name in _INPUTS]
    lines += [f'  "{i}" [fillcolor=lightblue];' for i in range(genotype.steps)]
    lines.append(f'  "{_OUTPUT}" [fillcolor=palegoldenrod];')
    for m, (op, j) in enumerate(pairs):
        lines.append(f'  "{_state_name(j)}" -> "{m // 2}" [label="{op}"];')
    lines += [f'  "{_state_name(j)}" -> "{_OUTPUT}";' for j in concat]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _nb201_cell_dot(genotype: NB201Genotype) -> str:
    names = _nb201_node_names()
    lines = ['digraph "cell" {', "  rankdir=LR;",
             '  node [style=filled, shape=rect, fontname="Helvetica", penwidth=2];',
             '  edge [fontname="Helvetica"];']
    fills = ("darkseagreen2", "lightblue", "lightblue", "palegoldenrod")
    lines += [f'  "{name}" [fillcolor={fill}];' for name, fill in zip(names, fills)]
    lines += [f'  "{names[i]}" -> "{names[j]}" [label="{op}"];'
              for op, (j, i) in zip(genotype.ops, NB201_EDGES) if op != "none"]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _nb201_node_names() -> list[str]:
    return ["0 (in)", "1", "2", "3 (out)"]


def draw_cell(genotype: Genotype | NB201Genotype, cell: str, stem: str | os.PathLike,
              use_dot: bool | None = None) -> list[Path]:
    """Write ``stem.dot`` and ``stem.png`` for one cell; returns the files written.

    The PNG is rendered by graphviz ``dot`` when ``use_dot`` (default: when ``dot`` is on the
    PATH), else drawn with matplotlib.
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
        _draw_cell_matplotlib(genotype, cell, png)
    return [dot_file, png]


def _draw_cell_matplotlib(genotype: Genotype | NB201Genotype, cell: str, path: Path) -> None:
    """The :func:`cell_dot` picture without graphviz, as an arc diagram: the states on a line
    in order, each (op, input) edge an arc above it labelled at its apex, the edges into the
    output below it. Arcs of different edges never share an apex, so labels do not overlap."""
    if isinstance(genotype, NB201Genotype):
        _draw_nb201_cell_matplotlib(genotype, path)
        return
    pairs, concat = getattr(genotype, cell), getattr(genotype, f"{cell}_concat")
    steps = genotype.steps
    out = steps + 2
    fig = _figure(figsize=(1.6 * (out + 1), 0.8 * (steps + 2)))
    ax = fig.add_subplot()
    ax.set_axis_off()
    colours: dict[str, str] = {}
    for m, (op, j) in enumerate(pairs):
        colour = colours.setdefault(op, f"C{len(colours) % 10}")
        _arc(ax, j, m // 2 + 2, -0.6, colour, op)
    for j in concat:
        _arc(ax, j, out, 0.4, "0.6", None)
    names = [*_INPUTS, *map(str, range(steps)), _OUTPUT]
    fills = ["#b4eeb4"] * 2 + ["#add8e6"] * steps + ["#eee8aa"]
    for x, (name, fill) in enumerate(zip(names, fills)):
        ax.text(x, 0, name, ha="center", va="center", fontsize=10, zorder=3,
                bbox=dict(boxstyle="round,pad=0.4", facecolor=fill, edgecolor="black"))
    ax.set_xlim(-0.6, out + 0.6)
    ax.set_ylim(-0.2 * steps - 0.4, 0.3 * (steps + 1) + 0.4)  # the deepest and highest arcs
    ax.set_aspect("equal")  # arc3 bends in display space: keep it equal to data space
    ax.set_title(f"{cell} cell", fontsize=11)
    fig.savefig(path, dpi=110, bbox_inches="tight")


def _draw_nb201_cell_matplotlib(genotype: NB201Genotype, path: Path) -> None:
    """A NAS-Bench-201 cell as an arc diagram: nodes 0..3 on a line, each op other than
    ``none`` an arc above it, labelled at its apex."""
    fig = _figure(figsize=(6.4, 3.2))
    ax = fig.add_subplot()
    ax.set_axis_off()
    colours: dict[str, str] = {}
    for op, (j, i) in zip(genotype.ops, NB201_EDGES):
        if op != "none":
            _arc(ax, i, j, -0.6, colours.setdefault(op, f"C{len(colours) % 10}"), op)
    fills = ["#b4eeb4", "#add8e6", "#add8e6", "#eee8aa"]
    for x, (name, fill) in enumerate(zip(_nb201_node_names(), fills)):
        ax.text(x, 0, name, ha="center", va="center", fontsize=10, zorder=3,
                bbox=dict(boxstyle="round,pad=0.4", facecolor=fill, edgecolor="black"))
    ax.set_xlim(-0.6, 3.6)
    ax.set_ylim(-0.4, 1.4)
    ax.set_aspect("equal")
    ax.set_title("NAS-Bench-201 cell (none edges left out)", fontsize=11)
    fig.savefig(path, dpi=110, bbox_inches="tight")


def _arc(ax, start: int, end: int, rad: float, colour, label: str | None) -> None:
    """An arrow from state ``start`` to ``end`` along a quadratic arc; its apex lies
    ``-rad * (end - start) / 2`` above the line (``arc3`` puts the control point at twice that).
    """
    ax.annotate("", xy=(end, 0), xytext=(start, 0), zorder=1,
                arrowprops=dict(arrowstyle="-|>", color=colour, lw=1.5, shrinkA=12, shrinkB=12,
                                connectionstyle=f"arc3,rad={rad}"))
    if label:
        ax.text((start + end) / 2, -rad * (end - start) / 2, label, ha="center", va="center",
                fontsize=7, color=colour, zorder=2,
                bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none",
                          alpha=0.9))


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


def _edge_labels(steps: int) -> list[str]:
    return [f"{i + 2}<-{j}" for i in range(steps) for j in range(i + 2)]


def _edge_of(m: int, j: int) -> int:
    """Edge index of pair ``m`` (node ``m // 2``) reading state ``j``: nodes before it have
    2, 3, ... incoming edges."""
    i = m // 2
    return i * (i + 3) // 2 + j


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


def _kept_edges(genotype: Genotype | NB201Genotype
                ) -> dict[str, tuple[list[str], dict[int, str]]]:
    """Per cell type: the labels of all edges and ``{edge index: op}`` of the kept ones."""
    if isinstance(genotype, NB201Genotype):
        return {"cell": (_edge_labels_of("cell", len(NB201_EDGES)), dict(enumerate(genotype.ops)))}
    return {cell: (_edge_labels(genotype.steps),
                   {_edge_of(m, j): op for m, (op, j) in enumerate(getattr(genotype, cell))})
            for cell in _CELLS}


def _edge_labels_of(cell: str, edges: int) -> list[str]:
    """``node<-input`` labels of the rows of a cell type's architecture matrix."""
    if cell == "cell" and edges == len(NB201_EDGES):  # the NAS-Bench-201 cell
        return [f"{j}<-{i}" for j, i in NB201_EDGES]
    return _edge_labels(_steps_of(edges))


def _discrete_cmap(n: int):
    from matplotlib.colors import ListedColormap

    return ListedColormap([f"C{k % 10}" for k in range(max(n, 1))])


def _patch(colour, label: str):
    from matplotlib.patches import Patch

    return Patch(facecolor=colour, label=label)


def _weights(matrix: Any, softmax: bool) -> torch.Tensor:
    weights = torch.as_tensor(matrix, dtype=torch.float64)
    return weights.softmax(-1) if softmax else weights


def plot_arch_weights(arch: Mapping[str, Any], primitives: Mapping[str, Sequence[str]],
                      path: str | os.PathLike, softmax: bool) -> Path:
    """Heat maps of the architecture matrices (edges x ops), one per cell type."""
    cells = list(primitives)
    fig = _figure(figsize=(4.5 * len(cells), 5.5), layout="constrained")
    for c, cell in enumerate(cells):
        weights = _weights(arch[cell], softmax)
        ax = fig.add_subplot(1, len(cells), c + 1)
        image = ax.imshow(weights.numpy(), aspect="auto", cmap="viridis")
        ax.set_xticks(range(len(primitives[cell])), primitives[cell], rotation=60, ha="right",
                      fontsize=7)
        ax.set_yticks(range(weights.shape[0]), _edge_labels_of(cell, weights.shape[0]),
                      fontsize=7)
        ax.set_title(f"{cell}: {'softmax(alpha)' if softmax else 'A'}", fontsize=10)
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.savefig(path, dpi=110)
    return Path(path)


def plot_arch_evolution(records: Sequence[Mapping[str, Any]],
                        primitives: Mapping[str, Sequence[str]], path: str | os.PathLike,
                        softmax: bool) -> Path:
    """The weight of every op on every edge over the epochs: one panel per edge, a row of
    panels per node, the cell types side by side."""
    epochs = [r.get("epoch", i + 1) for i, r in enumerate(records)]
    cells = list(primitives)
    series = {cell: torch.stack([_weights(r["arch"][cell], softmax) for r in records])
              for cell in cells}  # epochs x edges x ops
    edges = {cell: [tuple(map(int, label.split("<-")))
                    for label in _edge_labels_of(cell, series[cell].shape[1])] for cell in cells}
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


def _steps_of(edges: int) -> int:
    steps, total = 0, 0
    while total < edges:
        total += steps + 2
        steps += 1
    if total != edges:
        raise ValueError(f"{edges} edges do not make a DARTS cell (2 + 3 + ... edges per node)")
    return steps


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
        if isinstance(genotype, NB201Genotype):
            written += draw_cell(genotype, "cell", run / "cell", use_dot)
        else:
            for cell in _CELLS:
                written += draw_cell(genotype, cell, run / f"cell_{cell}", use_dot)
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
        primitives = build_space(config.space, config.primitives).primitives
    except ValueError:
        return []  # a space or op set this version does not know
    softmax = config.strategy != "nasp"
    written = []
    arch = _final_arch(run)
    if arch is not None:
        written.append(plot_arch_weights(arch, primitives, run / "arch_weights.png", softmax))
    with_arch = [r for r in records if "arch" in r]
    if with_arch:
        written.append(plot_arch_evolution(with_arch, primitives, run / "arch_evolution.png",
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
