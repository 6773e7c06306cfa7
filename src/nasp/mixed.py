"""The mixed edge: one edge of a cell with its candidate operations o_1..o_K.

An edge runs in one of four execution modes (``weights`` is the edge's row w of the architecture
matrix, ``index`` the op selected on it, -1 for an edge the projection drops):

``dense``
    ``sum_k w_k o_k(x)``, every op with autograd. DARTS, with ``w = softmax(alpha)``.
``discrete``
    ``o_index(x)`` alone. NASP's weight step and the child network: unselected ops never run, and
    the cell does not call a dropped edge at all.
``reference``
    ``sum_k A_bar_k o_k(x)`` over all ops with full autograd, as the original NASP code does in its
    architecture step. Kept to compare against.
``sparse``
    The selected op with autograd, every other op forward-only (``no_grad``), output
    ``sum_k A_bar_k o_k(x)``. Since ``A_bar_k = 0`` for the others, the output, the gradients of
    the network weights and of the edge input equal those of ``reference``, and
    ``dL/dA_bar_k = <dL/d(edge output), o_k(x)>`` is exact for every op, dropped edges included.
    This is the fast NASP architecture step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from nasp.ops import search_op

__all__ = ["MODES", "CellPlan", "MixedOp"]

MODES = ("dense", "discrete", "reference", "sparse")


@dataclass(frozen=True)
class CellPlan:
    """How every edge of one cell type runs in a forward pass.

    Attributes:
        mode: one of :data:`MODES`.
        weights: ``(E, K)`` edge weights for ``dense``, ``reference`` and ``sparse``; else None.
        selection: per edge the selected op index, -1 for a dropped edge, as plain Python ints
            (computed once per step, so the forward pass never synchronises with the device);
            needed by ``discrete`` and ``sparse``.
    """

    mode: str
    weights: torch.Tensor | None = None
    selection: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown execution mode {self.mode!r}; choose one of {MODES}")
        if self.mode != "discrete" and self.weights is None:
            raise ValueError(f"mode {self.mode!r} needs edge weights")
        if self.mode in ("discrete", "sparse") and self.selection is None:
            raise ValueError(f"mode {self.mode!r} needs a selection of one op per edge")


class MixedOp(nn.Module):
    """One edge of the search supernet: candidate ops built by :func:`nasp.ops.search_op`."""

    def __init__(self, C: int, stride: int, primitives: Sequence[str]):
        super().__init__()
        self.primitives = tuple(primitives)
        self.ops = nn.ModuleList(search_op(name, C, stride) for name in self.primitives)

    def forward(self, x: torch.Tensor, mode: str, weights: torch.Tensor | None = None,
                index: int = -1) -> torch.Tensor:
        if mode == "discrete":
            return self.ops[index](x)
        if mode == "sparse":
            out = None
            for k, (w, op) in enumerate(zip(weights.unbind(0), self.ops)):
                if k == index:
                    y = op(x)
                else:
                    with torch.no_grad():
                        y = op(x)
                out = w * y if out is None else out + w * y
            return out
        # dense and reference: the same computation, with softmax(alpha) or A_bar as weights
        return sum(w * op(x) for w, op in zip(weights.unbind(0), self.ops))
