"""Collapse diagnostics of a search, computed once per epoch for every strategy.

DARTS tends to collapse onto parameter-free operations as its search goes on, and the NASP paper
argues that one cause is the correlation between the outputs of the candidate operations that
the continuous relaxation mixes. Four measurements follow these effects, each per cell type:

``param_free``
    Edges of the current genotype whose op has no parameters (``op_parameter_count(name, C) ==
    0``: ``skip_connect``, pooling, ``none``), per cell type and in ``total``, out of ``edges``
    kept edges.
``entropy``
    ``H(softmax(A_e)) = -sum_k p_k log p_k`` (natural log, at most ``log K``) of every edge's row
    of the architecture parameters: ``per_edge`` lists, the mean per cell type and the ``mean``
    over all edges.
``changed_edges``
    Edges whose selection by ``prox_C1(A)`` (the op index, or -1 for a dropped edge) differs
    from the selection at the previous measurement (for the first one: at the architecture the
    :class:`Diagnostics` was made with), per cell type and in ``total``.
``op_correlation``
    On one fixed batch, the supernet runs once without gradients in ``dense`` mode with uniform
    weights ``1/K`` on every edge and BatchNorm on batch statistics (as during the search; the
    running statistics are restored afterwards). On every edge, the Pearson correlation between
    the flattened outputs of each pair of candidate ops (``none`` and constant outputs excluded)
    is averaged over the pairs; these edge means are averaged over the edges of all cells of a
    cell type, and in ``mean`` over all edges.

Everything goes through the :class:`~nasp.spaces.base.SearchSpace` protocol, the strategy's
architecture matrices and the :class:`~nasp.core.mixed.MixedOp` modules of the supernet, so it works
for every strategy and space. The cost is one forward pass of one batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from nasp.core.mixed import CellPlan, MixedOp
from nasp.core.ops import op_parameter_count
from nasp.core.prox import selection_indices
from nasp.spaces.base import ArchTensors, Genotype, SearchSpace

__all__ = [
    "Diagnostics", "arch_selection", "changed_edges", "edge_entropy", "format_diagnostics",
    "op_correlation", "param_free_count",
]


def _parameter_free(space: SearchSpace, cell_type: str, name: str, k: int) -> bool:
    """Whether op ``name`` (index ``k`` of ``cell_type``) has no parameters: by the image ops'
    table, or, for ops of another kind (a recurrent cell's activations, which use their node's
    matrix), by the space's own cost of the op (0: none)."""
    try:
        return op_parameter_count(name, 4) == 0
    except KeyError:
        return float(space.op_costs(cell_type)[k]) == 0


def param_free_count(space: SearchSpace, genotype: Genotype) -> dict[str, int]:
    """Kept edges of ``genotype`` whose op has no parameters: per cell type, ``total``, and the
    number of kept ``edges``."""
    selection = space.selection_of(genotype)
    out: dict[str, int] = {}
    kept = 0
    for t, sel in selection.items():
        names = space.primitives[t]
        out[t] = sum(_parameter_free(space, t, names[k], k) for k in sel if k >= 0)
        kept += sum(k >= 0 for k in sel)
    out["total"] = sum(out[t] for t in selection)
    out["edges"] = kept
    return out


def edge_entropy(arch: ArchTensors) -> dict[str, list[float]]:
    """Per cell type, the entropy of ``softmax(A_e)`` of every edge ``e`` (natural log)."""
    out = {}
    for t, a in arch.items():
        logp = torch.log_softmax(a.detach().double().cpu(), dim=-1)
        out[t] = (-(logp.exp() * logp).sum(-1)).tolist()
    return out


def arch_selection(space: SearchSpace, arch: ArchTensors) -> dict[str, tuple[int, ...]]:
    """Per cell type, the op index ``prox_C1(A)`` selects on every edge (-1: dropped)."""
    projected = space.project(arch)
    return {t: tuple(selection_indices(p).tolist()) for t, p in projected.items()}


def changed_edges(before: Mapping[str, tuple[int, ...]],
                  after: Mapping[str, tuple[int, ...]]) -> dict[str, int]:
    """Edges whose selection differs between two selections, per cell type and in ``total``."""
    out = {t: sum(a != b for a, b in zip(before[t], after[t])) for t in after}
    out["total"] = sum(out.values())
    return out


@torch.no_grad()
def op_correlation(net: nn.Module, x: torch.Tensor,
                   arch_shapes: Mapping[str, tuple[int, int]]) -> dict[str, float | None]:
    """Mean pairwise Pearson correlation of the candidate ops' outputs, per cell type and over
    all edges (``mean``); None where no edge has two non-constant outputs. See the module
    docstring for the forward pass it runs."""
    first = next(net.parameters())
    plans = {t: CellPlan("dense", torch.full(shape, 1.0 / shape[1], dtype=first.dtype,
                                             device=first.device))
             for t, shape in arch_shapes.items()}
    storage = {p.weights.untyped_storage().data_ptr(): t for t, p in plans.items()}
    per_type: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {t: [] for t in plans}
    outputs: list[torch.Tensor] = []
    current: list[str | None] = [None]

    def before_edge(module, args, kwargs):
        weights = args[2] if len(args) > 2 else kwargs.get("weights")
        current[0] = (None if weights is None
                      else storage.get(weights.untyped_storage().data_ptr()))
        outputs.clear()

    def op_output(module, args, output):
        y = output.detach().reshape(-1)
        outputs.append(y.to(torch.promote_types(y.dtype, torch.float32)))

    def after_edge(module, args, output):
        if current[0] is not None and len(outputs) > 1:
            per_type[current[0]].append(_mean_correlation(outputs))
        outputs.clear()

    handles = []
    for m in net.modules():
        if isinstance(m, MixedOp):
            handles.append(m.register_forward_pre_hook(before_edge, with_kwargs=True))
            handles.append(m.register_forward_hook(after_edge))
            handles += [op.register_forward_hook(op_output)
                        for name, op in zip(m.primitives, m.ops) if name != "none"]
    was_training = net.training
    saved = {k: v.clone() for k, v in net.named_buffers()}
    try:
        net.train()
        net(x, plans)
    finally:
        for h in handles:
            h.remove()
        for k, v in net.named_buffers():
            v.copy_(saved[k])
        net.train(was_training)
    groups = {**per_type, "mean": [r for rs in per_type.values() for r in rs]}
    sums = torch.stack([_average(rs) for rs in groups.values()]).tolist()  # one host sync
    return {t: None if n == 0 else total / n for t, (total, n) in zip(groups, sums)}


def _mean_correlation(outputs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean over pairs of the Pearson correlation of the non-constant outputs, 1)``, or
    ``(0, 0)`` when fewer than two outputs vary; computed without a host sync."""
    Y = torch.stack(outputs)
    varies = Y.amax(dim=1) > Y.amin(dim=1)
    i, j = torch.triu_indices(len(outputs), len(outputs), offset=1, device=Y.device)
    pairs = varies[i] & varies[j]
    n = pairs.sum()
    r = torch.corrcoef(Y)[i, j]
    mean = torch.where(pairs, r, torch.zeros_like(r)).sum() / n.clamp(min=1)
    return mean.double(), (n > 0).double()


def _average(results: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """``(sum of the edge means of the edges with pairs, number of such edges)``."""
    if not results:
        return torch.zeros(2, dtype=torch.float64)
    means, valid = (torch.stack(x).cpu() for x in zip(*results))
    return torch.stack([(means * valid).sum(), valid.sum()])


class Diagnostics:
    """The per-epoch collapse diagnostics of one search (see the module docstring).

    ``batch`` is the fixed input batch of the correlation measurement; ``arch`` the architecture
    at the start, against which the first :meth:`measure` counts changed edges.
    """

    def __init__(self, space: SearchSpace, net: nn.Module, batch: torch.Tensor,
                 arch: ArchTensors):
        self.space = space
        self.net = net
        self.batch = batch
        self.previous = arch_selection(space, arch)

    def measure(self, arch: ArchTensors, genotype: Genotype) -> dict[str, Any]:
        """All four measurements for the current architecture and genotype."""
        return {
            "param_free": param_free_count(self.space, genotype),
            **self.measure_weights(arch),
            "op_correlation": op_correlation(self.net, self.batch, self.space.arch_shapes()),
        }

    def measure_weights(self, arch: ArchTensors) -> dict[str, Any]:
        """The measurements of the architecture weights alone (``entropy``,
        ``changed_edges``): those of any space, a user's model's included."""
        selection = arch_selection(self.space, arch)
        changed = changed_edges(self.previous, selection)
        self.previous = selection
        entropy = edge_entropy(arch)
        every = [h for hs in entropy.values() for h in hs]
        return {"entropy": {**{t: sum(hs) / len(hs) for t, hs in entropy.items()},
                            "mean": sum(every) / len(every), "per_edge": entropy},
                "changed_edges": changed}


def format_diagnostics(d: Mapping[str, Any]) -> str:
    """The short part of the epoch's log line: ``param-free 5/16  H 1.94  changed 2  corr
    0.41``."""
    corr = d["op_correlation"]["mean"]
    return (f"param-free {d['param_free']['total']}/{d['param_free']['edges']}  "
            f"H {d['entropy']['mean']:.2f}  changed {d['changed_edges']['total']}  "
            f"corr {'-' if corr is None else f'{corr:.2f}'}")
