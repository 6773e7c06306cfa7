"""The DARTS cell space's supernet: one :class:`~nasp.core.mixed.MixedOp` per edge of every cell,
run in the execution mode of the plans it is given (see :mod:`nasp.core.mixed`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from nasp.core.mixed import CellPlan, MixedOp, sparse_sum
from nasp.spaces.darts_cnn.network_parts import check_size, preprocess, reduction_layers

__all__ = ["SearchCell", "Supernet"]


class SearchCell(nn.Module):
    """A supernet cell: one :class:`MixedOp` per edge."""

    def __init__(self, steps: int, C_pp: int, C_p: int, C: int, reduction: bool,
                 reduction_prev: bool, primitives: Sequence[str]):
        super().__init__()
        self.steps = steps
        self.reduction = reduction
        self.preprocess0, self.preprocess1 = preprocess(C_pp, C_p, C, reduction_prev, False)
        self.edges = nn.ModuleList(
            MixedOp(C, 2 if reduction and j < 2 else 1, primitives)
            for i in range(steps) for j in range(i + 2)
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, plan: CellPlan) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        if plan.mode == "sparse":
            return self._forward_sparse(states, plan)
        rows = plan.weights.unbind(0) if plan.weights is not None else None
        selection = plan.selection
        e = 0
        for _ in range(self.steps):
            node = None
            for h in states:
                index = selection[e] if selection is not None else -1
                if plan.mode == "discrete" and index < 0:
                    e += 1
                    continue  # an edge the projection drops is not computed at all
                y = self.edges[e](h, plan.mode, rows[e] if rows is not None else None, index)
                node = y if node is None else node + y
                e += 1
            if node is None:
                raise ValueError("a discrete selection left a node without any incoming edge")
            states.append(node)
        return torch.cat(states[2:], dim=1)

    def _forward_sparse(self, states: list[torch.Tensor], plan: CellPlan) -> torch.Tensor:
        e = 0
        for _ in range(self.steps):
            n = len(states)
            edges = [(self.edges[e + j], h, plan.selection[e + j]) for j, h in enumerate(states)]
            states.append(sparse_sum(plan.weights[e:e + n], edges))
            e += n
        return torch.cat(states[2:], dim=1)


class Supernet(nn.Module):
    """The search network: every edge holds all candidate ops of its cell type.

    ``forward(x, plans)`` takes a :class:`~nasp.core.mixed.CellPlan` per cell type (``"normal"``,
    ``"reduce"``) that says how each edge runs.
    """

    def __init__(self, in_channels: int, num_classes: int, layers: int, channels: int,
                 primitives: Mapping[str, Sequence[str]], steps: int = 4, multiplier: int = 4,
                 stem_multiplier: int = 3):
        super().__init__()
        check_size(layers, channels)
        self.steps = steps
        C_curr = stem_multiplier * channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr))
        C_pp, C_p, C_curr = C_curr, C_curr, channels
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in reduction_layers(layers)
            if reduction:
                C_curr *= 2
            cell_type = "reduce" if reduction else "normal"
            self.cells.append(SearchCell(steps, C_pp, C_p, C_curr, reduction, reduction_prev,
                                         primitives[cell_type]))
            reduction_prev = reduction
            C_pp, C_p = C_p, multiplier * C_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)

    def forward(self, x: torch.Tensor, plans: Mapping[str, CellPlan]) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, plans["reduce" if cell.reduction else "normal"])
        return self.classifier(self.global_pooling(s1).flatten(1))
