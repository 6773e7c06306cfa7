"""The proximal steps of NASP (Yao et al., 2020), vectorised on the device.

NASP keeps continuous architecture parameters ``A`` (one row per edge, one column per candidate op)
inside ``C2 = [0, 1]^{E x K}`` and projects them onto the discrete set ``C1`` before every forward
pass:

- :func:`prox_c2` is the Euclidean projection onto ``C2``: ``clamp(A, 0, 1)``.
- :func:`prox_c1` projects onto ``C1``: per edge the largest entry becomes exactly 1 and the rest 0
  (ties go to the op that comes first in a tie order: the spaces put ``none`` last, see
  :func:`tie_order`, so ``none`` wins only when it is strictly largest); then, for each node,
  only the ``keep`` incoming edges with the largest raw row maximum ``max_k A[e, k]`` stay (ties
  go to the lowest edge index); the rows of the other edges become all zero.

Both run as a handful of tensor operations with no host synchronisation.
"""

from __future__ import annotations

import torch

__all__ = ["best_ops", "edge_keep_mask", "prox_c1", "prox_c2", "selection_indices", "tie_order"]


def prox_c2(A: torch.Tensor) -> torch.Tensor:
    """Projection onto ``[0, 1]``: ``clamp(A, 0, 1)`` (a new tensor)."""
    return A.clamp(0.0, 1.0)


def edge_keep_mask(scores: torch.Tensor, edge_node: torch.Tensor, keep: int) -> torch.Tensor:
    """Boolean mask of the edges that survive the per-node top-``keep`` rule.

    ``scores[e]`` ranks edge ``e`` among the edges entering the same node ``edge_node[e]``.
    Edge ``e`` is kept when fewer than ``keep`` edges of its node beat it, where ``e'`` beats
    ``e`` if ``scores[e'] > scores[e]``, or the scores are equal and ``e' < e`` (ties: lowest
    edge index).
    """
    same_node = edge_node[:, None] == edge_node[None, :]
    idx = torch.arange(scores.shape[0], device=scores.device)
    beats = (scores[:, None] > scores[None, :]) | (
        (scores[:, None] == scores[None, :]) & (idx[:, None] < idx[None, :])
    )
    rank = (beats & same_node).sum(dim=0)
    return rank < keep


def tie_order(primitives: tuple[str, ...] | list[str]) -> torch.Tensor:
    """The column order in which ties are broken: every op in its own order, ``none`` last.

    Why ``none`` loses ties: NASP starts from ``A = 0.5`` everywhere, where every entry ties. With
    ties to the lowest index and ``none`` first (the DARTS set ``darts``), every edge would select
    ``none``, the network would output a constant and every architecture gradient
    ``<dL/d(edge output), o_k(x)>`` would be exactly 0: the search could never leave that point.
    """
    names = list(primitives)
    return torch.tensor([k for k, n in enumerate(names) if n != "none"]
                        + [k for k, n in enumerate(names) if n == "none"])


def best_ops(A: torch.Tensor, order: torch.Tensor | None = None) -> torch.Tensor:
    """Per row of ``A``, the column of its largest entry; ties go to the column that comes first
    in ``order`` (a permutation of the columns, see :func:`tie_order`; None: lowest index)."""
    if order is None:
        return A.argmax(dim=1)  # the first maximal value
    order = order.to(A.device)
    return order[A[:, order].argmax(dim=1)]


def prox_c1(A: torch.Tensor, edge_node: torch.Tensor, keep: int,
            order: torch.Tensor | None = None) -> torch.Tensor:
    """Projection onto the discrete constraint set ``C1`` (see the module docstring).

    Args:
        A: architecture parameters, shape ``(E, K)``.
        edge_node: for each edge, the index of the node it enters, shape ``(E,)``.
        keep: incoming edges kept per node (2 in the DARTS cell; a value at least the in-degree
            keeps every edge).
        order: the column order in which ties between ops are broken (:func:`tie_order`; None:
            the lowest op index wins).

    Returns:
        ``A_bar`` of the same shape and dtype: one-hot rows for kept edges, zero rows otherwise.
    """
    A = A.detach()
    best = best_ops(A, order)
    one_hot = torch.zeros_like(A).scatter_(1, best[:, None], 1.0)
    kept = edge_keep_mask(A.amax(dim=1), edge_node, keep)
    return one_hot * kept[:, None].to(A.dtype)


def selection_indices(A_bar: torch.Tensor) -> torch.Tensor:
    """Per edge, the index of the op ``A_bar`` selects, or -1 for an edge it drops."""
    return torch.where(A_bar.amax(dim=1) > 0, A_bar.argmax(dim=1), -1)
