"""A user's own loss function as a task: what :func:`nasp.search` optimises for a model with
``nasp.nn`` choices when ``loss_fn`` is given (without one it is plain classification,
:class:`~nasp.tasks.ClassificationTask`).

- loss of a batch: ``loss_fn(output, target)``, a scalar (the mean over the batch);
- evaluation: ``loss``, the sample-weighted mean of the batch losses, and ``top1`` / ``top5``
  accuracies when the output is ``(N, C)`` scores and the target ``(N,)`` class indices (else
  None: a regression has no accuracy);
- state carried across batches: none.

Random search ranks candidates by ``top1`` when there is one, else by ``-loss``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from nasp.tasks.classification import ClassificationTask

__all__ = ["LossFunctionTask"]


def _classifies(output: torch.Tensor, target: torch.Tensor) -> bool:
    return (output.dim() == 2 and target.dim() == 1 and not target.is_floating_point()
            and not target.is_complex())


@dataclass(frozen=True)
class LossFunctionTask:
    """``loss_fn(output, target)`` as a :class:`~nasp.tasks.Task`; see the module docstring."""

    loss_fn: Callable[[Any, torch.Tensor], torch.Tensor]

    name: ClassVar[str] = "loss_function"
    metrics: ClassVar[tuple[str, ...]] = ("loss", "top1", "top5")
    #: the console's headline and words, as a classifier's (see ClassificationTask)
    headline: ClassVar[str] = ClassificationTask.headline
    headline_words: ClassVar[str] = ClassificationTask.headline_words
    higher_is_better: ClassVar[bool] = ClassificationTask.higher_is_better
    train_words: ClassVar[str] = ClassificationTask.train_words
    items: ClassVar[str] = "samples"

    def loss(self, output: Any, target: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(output, target)

    def objective(self, output: Any, target: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, Any]:
        loss = self.loss(output, target)
        return loss, loss, output

    def correct(self, output: Any, target: torch.Tensor) -> torch.Tensor:
        """Right predictions (argmax) of a classifier's output; 0 for any other output."""
        if isinstance(output, torch.Tensor) and _classifies(output, target):
            return (output.detach().argmax(1) == target).sum()
        return torch.zeros((), dtype=torch.long, device=target.device)

    @torch.no_grad()
    def evaluate(self, net: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                 forward: Callable[[torch.Tensor], Any] | None = None) -> dict[str, float | None]:
        was_training = net.training
        net.eval()
        sums = None
        n, classifies = 0, True
        for x, y in batches:
            out = forward(x) if forward is not None else net(x)
            loss = self.loss(out, y).float() * len(y)
            if isinstance(out, torch.Tensor) and _classifies(out, y):
                top = out.topk(min(5, out.shape[1]), dim=1).indices
                hits = torch.stack([(top[:, 0] == y).sum(), (top == y[:, None]).any(1).sum()])
            else:
                classifies = False
                hits = torch.zeros(2, device=loss.device)
            values = torch.cat([loss[None], hits.to(loss.dtype)])
            sums = values if sums is None else sums + values
            n += len(y)
        net.train(was_training)
        loss, top1, top5 = (sums / n).tolist()
        if not classifies:
            top1 = top5 = None
        return {"loss": loss, "top1": top1, "top5": top5}

    def format(self, values: Mapping[str, float | None]) -> str:
        """As a classifier's line, without the accuracies a regression has none of (None),
        the loss with 4 significant digits (a user's loss may be of any scale)."""
        parts = [] if values.get("loss") is None else [f"loss {values['loss']:.4g}"]
        rest = {k: v for k, v in values.items() if v is not None and k != "loss"}
        if rest:
            parts.append(ClassificationTask().format(rest))
        return " ".join(parts)

    def show(self, value: float | None) -> str:
        """An accuracy as a classifier's console writes it."""
        return ClassificationTask().show(value)

    def initial_state(self) -> Any:
        return None

    def carry(self, state: Any) -> Any:
        return state
