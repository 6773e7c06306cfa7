"""Choices written inside an ordinary PyTorch model: :class:`Choice` (one of several modules)
and :class:`InputChoice` (``keep`` of ``n`` inputs, summed).

Each choice has a ``label``; every choice with the same label is the same decision (one row of
the architecture, as all DARTS cells of a type share one). The search sets the ``plan`` of every
choice before each forward pass (a :class:`~nasp.core.mixed.CellPlan` for its label, see
:mod:`nasp.spaces.module`) and the choice runs in that plan's execution mode, through the same
code as the built-in spaces' edges (:func:`~nasp.core.mixed.mixed_forward`,
:func:`~nasp.core.mixed.sparse_sum`):

``discrete``  only the chosen option (the chosen inputs);
``dense``     ``sum_k w_k o_k(x)`` (DARTS, ``w = softmax(alpha)``);
``reference`` the same with ``w = A_bar``, every option with autograd;
``sparse``    NASP's architecture step: the chosen option with autograd, the others
              forward-only, exact gradients for every architecture weight.

Without a plan (the model called outside a search) a :class:`Choice` runs every option, checks
that their outputs have one shape and returns the first option's output, and an
:class:`InputChoice` returns the sum of its first ``keep`` inputs: the model can be probed and
traced as it is. :func:`nasp.nn.fix` turns a model and an architecture into a plain network.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nasp.core.mixed import CellPlan, mixed_forward, sparse_sum
from nasp.core.ops import Zero
from nasp.errors import ConfigError

__all__ = ["Choice", "ChoiceError", "InputChoice"]

ChoiceError = ConfigError
"""A choice used in a way no search can run (the error names the choice's label)."""


def _name(label: str | None) -> str:
    return "a Choice without a label" if label is None else f"choice {label!r}"


class Choice(nn.Module):
    """One of several candidate modules, chosen by the search.

    ``Choice([nn.Conv2d(16, 16, 3, padding=1), nn.Conv2d(16, 16, 5, padding=2)], label="conv")``
    stands anywhere a module does and takes one tensor. Every option must give outputs of one
    shape (checked at every forward pass that runs them all: the first one the space makes is a
    probe). Choices with the same label share the decision and must have as many options. A
    choice without a label is named by its path in the model when the search space is built.
    The architecture's value for it is the index of the chosen option.
    """

    def __init__(self, options: Sequence[nn.Module], label: str | None = None):
        super().__init__()
        options = list(options)
        if not options:
            raise ChoiceError(f"{_name(label)} has no options; give it a list of at least one "
                              f"module to choose from")
        bad = [type(op).__name__ for op in options if not isinstance(op, nn.Module)]
        if bad:
            raise ChoiceError(f"{_name(label)}: every option must be an nn.Module, got "
                              f"{', '.join(bad)}")
        self.label = label
        self.ops = nn.ModuleList(options)
        self.plan: CellPlan | None = None  # set by the search before each forward pass

    def option_names(self) -> tuple[str, ...]:
        """``index:ClassName`` of every option (the columns of its architecture row)."""
        return tuple(f"{k}:{type(op).__name__}" for k, op in enumerate(self.ops))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plan = self.plan
        if plan is None or plan.mode in ("dense", "reference"):
            outputs = [op(x) for op in self.ops]
            self._check_shapes(outputs)
            if plan is None:
                return outputs[0]
            return sum(w * y for w, y in zip(plan.weights[0].unbind(0), outputs))
        weights = None if plan.weights is None else plan.weights[0]
        return mixed_forward(self, x, plan.mode, weights, plan.selection[0])

    def _check_shapes(self, outputs: list[torch.Tensor]) -> None:
        shapes = [tuple(y.shape) for y in outputs]
        if len(set(shapes)) > 1:
            listed = ", ".join(f"{n} -> {s}" for n, s in zip(self.option_names(), shapes))
            raise ChoiceError(f"{_name(self.label)}: its options give outputs of different "
                              f"shapes ({listed}); every option must map the input to the same "
                              f"shape so that any of them can stand in the model")

    def extra_repr(self) -> str:
        return f"label={self.label!r}"


class _InputEdge(nn.Module):
    """One input of an :class:`InputChoice` as an edge with two ops: take it, or ``none``."""

    def __init__(self):
        super().__init__()
        self.ops = nn.ModuleList([nn.Identity(), Zero(1)])


class InputChoice(nn.Module):
    """``keep`` of ``n`` inputs, chosen by the search; the forward pass takes a list of ``n``
    tensors of one shape and returns the **sum** of the chosen ones.

    ``InputChoice(2, keep=1, label="skip")`` called as ``skip([h, h + x])`` chooses between a
    plain and a residual output. Its architecture rows are one per input with two columns
    (take it, ``none``): DARTS mixes each input with ``softmax`` of its row and keeps the ``keep``
    inputs with the largest weight of taking them; NASP's projection keeps the ``keep`` rows with
    the largest entry in the first column (:mod:`nasp.spaces.module`). The architecture's value
    for it is the sorted list of the chosen input indices.
    """

    def __init__(self, n: int, keep: int = 1, label: str | None = None):
        super().__init__()
        if not isinstance(n, int) or n < 1:
            raise ChoiceError(f"{_name(label)}: an InputChoice needs n >= 1 inputs, got {n!r}")
        if not isinstance(keep, int) or not 1 <= keep <= n:
            raise ChoiceError(f"{_name(label)}: keep must be an integer from 1 to n = {n}, got "
                              f"{keep!r}")
        self.label = label
        self.n = n
        self.keep = keep
        self.edge = _InputEdge()
        self.plan: CellPlan | None = None

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        inputs = list(inputs)
        if len(inputs) != self.n:
            raise ChoiceError(f"{_name(self.label)} takes a list of {self.n} tensors, got "
                              f"{len(inputs)}")
        shapes = {tuple(x.shape) for x in inputs}
        if len(shapes) > 1:
            raise ChoiceError(f"{_name(self.label)}: its inputs have different shapes "
                              f"({', '.join(map(str, sorted(shapes)))}); the chosen ones are "
                              f"summed, so all must have one shape")
        plan = self.plan
        if plan is None:
            return sum(inputs[: self.keep])
        if plan.mode == "discrete":
            return sum(x for x, k in zip(inputs, plan.selection) if k >= 0)
        if plan.mode == "sparse":
            return sparse_sum(plan.weights, [(self.edge, x, k)
                                             for x, k in zip(inputs, plan.selection)])
        return sum(mixed_forward(self.edge, x, plan.mode, w)
                   for x, w in zip(inputs, plan.weights.unbind(0)))

    def extra_repr(self) -> str:
        return f"n={self.n}, keep={self.keep}, label={self.label!r}"
