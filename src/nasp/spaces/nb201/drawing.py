"""Drawings of a NAS-Bench-201 cell: its input node 0, nodes 1 and 2 and the output node 3, one
labelled edge per op other than ``none``."""

from __future__ import annotations

from pathlib import Path

from nasp.spaces.base import EdgeOps
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
from nasp.spaces.nb201.genotype import EDGES, NB201Genotype

__all__ = ["EDGE_LABELS", "cell_dot", "draw_cell", "genotype_edges"]

CELL = "cell"
NODE_NAMES = ("0 (in)", "1", "2", "3 (out)")
#: ``node<-input`` label of every edge, in arch-string order.
EDGE_LABELS = [f"{j}<-{i}" for j, i in EDGES]


def cell_dot(genotype: NB201Genotype) -> str:
    """Graphviz source of the cell (``none`` edges left out)."""
    lines = dot_header(CELL)
    fills = ("darkseagreen2", "lightblue", "lightblue", "palegoldenrod")
    lines += [f'  "{name}" [fillcolor={fill}];' for name, fill in zip(NODE_NAMES, fills)]
    lines += [f'  "{NODE_NAMES[i]}" -> "{NODE_NAMES[j]}" [label="{op}"];'
              for op, (j, i) in zip(genotype.ops, EDGES) if op != "none"]
    lines.append("}")
    return "\n".join(lines) + "\n"


def draw_cell(genotype: NB201Genotype, path: Path) -> None:
    """The cell as an arc diagram: nodes 0..3 on a line, each op other than ``none`` an arc
    above it, labelled at its apex."""
    fig = figure(figsize=(6.4, 3.2))
    ax = fig.add_subplot()
    ax.set_axis_off()
    colours: dict[str, str] = {}
    for op, (j, i) in zip(genotype.ops, EDGES):
        if op != "none":
            arc(ax, i, j, -0.6, colours.setdefault(op, f"C{len(colours) % 10}"), op)
    node_row(ax, NODE_NAMES, [INPUT_FILL, NODE_FILL, NODE_FILL, OUTPUT_FILL])
    ax.set_xlim(-0.6, 3.6)
    ax.set_ylim(-0.35, 1.15)  # the highest arc (0 -> 3) has its apex at 0.9
    ax.set_aspect("equal")
    ax.set_title("NAS-Bench-201 cell (none edges left out)", fontsize=TITLE_SIZE)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")


def genotype_edges(genotype: NB201Genotype) -> EdgeOps:
    """The one cell type: the labels of its 6 edges and the op of every edge (all are kept)."""
    return {CELL: (list(EDGE_LABELS), dict(enumerate(genotype.ops)))}
