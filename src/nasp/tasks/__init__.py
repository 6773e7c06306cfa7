"""Tasks by name: what a run optimises and reports. A :class:`Task` gives the loss of a batch,
the metrics of an evaluation and how they are written, and the state batches carry; the
strategies and the engine ask it, and never hard-code cross-entropy or top-1.
``classification`` (:class:`ClassificationTask`) and ``language-model``
(:class:`LanguageModelTask`, whose batches are :class:`TokenWindow` s) are the ones there are."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from nasp.errors import ConfigError
from nasp.tasks.classification import ClassificationTask, evaluate_classifier
from nasp.tasks.language_model import LanguageModelTask, perplexity
from nasp.tasks.loss_function import LossFunctionTask
from nasp.tasks.windows import TokenWindow, detach_state


class Task(Protocol):
    """What the strategies and the engine ask of a task (see :class:`ClassificationTask`)."""

    name: ClassVar[str]
    #: the names of the metrics :meth:`evaluate` returns
    metrics: ClassVar[tuple[str, ...]]
    #: the metric a search's console shows and its summary ranks: ``*_val_<headline>`` in the
    #: records ("acc", "ppl"), in words, whether higher is better; the legend's words for the
    #: train part and for what is evaluated ("images", "tokens")
    headline: ClassVar[str]
    headline_words: ClassVar[str]
    higher_is_better: ClassVar[bool]
    train_words: ClassVar[str]
    items: ClassVar[str]

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of one batch's network output (mean over the batch)."""

    def objective(self, output: Any, target: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(total to minimise, main loss, main output)`` of an output with extra heads."""

    def correct(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """How many of the batch's predictions are right (a tensor: no host sync)."""

    def evaluate(self, net: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                 forward: Callable[[torch.Tensor], torch.Tensor] | None = None
                 ) -> dict[str, float]:
        """The :attr:`metrics` of ``net`` over ``batches`` (one host sync)."""

    def format(self, values: Mapping[str, float | None]) -> str:
        """Metrics as a log line writes them."""

    def show(self, value: float | None) -> str:
        """The headline metric's value as the console writes it (None: ``-``)."""

    def initial_state(self) -> Any:
        """The state the first batch of a stream starts from."""

    def carry(self, state: Any) -> Any:
        """The state the next batch starts from."""


TASKS: dict[str, type[Task]] = {ClassificationTask.name: ClassificationTask,
                                LanguageModelTask.name: LanguageModelTask}


def build_task(name: str = "classification", **options: Any) -> Task:
    """The task ``name`` with its ``options`` (e.g. ``label_smoothing``)."""
    try:
        cls = TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}") from None
    return cls(**options)


__all__ = ["TASKS", "ClassificationTask", "LanguageModelTask", "LossFunctionTask", "Task",
           "TokenWindow", "build_task", "detach_state", "evaluate_classifier", "perplexity"]
