"""A window of a token stream: what a language model's network takes as its input ``x``.

Recurrent networks carry a hidden state from one window of the corpus to the next (truncated
back-propagation through time). So that strategies and run loops can keep calling
``net(x, plans)`` / ``net(x)`` and ``task.loss(output, y)`` as for images, the state travels
with the input: a :class:`TokenWindow` holds the tokens and the state they start from, and the
network writes the state it ended with into :attr:`TokenWindow.final`. Every forward pass over
the same window starts from the same :attr:`TokenWindow.state` (the architecture step, the weight
step, DARTS's finite differences); the stream that makes the next window starts it from the
``final`` of the last forward pass, detached (:meth:`TokenWindow.next_state`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["TokenWindow", "detach_state"]


def detach_state(state: Any) -> Any:
    """``state`` (a tensor, or tuples/lists of them, or None) cut from its graph."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.detach()
    return type(state)(detach_state(s) for s in state)


@dataclass(eq=False)
class TokenWindow:
    """Tokens ``(T, B)`` (int64, time first, as AWD-LSTM and DARTS) and the recurrent state they
    start from (``None``: zeros; the network knows the shape). ``final`` is set by the network at
    the end of every forward pass on this window."""

    tokens: torch.Tensor
    state: Any = None
    final: Any = None

    @property
    def steps(self) -> int:
        """Time steps T in the window."""
        return int(self.tokens.shape[0])

    @property
    def batch_size(self) -> int:
        return int(self.tokens.shape[1])

    def next_state(self) -> Any:
        """The state the next window starts from: the last forward pass's ``final``, detached
        (this window's own ``state`` when no forward pass ran on it)."""
        return detach_state(self.final if self.final is not None else self.state)
