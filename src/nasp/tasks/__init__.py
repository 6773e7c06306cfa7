"""Tasks by name: what a run optimises and reports. A :class:`Task` gives the loss of a batch,
the metrics of an evaluation and how they are written, and the state batches carry; the
strategies and the engine ask it, and never hard-code cross-entropy or top-1.
``classification`` (:class:`ClassificationTask`) is the one there is."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from nasp.errors import ConfigError
from nasp.tasks.classification import ClassificationTask, evaluate_classifier
from nasp.tasks.loss_function import LossFunctionTask


class Task(Protocol):
    """What the strategies and the engine ask of a task (see :class:`ClassificationTask`)."""

    name: ClassVar[str]
    #: the names of the metrics :meth:`evaluate` returns
    metrics: ClassVar[tuple[str, ...]]

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

    def initial_state(self) -> Any:
        """The state the first batch of a stream starts from."""

    def carry(self, state: Any) -> Any:
        """The state the next batch starts from."""


TASKS: dict[str, type[Task]] = {ClassificationTask.name: ClassificationTask}


def build_task(name: str = "classification", **options: Any) -> Task:
    """The task ``name`` with its ``options`` (e.g. ``label_smoothing``)."""
    try:
        cls = TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}") from None
    return cls(**options)


__all__ = ["TASKS", "ClassificationTask", "LossFunctionTask", "Task", "build_task",
           "evaluate_classifier"]
