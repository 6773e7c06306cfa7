"""NASP: architecture search by proximal iterations (Yao, Xu, Tu, Zhu, AAAI 2020, Algorithm 2).

The architecture ``A`` (one ``E x K`` matrix per cell type) is continuous, initialised to 0.5 and
kept in ``C2 = [0, 1]``; the network only ever runs at its projection ``A_bar = prox_C1(A)``
(one op per edge, two edges per node). One iteration:

1. ``A_bar = prox_C1(A)``;
2. on a validation batch, the loss ``L_val(w, A_bar) + lambda * R(A_bar)`` with the network at
   ``A_bar``; its gradient with respect to ``A_bar`` becomes ``A.grad``;
3. an Adam step on ``A``, then ``A = prox_C2(A) = clamp(A, 0, 1)``;
4. ``A_bar = prox_C1(A)``;
5. an SGD step on the weights with a training batch through the discrete child at ``A_bar``:
   ops that ``A_bar`` does not select are not executed.

``R(A_bar) = sum_{normal edges e, ops k} b_k A_bar[e, k]^2`` with ``b_k`` the parameter count of
op ``k`` normalised over the primitive set (sum 1); ``lambda`` is ``size_penalty`` (default 0).
The normal cell is the space's first cell type (``"normal"`` in the DARTS space, the one cell of
NAS-Bench-201).

Options (:class:`NASPOptions`; the ``faithful`` preset sets the paper's and reference code's
values):

- ``arch_update``: ``"lazy"`` is the paper's Algorithm 2 above (continuous ``A``, network at
  ``prox_C1(A)``); ``"plain"`` is its Algorithm 1, the plain proximal gradient step on the
  discrete architecture: after each step ``A`` itself becomes ``A_bar`` (kept for the paper's
  comparison RQ2; a step of size ``a_lr`` from a one-hot point rarely changes the argmax).
- ``warmup_epochs``: the first epochs make no architecture step; each step trains one uniformly
  drawn path instead (:meth:`~nasp.strategies.base.Strategy.path_step`), so that the ops are
  trained before A judges them. Default 0, as the paper: on NAS-Bench-201 a warm-up of 30% of
  the epochs found worse cells on average (BENCHMARKS.md).
- ``path_mix``: after the warm-up, the share of weight steps that train a uniformly drawn path
  instead of the child at ``A_bar`` (drawn per step; 0: always the child, as the paper), so that
  ops the projection does not select keep being trained (as in SPOS and FairNAS).
- ``nasp_cell``: the cell returned (and logged, and scored): ``"projection"``, the child at
  ``A_bar = prox_C1(A)`` that the search trains and evaluates, or ``"softmax"``, the DARTS
  derivation on ``softmax(A)`` (per node the edges with the largest softmax maximum), which the
  released code's ``genotype()`` returns and which can differ from the trained child on the DARTS
  space (on NAS-Bench-201, where every edge is kept, the two are the same cell). Both are
  recorded every epoch (``cells`` in metrics.jsonl) and at the end (``genotypes.json``).

Per epoch :meth:`epoch_metrics` reports how decided the choice is: ``flips``, the steps whose
architecture step changed the projected cell, and ``margin``, the mean over edges of the gap
between the two largest entries of ``A`` (the softmax entropy says little here: with ``A`` in
``[0, 1]`` it can only range over a sliver of ``[0, log K]``).

The architecture step runs in ``sparse`` mode by default (the selected ops with autograd, the
others forward-only; exact gradients, see :mod:`nasp.core.mixed`); ``arch_mode="reference"`` runs
every op with autograd as the original code does. Both give the same update.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from nasp.config.options import check_numbers, option
from nasp.core.budget import best_within, one_hot
from nasp.core.mixed import CellPlan
from nasp.core.prox import prox_c2, selection_indices
from nasp.registry import STRATEGIES
from nasp.spaces.base import Genotype
from nasp.strategies.base import ArchOptions, Batch, Strategy, discrete_plans

__all__ = ["NASP", "NASPOptions"]


@dataclass
class NASPOptions(ArchOptions):
    """NASP's options besides the architecture step's (see the module docstring)."""

    title: ClassVar[str] = "NASP"

    size_penalty: float = option(
        0.0, metavar="LAMBDA", help="NASP model-size regulariser weight lambda (default 0)")
    arch_mode: str = option(
        "sparse", choices=("sparse", "reference"),
        help="NASP architecture step: sparse (fast, default) or reference (every op with "
             "autograd, as the original code)")
    init_noise: float = option(
        0.0, metavar="STD",
        help="NASP: noise added to the initial A = 0.5 to break ties (default 0)")
    arch_update: str = option(
        "lazy", choices=("lazy", "plain"),
        help="NASP: lazy proximal iteration (the paper's Algorithm 2, default) or plain proximal "
             "gradient on the discrete architecture (Algorithm 1)")
    nasp_cell: str = option(
        "projection", choices=("projection", "softmax"),
        help="NASP: the cell returned: projection (the trained child at prox_C1(A); default) or "
             "softmax (the DARTS derivation on softmax(A), as the released code)")
    arch_grad: str = option(
        "plain", choices=("plain", "centered"),
        help="NASP: the architecture gradient dL/dA_bar as it is (plain, the paper; default) or "
             "centered per edge (minus the mean over the edge's ops)")
    path_mix: float = option(
        0.0, metavar="P",
        help="NASP: after the warm-up, the share of weight steps that train a uniformly drawn "
             "path instead of the selected child (default 0)")

    def validate(self, run: Any) -> None:
        super().validate(run)
        check_numbers(self, ("size_penalty", "init_noise"), 0, "a non-negative number")
        check_numbers(self, ("path_mix",), 0, "a probability in [0, 1]", 1.0000001)


@STRATEGIES.register
class NASP(Strategy):
    name = "nasp"
    Options = NASPOptions
    trains_what = "the child at prox_C1(A) (in warm-up epochs: drawn paths)"
    child_what = "the child at prox_C1(A), which NASP trains"
    summary_what = "flips: the epoch's steps whose architecture step changed the child"

    def __init__(self, space, net, config):
        super().__init__(space, net, config)
        self.size_cell = space.cell_types[0]  # the normal cell: the one R counts
        like = self.arch[self.size_cell]
        self.costs = space.op_costs(self.size_cell).to(like.device, like.dtype)
        self.flips = 0  # steps of the current epoch that changed the projected cell
        self.project()

    def init_arch(self, shape: tuple[int, int]) -> torch.Tensor:
        A = torch.full(shape, 0.5)
        if self.options.init_noise:
            A += self.options.init_noise * torch.randn(shape)
        return A

    def project(self) -> None:
        """Recompute ``A_bar = prox_C1(A)`` and the per-edge selection (one host sync); under a
        budget, the projection onto ``C1 ∩ {cost <= budget}``, all cell types jointly
        (:func:`~nasp.core.budget.best_within`)."""
        if self.budget is not None:
            self.selection = best_within(self.arch, self.budget)
            self.A_bar = one_hot(self.selection, self.arch)
            return
        self.A_bar = self.space.project(self.arch)
        types = list(self.A_bar)
        flat = torch.cat([selection_indices(self.A_bar[t]) for t in types]).tolist()
        ends = torch.tensor([self.A_bar[t].shape[0] for t in types]).cumsum(0).tolist()
        self.selection = {t: tuple(flat[end - self.A_bar[t].shape[0]:end])
                          for t, end in zip(types, ends)}

    def size_regulariser(self, A_bar: dict[str, torch.Tensor]) -> torch.Tensor:
        """``R(A_bar) = sum_{e,k} b_k A_bar_normal[e, k]^2``."""
        return (self.costs * A_bar[self.size_cell].square()).sum()

    def arch_gradient(self, val: Batch) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Gradient of the architecture objective with respect to ``A_bar``, and the loss."""
        x, y = val
        A_bar = {t: a.detach().requires_grad_(True) for t, a in self.A_bar.items()}
        plans = {t: CellPlan(self.options.arch_mode, A_bar[t], self.selection[t]) for t in A_bar}
        with self.autocast():
            loss = self.task.loss(self.net(x, plans), y)
        objective = loss
        if self.options.size_penalty:
            objective = loss + self.options.size_penalty * self.size_regulariser(A_bar)
        grads = torch.autograd.grad(objective, list(A_bar.values()))
        if self.options.arch_grad == "centered":  # the advantage of each op over the row's mean
            grads = [g - g.mean(dim=1, keepdim=True) for g in grads]
        return dict(zip(A_bar, grads)), loss.detach()

    def arch_step(self, val: Batch) -> torch.Tensor:
        """Steps 1-4: gradient at ``A_bar``, Adam on ``A``, clamp, re-project. Returns the loss."""
        grads, arch_loss = self.arch_gradient(val)
        self.set_arch_grads(grads)
        with torch.no_grad():
            for a in self.arch.values():
                a.copy_(prox_c2(a))
        before = self.selection
        self.project()
        self.flips += self.selection != before
        if self.options.arch_update == "plain":  # Algorithm 1: A stays discrete
            with torch.no_grad():
                for t, a in self.arch.items():
                    a.copy_(self.A_bar[t])
        return arch_loss

    def step(self, train: Batch, val: Batch) -> dict[str, torch.Tensor]:
        if self.warming_up:
            return self.warmup_step(train)
        arch_loss = self.arch_step(val)
        mix = self.options.path_mix
        if mix and torch.rand((), generator=self.path_generator).item() < mix:
            loss, correct = self.path_step(train)
        else:
            loss, correct = self.weight_step(train, self.child_plans())
        return {"train_loss": loss, "train_correct": correct, "arch_loss": arch_loss}

    def cells(self) -> dict[str, Genotype]:
        """The two cells NASP can return: ``projection`` (the trained child) and ``softmax``."""
        return {"projection": self.space.genotype_of(self.selection),
                "softmax": self.derive()}

    def genotype(self) -> Genotype:
        """The cell ``nasp_cell`` names (see the module docstring)."""
        return self.cells()[self.options.nasp_cell]

    def begin_epoch(self, epoch: int) -> None:
        super().begin_epoch(epoch)
        self.flips = 0

    def margin(self) -> float:
        """The mean over edges of the gap between the two largest entries of ``A``."""
        margins = []
        for a in self.arch.values():
            if a.shape[1] < 2:  # a single option (a user's Choice): nothing to decide
                continue
            top = a.detach().topk(2, dim=1).values
            margins.extend((top[:, 0] - top[:, 1]).tolist())
        return sum(margins) / len(margins) if margins else 0.0

    def epoch_metrics(self) -> dict[str, Any]:
        return {"nasp": {"flips": self.flips, "margin": self.margin(),
                         "warmup": self.warming_up}}

    def epoch_summary(self) -> str:
        if self.warming_up:
            return "warm-up"
        return f"flips {self.flips}"

    def child_plans(self) -> dict[str, CellPlan]:
        """The network NASP trains: the discrete child at ``A_bar``."""
        return discrete_plans(self.selection)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "flips": self.flips}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.flips = state.get("flips", 0)
        self.project()
