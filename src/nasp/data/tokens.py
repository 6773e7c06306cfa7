"""An endless, resumable stream of windows over a batchified token split (truncated BPTT).

:class:`TokenStream` walks a ``(T, B)`` tensor (:func:`~nasp.data.text.batchify`) pass after
pass, as the training loops of AWD-LSTM and DARTS do: a window of ``n`` time steps starting at
row ``i`` is ``tokens = data[i:i + n]`` with targets ``data[i + 1:i + 1 + n]`` (flattened,
time-major), ``n = min(seq_len, T - 1 - i)``, then ``i += seq_len``, while ``i < T - 2``.
``seq_len`` follows a rule (:data:`BPTT_RULES`):

``fixed``
    ``bptt`` every window.
``darts``
    DARTS's search (``train_search.py``): ``bptt`` with probability 0.95, else ``bptt / 2``,
    truncated to an integer.
``awd``
    AWD-LSTM's and DARTS's training (``train.py``): ``b = bptt`` with probability 0.95 else
    ``bptt / 2``; ``seq_len = max(5, int(normal(b, 5)))``, at most ``bptt + 20``.

The draws come from a CPU ``torch.Generator`` passed in (float64 uniforms and normals), all
of a pass at once, when the pass begins (:meth:`TokenStream.begin_pass`), so the number of windows
of a pass (``len(stream)``) is known before its first window: a run's epoch is one pass.

The recurrent state is carried: each window starts from the state the network left in the
previous one (``previous.next_state()``, detached: see :mod:`nasp.tasks.windows`), and every pass
starts from ``None`` (zeros). The stream makes its windows with the ``window`` factory it is
given, ``window(tokens, state)`` (the engine passes :class:`~nasp.tasks.TokenWindow`; this
package does not import the tasks). :meth:`state_dict` holds the pass's lengths, the position and
the carried state; with the generator's own state saved at the same moment (as for
:class:`~nasp.data.batches.BatchStream`), :meth:`load_state_dict` continues exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["BPTT_RULES", "MAX_EXTRA", "TokenStream", "draw_seq_len"]

#: The rules of a window's length (see the module docstring).
BPTT_RULES = ("darts", "awd", "fixed")
#: AWD-LSTM's ``max_seq_len_delta``: a window is at most ``bptt + MAX_EXTRA`` long (``awd``).
MAX_EXTRA = 20


def draw_seq_len(rule: str, bptt: int, generator: torch.Generator) -> int:
    """One window length by ``rule`` (see the module docstring); ``fixed`` draws nothing."""
    if rule == "fixed":
        return bptt
    if rule not in BPTT_RULES:
        raise ValueError(f"unknown BPTT rule {rule!r}; choose one of {', '.join(BPTT_RULES)}")
    u = float(torch.rand((), generator=generator, dtype=torch.float64))
    base = bptt if u < 0.95 else bptt / 2.0
    if rule == "darts":
        return max(1, int(base))
    normal = float(torch.randn((), generator=generator, dtype=torch.float64))
    return min(max(5, int(base + 5.0 * normal)), bptt + MAX_EXTRA)


def _to(state: Any, device: torch.device) -> Any:
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.to(device)
    return type(state)(_to(s, device) for s in state)


class TokenStream:
    """Endless windows ``(window(tokens, state), targets)`` over ``data`` ``(T, B)``, one pass
    after another; see the module docstring."""

    def __init__(self, data: torch.Tensor, bptt: int, generator: torch.Generator, *,
                 rule: str = "darts", window: Callable[[torch.Tensor, Any], Any]):
        if data.dim() != 2 or data.shape[0] < 2:
            raise ValueError(f"a token stream needs a (T, B) tensor with T >= 2, got shape "
                             f"{tuple(data.shape)}")
        if rule not in BPTT_RULES:
            raise ValueError(f"unknown BPTT rule {rule!r}; choose one of {', '.join(BPTT_RULES)}")
        self.data, self.bptt, self.rule = data, int(bptt), rule
        self.generator, self.window = generator, window
        self._lengths: list[int] | None = None  # the lengths of the current pass's windows
        self._position = 0                      # windows of the pass given out
        self._last: Any = None                  # the last window given out (its state goes on)
        self._carried: Any = None               # the state to go on from, when _last is None

    def __iter__(self) -> TokenStream:
        return self

    def _draw_pass(self) -> list[int]:
        lengths, i, last = [], 0, self.data.shape[0] - 2
        while i < last:
            n = draw_seq_len(self.rule, self.bptt, self.generator)
            lengths.append(n)
            i += n
        return lengths

    def begin_pass(self) -> int:
        """Draw the next pass unless one is under way; the number of its windows."""
        if self._lengths is None or self._position >= len(self._lengths):
            self._lengths = self._draw_pass()
            self._position, self._last, self._carried = 0, None, None
        return len(self._lengths)

    def __len__(self) -> int:
        """Windows of the current pass (of a pass at the fixed ``bptt`` before the first)."""
        if self._lengths is None:
            return len(range(0, self.data.shape[0] - 2, self.bptt))
        return len(self._lengths)

    @property
    def position(self) -> int:
        """Windows of the current pass given out so far."""
        return self._position

    def __next__(self) -> tuple[Any, torch.Tensor]:
        self.begin_pass()
        state = self._last.next_state() if self._last is not None else self._carried
        i = sum(self._lengths[:self._position])
        n = min(self._lengths[self._position], self.data.shape[0] - 1 - i)
        window = self.window(self.data[i:i + n], state)
        self._last, self._carried = window, None
        self._position += 1
        return window, self.data[i + 1:i + 1 + n].reshape(-1)

    def state_dict(self) -> dict[str, Any]:
        """The pass's window lengths, the position and the carried state (detached)."""
        carried = self._last.next_state() if self._last is not None else self._carried
        return {"lengths": None if self._lengths is None else list(self._lengths),
                "position": self._position, "state": carried, "rule": self.rule,
                "bptt": self.bptt, "rows": int(self.data.shape[0])}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict`; ValueError if it does not fit this stream."""
        lengths, position = state["lengths"], state["position"]
        if (state.get("rows"), state.get("bptt"), state.get("rule")) != (
                self.data.shape[0], self.bptt, self.rule):
            raise ValueError(f"the saved token stream ({state.get('rows')} rows, bptt "
                             f"{state.get('bptt')}, rule {state.get('rule')}) is not this one "
                             f"({self.data.shape[0]} rows, bptt {self.bptt}, rule {self.rule})")
        if lengths is not None and (not isinstance(lengths, list)
                                    or not all(isinstance(n, int) and n > 0 for n in lengths)):
            raise ValueError(f"the saved window lengths {lengths!r} are not positive integers")
        if not isinstance(position, int) or not 0 <= position <= len(lengths or []):
            raise ValueError(f"the saved window position {position!r} is not in the pass")
        self._lengths = None if lengths is None else list(lengths)
        self._position = position
        self._last, self._carried = None, _to(state["state"], self.data.device)
