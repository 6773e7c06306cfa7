"""What every search strategy shares: the weight optimiser, its schedule and the weight step.

A strategy owns the architecture parameters (one matrix per cell type of the space) and both
optimisers. The search loop calls :meth:`Strategy.step` once per iteration with a training batch
(for the network weights) and a validation batch (for the architecture), and
:meth:`Strategy.end_epoch` after each epoch.

Network weights: SGD (lr ``w_lr``, momentum, weight decay), the lr annealed with a cosine from
``w_lr`` to ``w_lr_min`` over the epochs, gradient norm clipped to ``grad_clip``.
Architecture: Adam (``a_lr``, ``a_betas``) with coupled weight decay ``a_weight_decay``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nasp import distributed
from nasp.config import SearchConfig
from nasp.device import autocast, resolve_precision
from nasp.genotype import Genotype
from nasp.mixed import CellPlan
from nasp.spaces.base import SearchSpace

Batch = tuple[torch.Tensor, torch.Tensor]
Plans = Mapping[str, CellPlan]

__all__ = ["Batch", "Plans", "Strategy"]


class Strategy(ABC):
    """Base class of the search strategies; subclasses implement ``init_arch`` and ``step``."""

    name = "base"
    #: False for a strategy that needs no training (random search scored by a benchmark table):
    #: the search loop then runs no steps and no child evaluation in its epochs.
    trains = True

    def __init__(self, space: SearchSpace, net: nn.Module, config: SearchConfig):
        self.space = space
        self.net = net
        self.config = config
        first = next(net.parameters())
        self.amp_dtype = resolve_precision(config.precision, first.device)
        self.arch = {t: self.init_arch(shape).to(first.device, first.dtype).requires_grad_(True)
                     for t, shape in space.arch_shapes().items()}
        self.weights = [p for p in net.parameters()]
        self.w_optim = torch.optim.SGD(self.weights, lr=config.w_lr, momentum=config.w_momentum,
                                       weight_decay=config.w_weight_decay)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.w_optim, T_max=config.epochs, eta_min=config.w_lr_min)
        self.a_optim = torch.optim.Adam(list(self.arch.values()), lr=config.a_lr,
                                        betas=config.a_betas, weight_decay=config.a_weight_decay)
        # data-parallel: every rank starts from rank 0's weights and architecture
        distributed.broadcast_([*net.parameters(), *net.buffers(), *self.arch.values()])

    # -- to implement --------------------------------------------------------------------------
    @abstractmethod
    def init_arch(self, shape: tuple[int, int]) -> torch.Tensor:
        """Initial architecture matrix of the given shape."""

    @abstractmethod
    def step(self, train: Batch, val: Batch) -> dict[str, torch.Tensor]:
        """One search iteration. Returns detached tensors (no host sync): ``train_loss``,
        ``train_correct``, ``arch_loss``."""

    # -- shared ------------------------------------------------------------------------------
    def arch_parameters(self) -> dict[str, torch.Tensor]:
        return self.arch

    def autocast(self):
        """Autocast context of the configured precision (a no-op for float32)."""
        return autocast(next(self.net.parameters()).device, self.amp_dtype)

    @property
    def lr(self) -> float:
        return self.w_optim.param_groups[0]["lr"]

    def genotype(self) -> Genotype:
        return self.space.derive(self.arch)

    def child_plans(self) -> dict[str, CellPlan]:
        """Discrete plans of the current child network (evaluated after each epoch)."""
        selection = self.space.selection_of(self.genotype())
        return {t: CellPlan("discrete", selection=s) for t, s in selection.items()}

    def end_epoch(self) -> None:
        self.scheduler.step()

    # -- per-epoch hooks of the search loop (no-ops here; random search uses them) ------------
    def begin_epoch(self, epoch: int) -> None:
        """Called before the steps of epoch ``epoch`` (0-based)."""
        return None

    def child_evaluated(self, result: Mapping[str, float]) -> None:
        """The loop's evaluation (``loss``, ``top1``, ...) of :meth:`child_plans` on the
        validation half, after :meth:`end_epoch`."""
        return None

    def epoch_metrics(self) -> dict[str, Any]:
        """Entries this strategy adds to the epoch's metrics record."""
        return {}

    def epoch_summary(self) -> str:
        """A short text this strategy adds to the epoch's log line."""
        return ""

    def weight_step(self, batch: Batch, plans: Plans) -> tuple[torch.Tensor, torch.Tensor]:
        """One SGD step on the network weights; returns (loss, number of correct predictions)."""
        x, y = batch
        self.w_optim.zero_grad(set_to_none=True)
        with self.autocast():
            logits = self.net(x, plans)
            loss = F.cross_entropy(logits, y)
        loss.backward()
        distributed.average_gradients_(self.weights)  # data-parallel: mean over ranks
        nn.utils.clip_grad_norm_(self.weights, self.config.grad_clip)
        self.w_optim.step()
        return loss.detach(), (logits.detach().argmax(1) == y).sum()

    def set_arch_grads(self, grads: Mapping[str, torch.Tensor]) -> None:
        """Adam step on the architecture parameters with the given gradients (averaged over the
        ranks of a data-parallel run)."""
        grads = distributed.all_average(grads)
        for t, g in grads.items():
            self.arch[t].grad = g
        self.a_optim.step()
        self.a_optim.zero_grad(set_to_none=True)

    def state_dict(self) -> dict:
        return {
            "strategy": self.name,
            "net": self.net.state_dict(),
            "arch": {t: a.detach().clone() for t, a in self.arch.items()},
            "w_optim": self.w_optim.state_dict(),
            "a_optim": self.a_optim.state_dict(),
            "scheduler": self.scheduler.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("strategy") != self.name:
            raise ValueError(f"checkpoint of strategy {state.get('strategy')!r} cannot be loaded "
                             f"into {self.name!r}")
        self.net.load_state_dict(state["net"])
        with torch.no_grad():
            for t, a in self.arch.items():
                a.copy_(state["arch"][t])
        self.w_optim.load_state_dict(state["w_optim"])
        self.a_optim.load_state_dict(state["a_optim"])
        self.scheduler.load_state_dict(state["scheduler"])
