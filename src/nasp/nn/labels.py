"""The choices of a model by label: which :class:`~nasp.nn.Choice` and
:class:`~nasp.nn.InputChoice` modules a model holds, grouped by the decision they share, with
the checks that make a label one decision (the same kind, the same number of options or inputs
and ``keep``). Every check's error names the label."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from nasp.nn.choice import Choice, ChoiceError, InputChoice

__all__ = ["Decision", "decisions_of"]


@dataclass(frozen=True)
class Decision:
    """One label's decision: ``kind`` ``"choice"`` (one of ``options`` modules) or ``"input"``
    (``keep`` of ``options`` inputs), the option names (the architecture row's columns for a
    choice) and the places (paths in the model) that share it."""

    label: str
    kind: str
    options: int
    keep: int
    names: tuple[str, ...]
    places: tuple[str, ...]


def decisions_of(model: nn.Module) -> dict[str, Decision]:
    """Every label of ``model``'s choices, in the order the model first holds them.

    A choice without a label takes its path in the model (written back into its ``label``). A
    label used by choices of different kinds, option counts or ``keep`` is a
    :class:`~nasp.errors.ConfigError` naming the label; so is a model without any choice."""
    found: dict[str, Decision] = {}
    for path, m in model.named_modules():
        if not isinstance(m, (Choice, InputChoice)):
            continue
        if m.label is None:
            m.label = path or "model"
        if isinstance(m, Choice):
            d = Decision(m.label, "choice", len(m.ops), 1, m.option_names(), (path,))
        else:
            d = Decision(m.label, "input", m.n, m.keep, ("input", "none"), (path,))
        seen = found.get(m.label)
        if seen is None:
            found[m.label] = d
            continue
        if (seen.kind, seen.options, seen.keep) != (d.kind, d.options, d.keep):
            raise ChoiceError(
                f"label {m.label!r} is used by {_what(seen)} at {seen.places[0] or 'the model'} "
                f"and by {_what(d)} at {path or 'the model'}; choices that share a label share "
                f"one decision and need the same kind and number of options: give them "
                f"different labels or the same options")
        found[m.label] = Decision(seen.label, seen.kind, seen.options, seen.keep, seen.names,
                                  seen.places + (path,))
    if not found:
        raise ChoiceError("the model holds no nasp.nn.Choice or nasp.nn.InputChoice, so there is "
                          "nothing to search; put the alternatives inside Choice([...]) modules")
    return found


def _what(d: Decision) -> str:
    if d.kind == "choice":
        return f"a Choice of {d.options} options"
    return f"an InputChoice of {d.keep} of {d.options} inputs"
