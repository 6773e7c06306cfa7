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
    This is the fast NASP architecture step. It requires weights that vanish off the selection,
    as ``prox_C1`` produces. A cell combines all edges entering a node in one
    :func:`sparse_sum`, so the zero terms are never materialised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from nasp.core.ops import search_op

__all__ = ["MODES", "CellPlan", "MixedOp", "mixed_forward", "sparse_block", "sparse_combine",
           "sparse_sum"]

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


class _SparseSum(torch.autograd.Function):
    """``sum_i w[pos_i] * y_i`` where ``w`` vanishes off the first ``n_sel`` outputs.

    Forward adds only the selected outputs (each times its weight); backward gives every weight
    its exact gradient ``<g, y_i>`` and passes ``g * w[pos_i]`` to the selected outputs. The other
    outputs were computed without autograd and receive nothing.
    """

    @staticmethod
    def forward(ctx, weights, positions, n_sel, *outputs):
        flat = weights.reshape(-1)
        ctx.positions = positions
        ctx.n_sel = n_sel
        ctx.save_for_backward(weights, *outputs)
        if n_sel == 0:
            return torch.zeros_like(outputs[0])
        total = outputs[0] * flat[positions[0]]
        for i in range(1, n_sel):
            total = total + outputs[i] * flat[positions[i]]
        return total

    @staticmethod
    def backward(ctx, g):
        weights, *outputs = ctx.saved_tensors
        flat = weights.reshape(-1)
        # one copy of g into the outputs' memory format, then every <g, y> is a plain dot
        # product of two dense 1-D views (g often arrives as a strided slice of a concat)
        layout = (torch.channels_last if _is_channels_last(outputs[0])
                  else torch.contiguous_format)
        g_flat = _flat(g.contiguous(memory_format=layout))
        if g_flat.dtype in (torch.float16, torch.bfloat16):
            g_flat = g_flat.float()
        dots = torch.stack([torch.dot(g_flat, _flat(y.contiguous(memory_format=layout)).to(
            g_flat.dtype)) for y in outputs])
        index = torch.tensor(ctx.positions, device=weights.device)
        grad_w = torch.zeros_like(flat).index_put_((index,), dots.to(flat.dtype), accumulate=True)
        grad_outputs = [g * flat[ctx.positions[i]] for i in range(ctx.n_sel)]
        grad_outputs += [None] * (len(outputs) - ctx.n_sel)
        return grad_w.view_as(weights), None, None, *grad_outputs


def _is_channels_last(t: torch.Tensor) -> bool:
    return (t.dim() == 4 and not t.is_contiguous()
            and t.is_contiguous(memory_format=torch.channels_last))


def _flat(t: torch.Tensor) -> torch.Tensor:
    """A 1-D view of a dense NCHW or channels-last tensor, in memory order."""
    return (t.permute(0, 2, 3, 1) if _is_channels_last(t) else t).reshape(-1)


def sparse_sum(weights: torch.Tensor, edges: Sequence[tuple[nn.Module, torch.Tensor, int]]
               ) -> torch.Tensor:
    """Sparse-mode output of several edges entering one node.

    ``weights`` holds the rows of those edges (``(len(edges), K)``; zero except at the selected
    ops), ``edges`` the ``(edge, input, selected op or -1)`` of each, an edge being any module
    with its candidate ops in ``.ops`` (:class:`MixedOp`, ``nasp.nn.Choice``). The selected ops
    run with autograd, all others without; the result is ``sum_{e,k} weights[e, k]
    o_{e,k}(x_e)`` with exact gradients for every weight (see the module docstring).
    """
    K = weights.shape[-1]
    selected, others = [], []
    for row, (edge, x, index) in enumerate(edges):
        for k, op in enumerate(edge.ops):
            if k == index:
                selected.append((row * K + k, op(x)))
            else:
                with torch.no_grad():
                    others.append((row * K + k, op(x)))
    return sparse_combine(weights, selected, others)


def sparse_combine(weights: torch.Tensor, selected: Sequence[tuple[int, torch.Tensor]],
                   others: Sequence[tuple[int, torch.Tensor]]) -> torch.Tensor:
    """:func:`sparse_sum` from op outputs already computed: ``sum_i weights.flatten()[pos_i] y_i``
    over the ``(pos_i, y_i)`` of ``selected`` (computed with autograd) and ``others`` (computed
    without; their weights must be zero), with the exact gradient ``<g, y_i>`` for the weight of
    every listed output. A weight listed nowhere gets a zero gradient: leave out only outputs
    known to be zero (a ``none`` op). ``others`` must not be empty when ``selected`` is.

    For a space whose ops share work that :class:`MixedOp` cannot express (the DARTS recurrent
    cell computes all ops of an input from one matrix product).
    """
    positions = tuple(p for p, _ in selected) + tuple(p for p, _ in others)
    return _SparseSum.apply(weights, positions, len(selected),
                            *(y for _, y in selected), *(y for _, y in others))


class _SparseBlock(torch.autograd.Function):
    """``sum_i w[pos_i] * y_i`` over the selected outputs ``y_i`` (with autograd), where the
    weights vanish off them; ``block`` (no autograd) holds, at ``block_positions``, the outputs
    of every op whose weight gets a gradient, the selected ones included. Backward: every
    weight's exact gradient ``<g, block_n>`` in one matrix product; ``g * w[pos_i]`` to each
    selected output."""

    @staticmethod
    def forward(ctx, weights, positions, block_positions, block, *selected):
        flat = weights.reshape(-1)
        ctx.positions, ctx.block_positions = positions, block_positions
        ctx.save_for_backward(weights, block)
        total = torch.zeros_like(block[0])
        for pos, y in zip(positions, selected):
            total = total + y * flat[pos]
        return total

    @staticmethod
    def backward(ctx, g):
        weights, block = ctx.saved_tensors
        flat = weights.reshape(-1)
        dots = block.reshape(block.shape[0], -1) @ g.reshape(-1).to(block.dtype)
        index = torch.tensor(ctx.block_positions, device=weights.device)
        grad_w = torch.zeros_like(flat).index_put_((index,), dots.to(flat.dtype),
                                                   accumulate=True)
        return (grad_w.view_as(weights), None, None, None,
                *(g * flat[pos] for pos in ctx.positions))


def sparse_block(weights: torch.Tensor, selected: Sequence[tuple[int, torch.Tensor]],
                 block: torch.Tensor, block_positions: Sequence[int]) -> torch.Tensor:
    """:func:`sparse_combine` for ops whose outputs come as one tensor: ``block`` ``(N, ...)``,
    computed without autograd, holds the output of every op at ``block_positions`` (the
    flattened weight index of each), the selected ones included; ``selected`` the ``(position,
    output)`` of the selected ops computed with autograd. Same result and gradients as
    :func:`sparse_combine`, with the weights' gradients in one matrix product instead of one
    dot product per op (the DARTS recurrent cell: every (input, op) of a node at once)."""
    return _SparseBlock.apply(weights, tuple(p for p, _ in selected), tuple(block_positions),
                              block, *(y for _, y in selected))


class MixedOp(nn.Module):
    """One edge of the search supernet: candidate ops built by :func:`nasp.core.ops.search_op`."""

    def __init__(self, C: int, stride: int, primitives: Sequence[str]):
        super().__init__()
        self.primitives = tuple(primitives)
        self.ops = nn.ModuleList(search_op(name, C, stride) for name in self.primitives)

    def forward(self, x: torch.Tensor, mode: str, weights: torch.Tensor | None = None,
                index: int = -1) -> torch.Tensor:
        return mixed_forward(self, x, mode, weights, index)


def mixed_forward(edge: nn.Module, x: torch.Tensor, mode: str,
                  weights: torch.Tensor | None = None, index: int = -1) -> torch.Tensor:
    """One edge in execution mode ``mode`` (see the module docstring): ``edge`` is any module
    with its candidate ops in ``edge.ops`` (a :class:`MixedOp`, a user's ``nasp.nn.Choice``),
    ``weights`` its row ``(K,)``, ``index`` its selected op."""
    if mode == "discrete":
        return edge.ops[index](x)
    if mode == "sparse":
        return sparse_sum(weights[None], [(edge, x, index)])
    # dense and reference: the same computation, with softmax(alpha) or A_bar as weights
    return sum(w * op(x) for w, op in zip(weights.unbind(0), edge.ops))
