"""What the spaces' cell drawings share: graphviz source lines and matplotlib arc diagrams.

A cell is drawn as graphviz ``dot`` source (nodes as filled boxes, one labelled edge per op) or,
without graphviz, as an arc diagram: the nodes on a line in order, each op an arc above the line
labelled at its apex. matplotlib is imported only when a figure is made, through its object API
(no pyplot, no global backend).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nasp.runtime.extras import require

__all__ = ["DPI", "TITLE_SIZE", "arc", "dot_header", "figure", "node_row"]

#: Fill colours of the diagrams: cell inputs, intermediate nodes, the cell output.
INPUT_FILL, NODE_FILL, OUTPUT_FILL = "#b4eeb4", "#add8e6", "#eee8aa"
#: Font sizes (points) of the arc diagrams' op labels, node names and titles; with :data:`DPI`
#: they stay readable where a picture is shown at its own size (the run report shows it so).
LABEL_SIZE, NODE_SIZE, TITLE_SIZE = 9, 11, 12
#: Dots per inch of the arc diagrams (as of the engine's other pictures).
DPI = 110


def figure(**kwargs: Any):
    """A matplotlib ``Figure`` (:class:`~nasp.errors.MissingExtraError` without matplotlib)."""
    require("matplotlib", "viz", "Drawing pictures (nasp plot)")
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def dot_header(name: str) -> list[str]:
    """The first lines of a cell's graphviz source: left to right, filled boxes."""
    return [f'digraph "{name}" {{', "  rankdir=LR;",
            '  node [style=filled, shape=rect, fontname="Helvetica", penwidth=2];',
            '  edge [fontname="Helvetica"];']


def arc(ax, start: int, end: int, rad: float, colour, label: str | None) -> None:
    """An arrow from node ``start`` to ``end`` along a quadratic arc; its apex lies
    ``-rad * (end - start) / 2`` above the line (``arc3`` puts the control point at twice that).
    """
    ax.annotate("", xy=(end, 0), xytext=(start, 0), zorder=1,
                arrowprops=dict(arrowstyle="-|>", color=colour, lw=1.5, shrinkA=12, shrinkB=12,
                                connectionstyle=f"arc3,rad={rad}"))
    if label:
        ax.text((start + end) / 2, -rad * (end - start) / 2, label, ha="center", va="center",
                fontsize=LABEL_SIZE, color=colour, zorder=2,
                bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none",
                          alpha=0.9))


def node_row(ax, names: Sequence[str], fills: Sequence[str]) -> None:
    """The nodes of an arc diagram: boxed names at x = 0, 1, ... on the line y = 0."""
    for x, (name, fill) in enumerate(zip(names, fills)):
        ax.text(x, 0, name, ha="center", va="center", fontsize=NODE_SIZE, zorder=3,
                bbox=dict(boxstyle="round,pad=0.4", facecolor=fill, edgecolor="black"))
