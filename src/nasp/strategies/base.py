"""What every search strategy shares: the weight optimiser, its schedule and the weight step;
the options of the strategies that learn the architecture by gradient (:class:`ArchOptions`).

A strategy is a :class:`Strategy` subclass with a ``name`` and its options, a dataclass
(``Options``, a :class:`~nasp.config.options.StrategyOptions` subclass) whose fields are declared
with :func:`~nasp.config.options.option` (default, help text, metavar, choices, whether it is on
the command line) and whose ``validate`` checks them. Everything else is made from these
declarations: the ``nasp search`` options (one group per options class), the keys of
``config.yaml`` (beside the run's own, at the top level) and their checks, keyword construction
such as ``SearchConfig(strategy="nasp", size_penalty=0.1)``. The strategy reads its options as
``self.options.name``. Adding a strategy (GDAS, say) is one file and one registry line:

1. ``nasp/strategies/gdas.py``: ``@dataclass class GDASOptions(ArchOptions)`` with its own
   fields (``tau_max: float = option(10.0, metavar="TAU", help="...")``) and checks, and
   ``@STRATEGIES.register class GDAS(Strategy)`` (:data:`nasp.registry.STRATEGIES`) with
   ``name = "gdas"``, ``Options = GDASOptions``, ``init_arch`` and ``step``;
2. in ``nasp/strategies/__init__.py``: ``from nasp.strategies.gdas import GDAS``.

A strategy owns the architecture parameters (one matrix per cell type of the space) and both
optimisers. The search loop calls :meth:`Strategy.step` once per iteration with a training batch
(for the network weights) and a validation batch (for the architecture), and
:meth:`Strategy.end_epoch` after each epoch.

Network weights: SGD (lr ``w_lr``, momentum, weight decay), gradient norm clipped to
``grad_clip``. The lr follows a cosine from ``w_lr`` to ``w_lr_min`` as the reference code of DARTS
and NASP runs it: epoch ``e`` (0-based) of ``E`` trains with the cosine's value at ``e + 1``, so
the last epoch trains at ``w_lr_min`` (their loops call ``scheduler.step()`` before each epoch).
Architecture: Adam (``a_lr``, ``a_betas``) with coupled weight decay ``a_weight_decay``.

Weights of operations a step does not run (NASP's unselected ops, a sampled path's others):
with ``unselected_weights = "decay"`` (the default, as the reference NASP code behaves, whose
every parameter has a zeroed gradient at each step) they get a zero gradient, so SGD still
applies weight decay to them and their momentum fades; with ``"frozen"`` they get no gradient and
SGD leaves them and their momentum buffers untouched until they run again.

Warm-up: in the first ``warmup_epochs`` epochs a strategy that honours it (NASP, DARTS) makes no
architecture step; each step trains the weights of one path drawn uniformly from the space
(:meth:`path_step`; SPOS, Guo et al. 2020), so every candidate op is trained before the
architecture is judged. Off by default: on NAS-Bench-201 it did not find better cells
(BENCHMARKS.md).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from nasp.config import SearchConfig
from nasp.config.budget import run_budget
from nasp.config.options import StrategyOptions, check_numbers, is_int, is_number, option
from nasp.core.budget import Budget, best_within
from nasp.core.mixed import CellPlan
from nasp.errors import ConfigError
from nasp.runtime import distributed
from nasp.runtime.device import autocast, resolve_precision
from nasp.spaces.base import Genotype, SearchSpace
from nasp.tasks import ClassificationTask, Task

Batch = tuple[torch.Tensor, torch.Tensor]
Plans = Mapping[str, CellPlan]

__all__ = ["ArchOptions", "Batch", "Evaluator", "Plans", "Strategy", "StrategyOptions",
           "cosine_schedule", "discrete_plans"]

#: The search loop's evaluation of discrete plans on the validation half (``loss``, ``top1``).
Evaluator = Callable[[Plans], Mapping[str, float]]


def discrete_plans(selection: Mapping[str, tuple[int, ...]]) -> dict[str, CellPlan]:
    """The discrete plan of every cell type of a selection (one op index per edge, -1 dropped)."""
    return {t: CellPlan("discrete", selection=s) for t, s in selection.items()}


def cosine_schedule(optimizer: torch.optim.Optimizer, epochs: int,
                    lr_min: float) -> torch.optim.lr_scheduler.LambdaLR:
    """The reference codes' cosine schedule: epoch ``e`` of ``epochs`` trains with
    ``lr_min + (lr - lr_min) (1 + cos(pi (e + 1) / epochs)) / 2``, the last at ``lr_min``."""

    def factor(e: int, lr: float) -> float:
        if lr == 0:
            return 1.0
        return (lr_min + (lr - lr_min) * (1 + math.cos(math.pi * min(e + 1, epochs) / epochs))
                / 2) / lr

    factors = [lambda e, lr=g["lr"]: factor(e, lr) for g in optimizer.param_groups]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factors)


@dataclass
class ArchOptions(StrategyOptions):
    """The architecture step of the strategies that learn the architecture by gradient (NASP,
    DARTS): Adam (``a_lr``, ``a_betas``) with coupled weight decay ``a_weight_decay``, its lr
    schedule, and the warm-up epochs (see the module docstring)."""

    title: ClassVar[str] = "architecture step"

    a_lr: float = option(3e-4, metavar="LR",
                         help="architecture step size (Adam learning rate; default 3e-4)")
    a_betas: tuple[float, float] = option((0.5, 0.999), cli=False)
    a_weight_decay: float = option(1e-3, cli=False)
    a_lr_schedule: str = option(
        "constant", choices=("constant", "cosine"),
        help="architecture lr: constant (default) or a cosine from --a-lr towards 0 over the "
             "epochs after the warm-up")
    warmup_epochs: int = option(
        0, metavar="N",
        help="NASP, DARTS: the first N epochs make no architecture step and train uniformly "
             "drawn paths of the supernet instead (default 0)")

    def validate(self, run: Any) -> None:
        """Also stores ``a_betas`` as a tuple of floats."""
        super().validate(run)
        check_numbers(self, ("a_lr", "a_weight_decay"), 0, "a non-negative number")
        betas = self.a_betas
        if not (isinstance(betas, (list, tuple)) and len(betas) == 2
                and all(is_number(b) and 0 <= b < 1 for b in betas)):
            raise ConfigError(f"a_betas must be a list of two numbers in [0, 1), got {betas!r}")
        self.a_betas = tuple(float(b) for b in betas)
        if not is_int(self.warmup_epochs) or not 0 <= self.warmup_epochs < run.epochs:
            raise ConfigError(f"--warmup-epochs must be an integer from 0 to --epochs - 1 "
                              f"({run.epochs - 1}) so that some epochs search the "
                              f"architecture, got {self.warmup_epochs!r}")


class Strategy(ABC):
    """Base class of the search strategies; subclasses implement ``init_arch`` and ``step`` and
    name their options dataclass ``Options`` (see the module docstring)."""

    name = "base"
    #: The options this strategy takes (``self.options``, ``config.options``).
    Options: ClassVar[type[StrategyOptions]] = StrategyOptions
    #: False for a strategy that needs no training (random search scored by a benchmark table):
    #: the search loop then runs no steps and no child evaluation in its epochs.
    trains = True
    #: The loss of a batch (and the count of right predictions); :func:`build_strategy` sets
    #: the run's task.
    task: Task = ClassificationTask()
    #: What the search reports as the validation accuracy of an epoch, as the strategy's paper
    #: does (``val_measure`` in metrics.jsonl): ``"child"``, the discrete child of
    #: :meth:`child_plans` on the weights the search trains for it (``child_val_loss``,
    #: ``child_val_acc``); ``"supernet"``, the supernet as the strategy runs it
    #: (:meth:`supernet_plans`; ``supernet_val_*``), and besides it the derived child, whose ops
    #: never ran alone, with its BatchNorm statistics recomputed (``child_bn_val_*``).
    val_measure: ClassVar[str] = "child"
    #: For the log's legend: what the weight steps train (the train loss and accuracy) and what
    #: the child of :meth:`child_plans` is.
    trains_what: ClassVar[str] = "the child of the current architecture"
    child_what: ClassVar[str] = "the child of the current architecture"
    #: For the log's legend: what :meth:`epoch_summary` says ("" when it says nothing).
    summary_what: ClassVar[str] = ""

    def __init__(self, space: SearchSpace, net: nn.Module, config: SearchConfig):
        self.space = space
        self.net = net
        if config.strategy != self.name:  # another strategy's config: the options this one shares
            config = config.replace(strategy=self.name)
        self.config = config
        #: the hard budget (--max-params, ...; None without one): NASP projects within it,
        #: DARTS derives within it, random search samples within it (nasp.core.budget)
        self.budget: Budget | None = run_budget(config)
        first = next(net.parameters())
        self.amp_dtype = resolve_precision(config.precision, first.device)
        self.arch = {t: self.init_arch(shape).to(first.device, first.dtype).requires_grad_(True)
                     for t, shape in space.arch_shapes().items()}
        self.weights = [p for p in net.parameters()]
        self.w_optim = torch.optim.SGD(self.weights, lr=config.w_lr, momentum=config.w_momentum,
                                       weight_decay=config.w_weight_decay)
        self.scheduler = cosine_schedule(self.w_optim, config.epochs, config.w_lr_min)
        # a strategy that learns no architecture (random search) has no ArchOptions: its Adam,
        # which never steps, takes their defaults, so that every checkpoint has one layout
        arch = self.options if isinstance(self.options, ArchOptions) else ArchOptions()
        self.a_optim = torch.optim.Adam(list(self.arch.values()), lr=arch.a_lr,
                                        betas=arch.a_betas, weight_decay=arch.a_weight_decay)
        # data-parallel: every rank starts from rank 0's weights and architecture
        distributed.broadcast_([*net.parameters(), *net.buffers(), *self.arch.values()])
        self.epoch = 0  # the current epoch (0-based), set by begin_epoch
        # uniformly sampled paths (warm-up, random search with weight sharing): one generator,
        # seeded alike on every rank, so that all ranks train the same path
        self.path_generator = torch.Generator().manual_seed(config.seed + 1)
        self.evaluator: Evaluator | None = None

    # -- to implement --------------------------------------------------------------------------
    @abstractmethod
    def init_arch(self, shape: tuple[int, int]) -> torch.Tensor:
        """Initial architecture matrix of the given shape."""

    @abstractmethod
    def step(self, train: Batch, val: Batch) -> dict[str, torch.Tensor]:
        """One search iteration. Returns detached tensors (no host sync): ``train_loss``,
        ``train_correct``, ``arch_loss``."""

    # -- shared ------------------------------------------------------------------------------
    @property
    def options(self) -> Any:
        """This strategy's options (an instance of its ``Options``): ``config.options``."""
        return self.config.options

    def autocast(self):
        """Autocast context of the configured precision (a no-op for float32)."""
        return autocast(next(self.net.parameters()).device, self.amp_dtype)

    @property
    def lr(self) -> float:
        return self.w_optim.param_groups[0]["lr"]

    def genotype(self) -> Genotype:
        return self.derive()

    def derive(self) -> Genotype:
        """The space's derivation (``SearchSpace.derive``); under a budget, the selection of
        greatest total softmax weight within it (:func:`~nasp.core.budget.best_within`, the ops
        the space's derivation may choose), which is the space's own derivation whenever that
        fits."""
        free = self.space.derive(self.arch)
        if self.budget is None:
            return free
        W = {t: torch.softmax(a.detach().double().cpu(), dim=-1) for t, a in self.arch.items()}
        selection = best_within(W, self.budget, derive=True)
        if selection == self.space.selection_of(free):
            return free  # the same cell, listed as the space lists it
        return self.space.genotype_of(selection)

    def budget_record(self, genotype: Genotype) -> dict[str, Any]:
        """``{"budget": {metric, limit, cost}}`` of ``genotype`` (empty without a budget)."""
        if self.budget is None:
            return {}
        return {"budget": self.budget.describe(self.space.selection_of(genotype))}

    def cells(self) -> dict[str, Genotype]:
        """Candidate cells a strategy can return besides :meth:`genotype`, by name (recorded
        per epoch and in ``genotypes.json``); none by default."""
        return {}

    def child_plans(self) -> dict[str, CellPlan]:
        """Discrete plans of the current child network (evaluated after each epoch)."""
        selection = self.space.selection_of(self.genotype())
        return discrete_plans(selection)

    def supernet_plans(self) -> dict[str, CellPlan] | None:
        """The plans of the supernet as the strategy runs it, evaluated after each epoch when
        :attr:`val_measure` is ``"supernet"``; None for a strategy that runs only children."""
        return None

    def end_epoch(self) -> None:
        self.scheduler.step()

    # -- per-epoch hooks of the search loop (no-ops here; random search uses them) ------------
    def begin_epoch(self, epoch: int) -> None:
        """Called before the steps of epoch ``epoch`` (0-based); sets the architecture lr."""
        self.epoch = epoch
        for group in self.a_optim.param_groups:
            group["lr"] = self.options.a_lr * self.arch_lr_factor(epoch)

    def arch_lr_factor(self, epoch: int) -> float:
        """The architecture lr of ``epoch`` over ``a_lr``: 1 (``a_lr_schedule = "constant"``),
        or a cosine from 1 down towards 0 over the epochs after the warm-up (``"cosine"``:
        epoch ``e`` of the ``E - W`` searching epochs at ``(1 + cos(pi (e - W) / (E - W))) / 2``),
        so that the first architecture decisions, made on the warmed-up weights, weigh most."""
        W, E = self.options.warmup_epochs, self.config.epochs
        if self.options.a_lr_schedule == "constant" or epoch < W:
            return 1.0
        return (1 + math.cos(math.pi * (epoch - W) / (E - W))) / 2

    @property
    def warming_up(self) -> bool:
        """Whether the current epoch is one of the ``warmup_epochs`` (no architecture steps)."""
        return self.epoch < self.options.warmup_epochs

    def set_evaluator(self, evaluator: Evaluator) -> None:
        """The search loop hands over its evaluation of discrete plans on the validation half
        (a strategy that scores candidates with the shared weights uses it)."""
        self.evaluator = evaluator

    def child_evaluated(self, result: Mapping[str, float]) -> None:
        """The loop's evaluation (``loss``, ``top1``, ...) of :meth:`child_plans` on the
        validation half, after :meth:`end_epoch`."""
        return None

    def epoch_metrics(self) -> dict[str, Any]:
        """Entries this strategy adds to the epoch's metrics record."""
        return {}

    def epoch_summary(self) -> str:
        """A short text (at most about 35 characters) this strategy adds to the epoch's log
        line."""
        return ""

    def weight_step(self, batch: Batch, plans: Plans) -> tuple[torch.Tensor, torch.Tensor]:
        """One SGD step on the network weights; returns (loss, number of correct predictions).

        It minimises the task's objective (:meth:`~nasp.tasks.Task.objective`: a language
        model's likelihood plus its TAR penalty, as DARTS's weight step) and returns its main
        loss; the architecture steps minimise the task's plain loss.

        Parameters the plans do not run get a zero gradient (``unselected_weights = "decay"``)
        or none (``"frozen"``); see the module docstring."""
        x, y = batch
        decay = self.config.unselected_weights == "decay"
        self.w_optim.zero_grad(set_to_none=not decay)  # decay: gradients stay, zeroed in place
        with self.autocast():
            total, loss, main = self.task.objective(self.net(x, plans), y)
        total.backward()
        if decay:  # parameters no step has run yet get their zero gradient once
            for w in self.weights:
                if w.grad is None:
                    w.grad = torch.zeros_like(w)
        distributed.average_gradients_(self.weights)  # data-parallel: mean over ranks
        nn.utils.clip_grad_norm_(self.weights, self.config.grad_clip)
        self.w_optim.step()
        return loss.detach(), self.task.correct(main, y)

    def path_step(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """A weight step through one path drawn uniformly from the space (every edge of the
        path runs its drawn op; see ``SearchSpace.random_selection``)."""
        selection = self.space.random_selection(self.path_generator)
        return self.weight_step(batch, discrete_plans(selection))

    def warmup_step(self, train: Batch) -> dict[str, torch.Tensor]:
        """A step of the warm-up (or of any search that only trains sampled paths): a
        :meth:`path_step`, no architecture step (architecture loss 0)."""
        loss, correct = self.path_step(train)
        return {"train_loss": loss, "train_correct": correct, "arch_loss": loss.new_zeros(())}

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
            "epoch": self.epoch,
            "path_generator": self.path_generator.get_state(),
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
        self.epoch = state.get("epoch", self.epoch)
        if "path_generator" in state:
            self.path_generator.set_state(state["path_generator"])
