"""The SearchSpace protocol: everything a strategy may know about a search space."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

ArchTensors = Mapping[str, torch.Tensor]
Selection = Mapping[str, tuple[int, ...]]
Genotype = Any
"""A space's genotype: immutable data of the space's own type (see each space's genotype.py)."""


@runtime_checkable
class SearchSpace(Protocol):
    """A cell search space.

    Architecture parameters are one ``(num_edges, len(primitives[t]))`` matrix per cell type ``t``,
    shared by all cells of that type.
    """

    name: str
    cell_types: tuple[str, ...]
    primitives: Mapping[str, tuple[str, ...]]

    def arch_shapes(self) -> dict[str, tuple[int, int]]:
        """Shape of the architecture matrix of every cell type."""

    def project(self, A: ArchTensors) -> dict[str, torch.Tensor]:
        """prox_C1 of every cell type's matrix: one-hot rows on kept edges, zero rows elsewhere."""

    def build_supernet(self, in_channels: int, num_classes: int, layers: int,
                       channels: int) -> nn.Module:
        """The supernet, whose ``forward(x, plans)`` takes one CellPlan per cell type."""

    def derive(self, A: ArchTensors) -> Genotype:
        """The genotype the search returns from its architecture parameters."""

    def genotype_of(self, selection: Selection) -> Genotype:
        """The genotype of a discrete selection (one op index per edge, -1 = dropped)."""

    def selection_of(self, genotype: Genotype) -> dict[str, tuple[int, ...]]:
        """The per-edge selection that runs ``genotype`` on the supernet."""

    def op_costs(self, cell_type: str) -> torch.Tensor:
        """Per op of ``cell_type``, its parameter count normalised to sum to 1 (the b_k of NASP)."""
