"""Drawings of a DARTS recurrent cell, as DARTS's visualize.py draws them: the inputs ``x_{t}``
and ``h_{t-1}`` feeding state 0, the nodes ``1..8`` with one labelled edge each (op, input), and
the output ``h_{t}``, the mean of the ``concat`` states."""

from __future__ import annotations

from pathlib import Path

from nasp.spaces.base import EdgeOps
from nasp.spaces.darts_rnn.genotype import RecurrentGenotype
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

CELL = "recurrent"
_INPUTS = ("x_{t}", "h_{t-1}")
_OUTPUT = "h_{t}"


def cell_dot(genotype: RecurrentGenotype) -> str:
    """Graphviz source of the cell."""
    lines = dot_header(CELL)
    lines += [f'  "{name}" [fillcolor=darkseagreen2];' for name in _INPUTS]
    lines += [f'  "{k}" [fillcolor=lightblue];' for k in range(genotype.steps + 1)]
    lines.append(f'  "{_OUTPUT}" [fillcolor=palegoldenrod];')
    lines += [f'  "{name}" -> "0";' for name in _INPUTS]
    lines += [f'  "{j}" -> "{i + 1}" [label="{op}"];'
              for i, (op, j) in enumerate(genotype.recurrent)]
    lines += [f'  "{k}" -> "{_OUTPUT}" [label="mean"];' for k in genotype.concat]
    lines.append("}")
    return "\n".join(lines) + "\n"


def draw_cell(genotype: RecurrentGenotype, path: Path) -> None:
    """The :func:`cell_dot` picture as an arc diagram: ``x_t``, ``h_{t-1}``, the states
    ``0..8`` and ``h_t`` on a line; each (op, input) an arc above it labelled at its apex (no two
    share an apex: one edge per node), the averaged states arcs below it into ``h_t``."""
    steps = genotype.steps
    out = steps + 3  # x_t, h_{t-1}, states 0..steps, h_t

    def at(state: int) -> int:
        return state + 2

    fig = figure(figsize=(1.3 * (out + 1), 0.7 * (steps + 3)))
    ax = fig.add_subplot()
    ax.set_axis_off()
    for x in (0, 1):
        arc(ax, x, at(0), -0.6, "0.6", None)
    colours: dict[str, str] = {}
    for i, (op, j) in enumerate(genotype.recurrent):
        arc(ax, at(j), at(i + 1), -0.6, colours.setdefault(op, f"C{len(colours) % 10}"), op)
    for k in genotype.concat:
        arc(ax, at(k), out, 0.4, "0.6", None)
    node_row(ax, ["$x_{t}$", "$h_{t-1}$", *map(str, range(steps + 1)), "$h_{t}$"],
             [INPUT_FILL] * 2 + [NODE_FILL] * (steps + 1) + [OUTPUT_FILL])
    ax.set_xlim(-0.6, out + 0.6)
    top = max([0.3 * (i + 1 - j) for i, (_, j) in enumerate(genotype.recurrent)] + [0.6])
    bottom = max(0.2 * (out - at(k)) for k in genotype.concat)
    ax.set_ylim(-bottom - 0.3, top + 0.3)
    ax.set_aspect("equal")
    ax.set_title("recurrent cell (h_t = mean of states "
                 f"{', '.join(map(str, genotype.concat))})", fontsize=TITLE_SIZE)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")


def edge_labels(steps: int) -> list[str]:
    """``node<-input`` labels of the rows of the architecture matrix (node ``i`` is state
    ``i + 1``, reading states ``0..i``)."""
    return [f"{i + 1}<-{j}" for i in range(steps) for j in range(i + 1)]


def genotype_edges(genotype: RecurrentGenotype) -> EdgeOps:
    """The one cell type: the labels of every row and ``{row: op}`` of the kept ones."""
    return {CELL: (edge_labels(genotype.steps),
                   {i * (i + 1) // 2 + j: op for i, (op, j) in enumerate(genotype.recurrent)})}
