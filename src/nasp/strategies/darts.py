"""DARTS (Liu, Simonyan, Yang, ICLR 2019), first and second order, on the same supernet.

``alpha`` (one ``E x K`` matrix per cell type) is initialised to ``1e-3 N(0, 1)``; every edge
outputs ``sum_k softmax(alpha)_k o_k(x)`` (``dense`` mode).

First order: the architecture gradient is that of ``L_val(w, alpha)`` at the current weights.

Second order: the gradient of ``L_val(w', alpha)`` at the virtual step
``w' = w - xi (mu * buf + grad_w L_train(w, alpha) + wd * w)``, i.e. exactly the next SGD update
with momentum ``mu``, momentum buffer ``buf`` and weight decay ``wd``, at ``xi`` = the current
network lr. With ``v = grad_w' L_val(w', alpha)``::

    grad_alpha = grad_alpha L_val(w', alpha)
                 - xi * (grad_alpha L_train(w + eps v) - grad_alpha L_train(w - eps v)) / (2 eps)

with ``eps = r / ||v||`` (``r = hessian_radius``, 0.01 as in DARTS): the finite-difference
Hessian-vector product, evaluated around the original ``w``. The whole second-order gradient (the
virtual step, the unrolled validation loss that gives ``v`` and the Hessian-vector product) runs
in float32 whatever the precision: ``eps v`` is far below bfloat16's resolution, so under
autocast ``w + eps v`` and ``w - eps v`` give nearly the same loss and the difference is noise.

Then, for both orders, an Adam step on ``alpha`` and an SGD step on the weights with the
training batch through the dense supernet at the new ``softmax(alpha)``. The first-order gradient
and the weight step run in the configured precision.

``L_train`` and ``L_val`` above are the task's plain loss (:meth:`~nasp.tasks.Task.loss`); only
the real weight step minimises the task's objective. For a language model this is DARTS's
``rnn/architect.py``: the virtual step and the architecture gradient use ``_loss`` (the negative
log-likelihood alone), the weight step adds the TAR ("slowness") penalty.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch.func import functional_call

from nasp.config.options import check_numbers, option
from nasp.core.mixed import CellPlan
from nasp.registry import STRATEGIES
from nasp.runtime import distributed
from nasp.strategies.base import ArchOptions, Batch, Strategy

__all__ = ["DARTS", "DARTS2", "DARTS2Options"]


@dataclass
class DARTS2Options(ArchOptions):
    """DARTS second order's options besides the architecture step's: ``hessian_radius``, the
    ``r`` of ``eps = r / ||v||`` in the finite-difference Hessian (see the module docstring)."""

    title: ClassVar[str] = "DARTS second order"

    hessian_radius: float = option(0.01, cli=False)

    def validate(self, run: Any) -> None:
        super().validate(run)
        check_numbers(self, ("hessian_radius",), 0, "a non-negative number")


@STRATEGIES.register
class DARTS(Strategy):
    """DARTS, first order."""

    name = "darts"
    Options = ArchOptions
    val_measure = "supernet"  # DARTS's valid_acc: the softmax-mixed supernet
    trains_what = "the softmax-mixed supernet"
    child_what = "the derived cell on the supernet's weights"

    def init_arch(self, shape: tuple[int, int]) -> torch.Tensor:
        return 1e-3 * torch.randn(shape)

    def dense_plans(self, detach: bool = False) -> dict[str, CellPlan]:
        return {t: CellPlan("dense", torch.softmax(a.detach() if detach else a, dim=-1))
                for t, a in self.arch.items()}

    def supernet_plans(self) -> dict[str, CellPlan]:
        """The supernet at the current ``softmax(alpha)``."""
        return self.dense_plans(detach=True)

    def loss(self, batch: Batch, plans, params=None, amp: bool = True) -> torch.Tensor:
        """The task's plain loss (cross-entropy; a language model's likelihood without its
        TAR penalty) of the network at ``plans`` (and ``params``, if given); in the configured
        precision, or in float32 with ``amp=False``."""
        x, y = batch
        with self.autocast() if amp else contextlib.nullcontext():
            logits = (self.net(x, plans) if params is None
                      else functional_call(self.net, params, (x, plans)))
            return self.task.loss(logits, y)

    def arch_gradient(self, train: Batch, val: Batch) -> tuple[dict[str, torch.Tensor],
                                                                torch.Tensor]:
        """Gradient of the architecture objective with respect to alpha, and the val loss."""
        loss = self.loss(val, self.dense_plans())
        grads = torch.autograd.grad(loss, list(self.arch.values()))
        return dict(zip(self.arch, grads)), loss.detach()

    def step(self, train: Batch, val: Batch) -> dict[str, torch.Tensor]:
        if self.warming_up:
            return self.warmup_step(train)
        grads, arch_loss = self.arch_gradient(train, val)
        self.set_arch_grads(grads)
        loss, correct = self.weight_step(train, self.dense_plans(detach=True))
        return {"train_loss": loss, "train_correct": correct, "arch_loss": arch_loss}


@STRATEGIES.register
class DARTS2(DARTS):
    """DARTS, second order (unrolled one virtual SGD step)."""

    name = "darts2"
    Options = DARTS2Options

    def virtual_step(self, train: Batch) -> dict[str, torch.Tensor]:
        """``w' = w - xi (mu * buf + grad L_train(w) + wd * w)``: the next SGD update."""
        names = [n for n, _ in self.net.named_parameters()]
        grads = torch.autograd.grad(self.loss(train, self.dense_plans(detach=True), amp=False),
                                    self.weights)
        grads = distributed.all_average(grads)  # data-parallel: the global batch's gradient
        xi, mu, wd = self.lr, self.config.w_momentum, self.config.w_weight_decay
        unrolled = {}
        with torch.no_grad():
            for name, w, g in zip(names, self.weights, grads):
                d = g + wd * w
                buf = self.w_optim.state.get(w, {}).get("momentum_buffer")
                if buf is not None:
                    d = d + mu * buf
                unrolled[name] = (w - xi * d).requires_grad_(True)
        return unrolled

    def arch_gradient(self, train: Batch, val: Batch) -> tuple[dict[str, torch.Tensor],
                                                                torch.Tensor]:
        """The unrolled gradient, all of it in float32 (see the module docstring)."""
        alphas = list(self.arch.values())
        unrolled = self.virtual_step(train)
        loss = self.loss(val, self.dense_plans(), unrolled, amp=False)
        grads = torch.autograd.grad(loss, alphas + list(unrolled.values()))
        d_alpha, v = grads[: len(alphas)], grads[len(alphas):]
        v = distributed.all_average(v)  # data-parallel: the same v (and eps) on every rank
        hessian = self.hessian_vector_product(train, v)
        xi = self.lr
        return ({t: da - xi * h for t, da, h in zip(self.arch, d_alpha, hessian)},
                loss.detach())

    def hessian_vector_product(self, train: Batch, v) -> list[torch.Tensor]:
        """``(grad_alpha L_train(w + eps v) - grad_alpha L_train(w - eps v)) / (2 eps)``."""
        eps = self.options.hessian_radius / torch.cat([t.flatten() for t in v]).norm()
        original = [w.detach().clone() for w in self.weights]
        alphas = list(self.arch.values())
        results = []
        try:
            for sign in (1.0, -1.0):
                with torch.no_grad():
                    for w, w0, d in zip(self.weights, original, v):
                        w.copy_(w0 + sign * eps * d)
                results.append(torch.autograd.grad(self.loss(train, self.dense_plans(), amp=False),
                                               alphas))
        finally:
            with torch.no_grad():
                for w, w0 in zip(self.weights, original):
                    w.copy_(w0)
        return [(p - n) / (2 * eps) for p, n in zip(*results)]
