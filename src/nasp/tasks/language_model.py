"""Word-level language modelling: what a recurrent network's run optimises and reports.

The network takes a :class:`~nasp.tasks.windows.TokenWindow` and returns log-probabilities of
the next word, ``(T * B, vocab)`` (time-major, as the targets of
:class:`~nasp.data.tokens.TokenStream`); in training mode with temporal activation regularisation
(TAR, DARTS's ``beta`` "slowness") it returns ``(log_probs, penalty)``.

- loss of a batch (:meth:`LanguageModelTask.loss`): the mean negative log-likelihood of the
  targets alone, what DARTS's architecture steps and unrolled virtual step minimise (its
  ``RNNModelSearch._loss``); the objective (:meth:`LanguageModelTask.objective`), what the weight
  steps minimise, adds the penalty when there is one;
- correct: next-word predictions (argmax) equal to the target, a tensor (no host sync);
- evaluation: over windows of a split in order, the state carried from one window to the next
  (from zeros, as AWD-LSTM and DARTS evaluate), ``loss`` the mean negative log-likelihood per
  token (each window weighs by its tokens), ``ppl = exp(loss)``, ``top1``; one host sync;
- state carried across batches: the network's hidden state, detached.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from nasp.tasks.windows import TokenWindow, detach_state

__all__ = ["LanguageModelTask", "perplexity"]

Output = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def perplexity(loss: float | None) -> float | None:
    """``exp(loss)`` (infinite past overflow), None for None."""
    if loss is None:
        return None
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf


def _split(output: Output) -> tuple[torch.Tensor, torch.Tensor | None]:
    return output if isinstance(output, tuple) else (output, None)


@dataclass(frozen=True)
class LanguageModelTask:
    """Next-word prediction; see the module docstring."""

    name: ClassVar[str] = "language-model"
    #: The metrics :meth:`evaluate` returns.
    metrics: ClassVar[tuple[str, ...]] = ("loss", "ppl", "top1")
    #: The console's headline metric: the record's ``*_val_ppl``, lower is better.
    headline: ClassVar[str] = "ppl"
    headline_words: ClassVar[str] = "perplexity"
    higher_is_better: ClassVar[bool] = False
    #: what the legend calls the train part and the evaluated items
    train_words: ClassVar[str] = "ppl, acc"
    items: ClassVar[str] = "tokens"

    def loss(self, output: Output, target: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood of ``target``; the TAR penalty of a tuple output is left
        out (it regularises the weight steps only: :meth:`objective`)."""
        log_probs, _ = _split(output)
        return F.nll_loss(log_probs, target)

    def objective(self, output: Output, target: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(nll + penalty, nll, log_probs)``: the weight steps minimise the first."""
        log_probs, penalty = _split(output)
        nll = F.nll_loss(log_probs, target)
        return (nll if penalty is None else nll + penalty), nll, log_probs

    def correct(self, output: Output, target: torch.Tensor) -> torch.Tensor:
        """How many next words (argmax) are right: a tensor, no host sync."""
        log_probs, _ = _split(output)
        return (log_probs.detach().argmax(1) == target).sum()

    @torch.no_grad()
    def evaluate(self, net: nn.Module, batches: Iterable[tuple[Any, torch.Tensor]],
                 forward: Callable[[TokenWindow], Output] | None = None) -> dict[str, float]:
        """``loss``, ``ppl``, ``top1`` of ``net`` (eval mode) over ``batches``: ``(tokens,
        targets)`` windows of one split in order (``tokens`` a ``(T, B)`` tensor or a
        :class:`TokenWindow`, whose own state is ignored), the state carried from window to
        window from zeros. ``forward`` maps a window to log-probabilities (default ``net``; the
        search passes the supernet with the child's plans). One host sync, at the end."""
        was_training = net.training
        net.eval()
        sums, state = None, None
        for x, y in batches:
            tokens = x.tokens if isinstance(x, TokenWindow) else x
            window = TokenWindow(tokens, state)
            log_probs, _ = _split(forward(window) if forward is not None else net(window))
            state = window.next_state()
            values = torch.stack([F.nll_loss(log_probs.float(), y, reduction="sum"),
                                  (log_probs.argmax(1) == y).sum().to(torch.float32),
                                  torch.tensor(float(y.numel()), device=y.device)])
            sums = values if sums is None else sums + values
        net.train(was_training)
        if sums is None:
            raise ValueError("no windows to evaluate")
        loss, top1, n = sums.tolist()
        return {"loss": loss / n, "ppl": perplexity(loss / n), "top1": top1 / n}

    def format(self, values: Mapping[str, float | None]) -> str:
        """``ppl 123.4`` (from ``ppl`` or ``exp(loss)``), then ``acc 12.3%`` when ``top1`` is
        among ``values``; a value not measured (None) is ``-``."""
        parts = []
        if "ppl" in values or "loss" in values:
            ppl = values["ppl"] if "ppl" in values else perplexity(values["loss"])
            parts.append(f"ppl {self.show(ppl)}")
        if "top1" in values:
            top1 = values["top1"]
            parts.append("acc " + ("-" if top1 is None else f"{100 * top1:.1f}%"))
        return " ".join(parts)

    def show(self, value: float | None) -> str:
        """A perplexity as the console writes it: ``123.4``."""
        return "-" if value is None else f"{value:.1f}"

    def initial_state(self) -> Any:
        """Zeros (the network knows the shape): None."""
        return None

    def carry(self, state: Any) -> Any:
        """The state the next window starts from: ``state`` cut from its graph."""
        return detach_state(state)
