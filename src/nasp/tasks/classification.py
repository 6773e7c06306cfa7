"""Image classification: what a classifier's run optimises and reports.

- loss of a batch: cross-entropy ``CE_eps(logits, y)`` against labels smoothed by
  ``eps = label_smoothing`` (target ``(1 - eps) * onehot(y) + eps / classes``; ``eps = 0``: the
  plain cross-entropy the search uses);
- objective of a network with an auxiliary head (output ``(logits, aux_logits)``):
  ``CE_eps(logits, y) + auxiliary_weight * CE_eps(aux_logits, y)``;
- evaluation: mean (unsmoothed) cross-entropy ``loss``, ``top1`` and ``top5`` accuracy, summed on
  the device with one host sync at the end (and one sum over the ranks of a data-parallel run);
- state carried across batches: none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from nasp.runtime import distributed

__all__ = ["ClassificationTask", "evaluate_classifier"]

Output = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class ClassificationTask:
    """Classification into ``logits.shape[1]`` classes; see the module docstring."""

    label_smoothing: float = 0.0
    auxiliary_weight: float = 0.0

    name: ClassVar[str] = "classification"
    #: The metrics :meth:`evaluate` returns, in the order :meth:`format` writes them.
    metrics: ClassVar[tuple[str, ...]] = ("loss", "top1", "top5")
    #: The console's headline metric: the record's ``*_val_acc``, higher is better.
    headline: ClassVar[str] = "acc"
    headline_words: ClassVar[str] = "accuracy"
    higher_is_better: ClassVar[bool] = True
    #: what the legend calls the train part and the evaluated items
    train_words: ClassVar[str] = "loss, acc"
    items: ClassVar[str] = "images"

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean (label-smoothed) cross-entropy of ``output`` (logits) against ``target``."""
        return F.cross_entropy(output, target, label_smoothing=self.label_smoothing)

    def objective(self, output: Output, target: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(total, main loss, logits)`` of a network output: ``logits`` or ``(logits, aux)``;
        ``total = main + auxiliary_weight * loss(aux)`` (just ``main`` without an aux head)."""
        logits, aux_logits = output if isinstance(output, tuple) else (output, None)
        loss = self.loss(logits, target)
        if aux_logits is None:
            return loss, loss, logits
        return loss + self.auxiliary_weight * self.loss(aux_logits, target), loss, logits

    def correct(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """How many predictions (argmax of ``output``) are right: a tensor, no host sync."""
        return (output.detach().argmax(1) == target).sum()

    def evaluate(self, net: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                 forward: Callable[[torch.Tensor], torch.Tensor] | None = None
                 ) -> dict[str, float]:
        """:func:`evaluate_classifier`: ``loss``, ``top1``, ``top5`` of ``net`` on ``batches``."""
        return evaluate_classifier(net, batches, forward)

    def format(self, values: Mapping[str, float | None]) -> str:
        """``values`` (a subset of :attr:`metrics`) as a log writes them: ``loss 0.123 acc
        45.6% top-5 78.9%``; a value not measured (None) is ``-``."""
        parts = []
        for name in self.metrics:
            if name in values:
                value = values[name]
                label, scale, digits, unit = _FORMATS[name]
                text = "-" if value is None else f"{scale * value:.{digits}f}"
                parts.append(f"{label} {text}{unit}")
        return " ".join(parts)

    def show(self, value: float | None) -> str:
        """An accuracy as the console writes it: ``45.6%``."""
        return "-" if value is None else f"{100 * value:.1f}%"

    # -- state carried across batches (a language model carries its hidden state) -------------
    def initial_state(self) -> Any:
        """The state the first batch of a stream starts from: none for a classifier."""
        return None

    def carry(self, state: Any) -> Any:
        """The state the next batch starts from, cut from the graph of this one (unchanged)."""
        return state


#: name -> (label, scale, digits, unit) in :meth:`ClassificationTask.format`
_FORMATS = {"loss": ("loss", 1.0, 3, ""), "top1": ("acc", 100.0, 1, "%"),
            "top5": ("top-5", 100.0, 1, "%")}


@torch.no_grad()
def evaluate_classifier(net: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                        forward: Callable[[torch.Tensor], torch.Tensor] | None = None
                        ) -> dict[str, float]:
    """Mean cross-entropy ``loss``, ``top1`` and ``top5`` accuracy of ``net`` in eval mode.

    ``top5`` counts a prediction right when the label is among the 5 largest logits (among all
    of them when there are fewer than 5 classes). ``forward`` maps a batch to logits (default
    ``net``; the search passes the supernet with the child's plans). One host sync, at the end.
    Data-parallel (:mod:`nasp.runtime.distributed`): with rank 0's BatchNorm statistics, the sums
    of all ranks (each evaluates its part of the split).
    """
    distributed.broadcast_buffers_(net)
    was_training = net.training
    net.eval()
    sums = None
    n = 0
    for x, y in batches:
        logits = forward(x) if forward is not None else net(x)
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        values = torch.stack([F.cross_entropy(logits, y, reduction="sum"),
                              (top[:, 0] == y).sum().to(logits.dtype),
                              (top == y[:, None]).any(1).sum().to(logits.dtype)])
        sums = values if sums is None else sums + values
        n += len(y)
    net.train(was_training)
    sums = distributed.all_sum(torch.cat([sums, sums.new_tensor([n])]))
    sums, n = sums[:3], sums[3]
    loss, top1, top5 = (sums / n).tolist()
    return {"loss": loss, "top1": top1, "top5": top5}
