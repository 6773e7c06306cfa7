"""Drawings of a DARTS cell, as the DARTS paper draws them: the two cell inputs ``c_{k-2}``,
``c_{k-1}``, the intermediate nodes ``0..steps-1`` with one labelled edge per (op, input) pair,
and the output ``c_{k}`` fed by the concatenated nodes."""

from __future__ import annotations

from pathlib import Path

from nasp.spaces.base import EdgeOps
from nasp.spaces.darts_cnn.genotype import Genotype
from nasp.spaces.drawing import (
    DPI,
    INPUT_FILL,
    NODE_FILL,
    OUTPUT_FILL,
    TITLE_SIZE,
    arc,
    dot_header,
    figure,
    node_row,
)

__all__ = ["cell_dot", "draw_cell", "edge_labels", "genotype_edges"]

CELLS = ("normal", "reduce")
_INPUTS = ("c_{k-2}", "c_{k-1}")
_OUTPUT = "c_{k}"
#: The states' names in matplotlib's math text (subscripts drawn as such).
_MATH_INPUTS, _MATH_OUTPUT = ("$c_{k-2}$", "$c_{k-1}$"), "$c_{k}$"


def _state_name(j: int) -> str:
    return _INPUTS[j] if j < 2 else str(j - 2)


def cell_dot(genotype: Genotype, cell: str) -> str:
    """Graphviz source of the ``cell`` (``normal`` or ``reduce``) of ``genotype``."""
    pairs, concat = getattr(genotype, cell), getattr(genotype, f"{cell}_concat")
    lines = dot_header(cell)
    lines += [f'  "{name}" [fillcolor=darkseagreen2];' for name in _INPUTS]
    lines += [f'  "{i}" [fillcolor=lightblue];' for i in range(genotype.steps)]
    lines.append(f'  "{_OUTPUT}" [fillcolor=palegoldenrod];')
    for m, (op, j) in enumerate(pairs):
        lines.append(f'  "{_state_name(j)}" -> "{m // 2}" [label="{op}"];')
    lines += [f'  "{_state_name(j)}" -> "{_OUTPUT}";' for j in concat]
    lines.append("}")
    return "\n".join(lines) + "\n"


def draw_cell(genotype: Genotype, cell: str, path: Path) -> None:
    """The :func:`cell_dot` picture without graphviz, as an arc diagram: the states on a line
    in order, each (op, input) edge an arc above it labelled at its apex, the edges into the
    output below it. Arcs of different edges never share an apex, so labels do not overlap."""
    pairs, concat = getattr(genotype, cell), getattr(genotype, f"{cell}_concat")
    steps = genotype.steps
    out = steps + 2
    fig = figure(figsize=(1.6 * (out + 1), 0.8 * (steps + 2)))
    ax = fig.add_subplot()
    ax.set_axis_off()
    colours: dict[str, str] = {}
    for m, (op, j) in enumerate(pairs):
        colour = colours.setdefault(op, f"C{len(colours) % 10}")
        arc(ax, j, m // 2 + 2, -0.6, colour, op)
    for j in concat:
        arc(ax, j, out, 0.4, "0.6", None)
    node_row(ax, [*_MATH_INPUTS, *map(str, range(steps)), _MATH_OUTPUT],
             [INPUT_FILL] * 2 + [NODE_FILL] * steps + [OUTPUT_FILL])
    ax.set_xlim(-0.6, out + 0.6)
    # the highest op arc and the deepest output arc (apexes: see arc), and room for labels
    top = max(0.3 * (m // 2 + 2 - j) for m, (_, j) in enumerate(pairs)) if pairs else 0.0
    bottom = max((0.2 * (out - j) for j in concat), default=0.0)
    ax.set_ylim(-bottom - 0.3, top + 0.3)
    ax.set_aspect("equal")  # arc3 bends in display space: keep it equal to data space
    ax.set_title(f"{cell} cell", fontsize=TITLE_SIZE)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")


def edge_labels(steps: int) -> list[str]:
    """``node<-input`` labels of the edges of a cell with ``steps`` intermediate nodes, in edge
    order (node by node; node ``i`` is state ``i + 2``)."""
    return [f"{i + 2}<-{j}" for i in range(steps) for j in range(i + 2)]


def _edge_of(m: int, j: int) -> int:
    """Edge index of pair ``m`` (node ``m // 2``) reading state ``j``: nodes before it have
    2, 3, ... incoming edges."""
    i = m // 2
    return i * (i + 3) // 2 + j


def genotype_edges(genotype: Genotype) -> EdgeOps:
    """Per cell type, the labels of all edges and ``{edge index: op}`` of the kept ones."""
    return {cell: (edge_labels(genotype.steps),
                   {_edge_of(m, j): op for m, (op, j) in enumerate(getattr(genotype, cell))})
            for cell in CELLS}
