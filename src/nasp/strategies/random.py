"""Random search: ``K`` architectures drawn uniformly from the space, the best one kept.

The baseline of Li & Talwalkar ("Random search and reproducibility for NAS", 2019), run inside
the same search loop and budget (epochs) as NASP and DARTS. ``K = random_samples``
(default: one per epoch) selections are drawn at construction with the space's
``random_selection``, from a generator seeded with ``config.seed`` (under a budget, uniformly
among the cells within it instead: :func:`~nasp.core.budget.sample_within`). At the end of epoch
``e`` of ``E`` the candidates ``floor(e K / E) .. floor((e + 1) K / E) - 1`` are scored, in one
of two ways:

- **by training** (no benchmark table; needs ``K <= E``): each candidate owns a contiguous block
  of epochs (block sizes differ by at most one). At the start of its block the supernet weights
  are reset to their initial state and a fresh SGD optimiser with a cosine schedule over the
  block is made; every step is a weight step of the discrete child (the same step NASP takes).
  Its score is the validation accuracy of the child after the block's last epoch (the loop's
  per-epoch child evaluation on the validation half); for a task whose headline metric is
  lower-is-better, that metric negated (a language model: ``-ppl``; :func:`scored_by`).
- **by look-up** (``config.benchmark`` names a table, or a ``scorer`` is given): no training at
  all (:attr:`trains` is False, the loop skips steps and child evaluation); the candidates of
  epoch ``e`` are scored at its end with the table's accuracy. A candidate the table does not
  hold gets no score.

:meth:`genotype` is the best-scoring candidate so far (ties: the earliest); before any candidate
has a score, the first. The architecture matrices stay all zero until a candidate is scored, then
hold the one-hot selection of the best candidate (rows of dropped edges zero), so that
``space.derive(arch)`` and ``space.project(arch)`` give the best candidate and the collapse
diagnostics see the search's current choice. The architecture loss is 0: nothing is learnt.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from nasp.config import SearchConfig
from nasp.config.options import StrategyOptions, is_int, option
from nasp.core.budget import sample_within
from nasp.core.mixed import CellPlan
from nasp.errors import ConfigError
from nasp.registry import STRATEGIES
from nasp.spaces.base import Genotype, SearchSpace
from nasp.spaces.benchmark import open_benchmark
from nasp.strategies.base import Batch, Strategy, discrete_plans
from nasp.tasks import Task

__all__ = ["RandomOptions", "RandomSearch", "Scorer", "SharedWeightRandomSearch",
           "benchmark_scorer", "rank_score", "scored_by"]

#: Score of a genotype (higher is better), or None when it cannot be scored.
Scorer = Callable[[Genotype], "float | None"]


def benchmark_scorer(config: SearchConfig, space: SearchSpace) -> Scorer | None:
    """Look-up in the benchmark table ``config.benchmark``, opened by the space (None when no
    table is configured)."""
    return open_benchmark(config, space)


def scored_by(result: Mapping[str, float | None], task: Task | None = None) -> str:
    """What :func:`rank_score` ranks ``result`` (the loop's evaluation) by: the task's headline
    metric where the evaluation returns it (``task.headline``; ``"-ppl"`` for a language model,
    negated where lower is better), else ``"top1"`` (a classifier's accuracy, whose headline
    ``acc`` is the evaluation's ``top1``), else ``"-loss"`` (a task without accuracies: a user's
    regression loss)."""
    if task is not None and result.get(task.headline) is not None:
        return task.headline if task.higher_is_better else "-" + task.headline
    return "top1" if result.get("top1") is not None or result.get("loss") is None else "-loss"


def rank_score(result: Mapping[str, float | None], task: Task | None = None) -> float | None:
    """A candidate's score from the loop's evaluation, higher is better: the value of
    :func:`scored_by` (negated where it says ``-``), None when there is none."""
    key = scored_by(result, task)
    value = result.get(key.lstrip("-"))
    return None if value is None else (-value if key.startswith("-") else value)


@dataclass
class RandomOptions(StrategyOptions):
    """Random search's options: ``random_samples``, the architectures drawn (None: the
    strategy's default, :meth:`RandomSearch.default_samples`)."""

    title: ClassVar[str] = "random search"

    random_samples: int | None = option(
        None, metavar="K", help="random search: architectures sampled (default one per epoch)")

    def validate(self, run: Any) -> None:
        super().validate(run)
        if self.random_samples is not None and (not is_int(self.random_samples)
                                                or self.random_samples < 1):
            raise ConfigError(f"--random-samples must be a positive integer, got "
                              f"{self.random_samples!r}")


@STRATEGIES.register
class RandomSearch(Strategy):
    """Random search over ``space``; see the module docstring."""

    name = "random"
    Options = RandomOptions
    trains_what = "the candidate being trained"
    child_what = "the candidate being trained (its score after its last epoch)"
    summary_what = "candidates: those of the epoch; best: the best so far and its score"

    #: True: the candidates share the supernet's weights (:class:`SharedWeightRandomSearch`)
    shared = False

    def __init__(self, space: SearchSpace, net: nn.Module, config: SearchConfig,
                 scorer: Scorer | None = None):
        super().__init__(space, net, config)
        config = self.config
        self.scorer = None if self.shared else (
            scorer if scorer is not None else benchmark_scorer(config, space))
        self.trains = self.scorer is None
        samples = self.options.random_samples or self.default_samples(config.epochs)
        if self.trains and not self.shared and samples > config.epochs:
            raise ConfigError(
                f"--random-samples {samples} is more than --epochs {config.epochs}: without a "
                f"benchmark table every sampled architecture is trained for at least one epoch; "
                f"sample at most {config.epochs} or give more epochs")
        generator = torch.Generator().manual_seed(config.seed)
        if self.budget is None:
            self.candidates = [space.random_selection(generator) for _ in range(samples)]
        else:  # uniform among the cells within the budget (exact, by counting)
            self.candidates = [sample_within(self.budget, generator) for _ in range(samples)]
        self.scores: list[float | None] = [None] * samples
        #: what the scores are (:func:`scored_by`): an accuracy (``top1``; a table's too),
        #: ``-loss`` or ``-ppl`` (a language model's perplexity, negated: higher is better)
        self.score_of = "top1"
        self.initial_state = None if self.shared else {
            k: v.detach().clone() for k, v in net.state_dict().items()}
        self.epoch = 0

    @staticmethod
    def default_samples(epochs: int) -> int:
        """Candidates drawn when ``random_samples`` is not given: one per epoch."""
        return epochs

    def init_arch(self, shape: tuple[int, int]) -> torch.Tensor:
        return torch.zeros(shape)

    # -- which candidates an epoch handles --------------------------------------------------
    def scored_in(self, epoch: int) -> range:
        """Candidates scored at the end of epoch ``epoch`` (0-based): ``floor(e K / E) ..
        floor((e + 1) K / E) - 1``; when training, those whose block of epochs ends there."""
        K, E = len(self.candidates), self.config.epochs
        return range(epoch * K // E, (epoch + 1) * K // E)

    def owner(self, epoch: int) -> int:
        """The candidate trained in epoch ``epoch`` (training mode, ``K <= E``)."""
        return epoch * len(self.candidates) // self.config.epochs

    @property
    def current(self) -> int:
        """The candidate trained in the current epoch."""
        return self.owner(self.epoch)

    def handled(self, epoch: int) -> list[int]:
        """The candidates epoch ``epoch`` trains (one) or looks up (any number)."""
        return [self.owner(epoch)] if self.trains else list(self.scored_in(epoch))

    # -- the loop's hooks -------------------------------------------------------------------
    def begin_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.trains and (epoch == 0 or self.owner(epoch - 1) != self.current):
            self._restart()

    def _restart(self) -> None:
        """For the current candidate: the initial supernet weights, a fresh SGD optimiser and a
        cosine schedule over its block of epochs."""
        epochs = sum(self.owner(e) == self.current for e in range(self.config.epochs))
        self.net.load_state_dict(self.initial_state)
        c = self.config
        self.w_optim = torch.optim.SGD(self.weights, lr=c.w_lr, momentum=c.w_momentum,
                                       weight_decay=c.w_weight_decay)
        # a fresh cosine over the block from w_lr (PyTorch's: epoch e at e / epochs), not the
        # search's reference rule, which would train a one-epoch block at w_lr_min throughout
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.w_optim, T_max=epochs, eta_min=c.w_lr_min)

    def step(self, train: Batch, val: Batch) -> dict[str, torch.Tensor]:
        loss, correct = self.weight_step(train, self.child_plans())
        return {"train_loss": loss, "train_correct": correct, "arch_loss": loss.new_zeros(())}

    def child_plans(self) -> dict[str, CellPlan]:
        """The discrete child of the candidate being trained."""
        return discrete_plans(self.candidates[self.current])

    def end_epoch(self) -> None:
        if self.trains:
            self.scheduler.step()
            return
        for i in self.scored_in(self.epoch):
            self._score(i, self.scorer(self.space.genotype_of(self.candidates[i])))

    def child_evaluated(self, result: Mapping[str, float]) -> None:
        if self.trains and self.current in self.scored_in(self.epoch):
            self.score_of = scored_by(result, self.task)
            self._score(self.current, rank_score(result, self.task))

    def _score(self, i: int, score: float | None) -> None:
        self.scores[i] = None if score is None else float(score)
        best = self.best
        if best is None:
            return
        with torch.no_grad():
            for t, a in self.arch.items():
                a.zero_()
                for e, k in enumerate(self.candidates[best][t]):
                    if k >= 0:
                        a[e, k] = 1.0

    @property
    def best(self) -> int | None:
        """Index of the best-scoring candidate so far (ties: the earliest), None if none."""
        scored = [i for i, s in enumerate(self.scores) if s is not None]
        return max(scored, key=lambda i: (self.scores[i], -i)) if scored else None

    def genotype(self) -> Genotype:
        best = self.best
        return self.space.genotype_of(self.candidates[0 if best is None else best])

    def epoch_metrics(self) -> dict[str, Any]:
        handled = self.handled(self.epoch)
        return {"random": {
            "candidates": handled, "scores": [self.scores[i] for i in handled],
            "best_candidate": self.best,
            "best_score": None if self.best is None else self.scores[self.best],
            "score_of": self.score_of}}

    def epoch_summary(self) -> str:
        """The candidates of the epoch and the best so far: ``candidates 6-10/50  best #3/50
        71.2%`` (scored by a loss or a perplexity, as the task writes it: ``best #3/50 loss
        0.1234``, ``best #3/50 ppl 123.4``)."""
        K = len(self.candidates)
        handled = self.handled(self.epoch)
        if not handled:
            now = "no candidate"
        elif len(handled) == 1:
            now = f"candidate {handled[0] + 1}/{K}"
        else:
            now = f"candidates {handled[0] + 1}-{handled[-1] + 1}/{K}"
        best = self.best
        if best is None:
            shown = "none"
        elif self.score_of.startswith("-"):  # a loss, a perplexity: as the task writes it
            shown = f"#{best + 1}/{K} {self.task.format({self.score_of[1:]: -self.scores[best]})}"
        else:
            shown = f"#{best + 1}/{K} {100 * self.scores[best]:.1f}%"
        return f"{now}  best {shown}"

    # -- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {**super().state_dict(), "random": {
            "candidates": [dict(c) for c in self.candidates], "scores": list(self.scores),
            "score_of": self.score_of, "epoch": self.epoch,
            "initial_state": self.initial_state}}

    def load_state_dict(self, state: dict) -> None:
        saved = state["random"]
        if len(saved["candidates"]) != len(self.candidates):
            raise ValueError(f"the checkpoint sampled {len(saved['candidates'])} architectures, "
                             f"this search {len(self.candidates)}")
        self.epoch = saved["epoch"]
        if self.trains and not self.shared:  # the optimiser and schedule of the candidate
            self._restart()
        super().load_state_dict(state)
        self.candidates = [{t: tuple(s) for t, s in c.items()} for c in saved["candidates"]]
        self.scores = list(saved["scores"])
        self.score_of = saved.get("score_of", "top1")  # older checkpoints scored accuracies
        self.initial_state = saved["initial_state"]


@STRATEGIES.register
class SharedWeightRandomSearch(RandomSearch):
    """Random search with weight sharing (Li & Talwalkar, 2019): one supernet is trained
    through uniformly drawn paths (:meth:`~nasp.strategies.base.Strategy.path_step`, one path
    per step, with the search's cosine schedule over all epochs); at the end of epoch ``e`` the
    candidates ``floor(e K / E) .. floor((e + 1) K / E) - 1`` and the best candidate so far are
    scored by their validation accuracy (:func:`scored_by`) with the supernet's current weights
    (the search loop's evaluation on the validation half), so the best is always judged with the
    latest weights. Never looks at a benchmark table. ``K = random_samples``, by default 5 per
    epoch."""

    name = "random-ws"
    shared = True
    trains_what = "uniformly drawn paths of the supernet"
    child_what = "the best candidate so far on the shared weights"

    @staticmethod
    def default_samples(epochs: int) -> int:
        return 5 * epochs

    def handled(self, epoch: int) -> list[int]:
        return list(self.scored_in(epoch))

    def begin_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def step(self, train: Batch, val: Batch) -> dict[str, torch.Tensor]:
        return self.warmup_step(train)

    def child_plans(self) -> dict[str, CellPlan]:
        """The best candidate so far (the first before any is scored)."""
        best = self.best
        return discrete_plans(self.candidates[0 if best is None else best])

    def end_epoch(self) -> None:
        self.scheduler.step()
        if self.evaluator is None:
            raise RuntimeError("random-ws scores candidates with the search loop's evaluation; "
                               "call set_evaluator first")
        incumbent = self.best
        for i in [*self.scored_in(self.epoch), *([] if incumbent is None else [incumbent])]:
            result = self.evaluator(discrete_plans(self.candidates[i]))
            self.score_of = scored_by(result, self.task)
            self._score(i, rank_score(result, self.task))

    def child_evaluated(self, result: Mapping[str, float]) -> None:
        return None
