"""``fix(model, arch)``: the plain network of one architecture of a model with choices.

The result is a deep copy of the model in which every :class:`~nasp.nn.Choice` is replaced by
its chosen option (the module itself, with its weights) and every
:class:`~nasp.nn.InputChoice` by a :class:`SumInputs` of the chosen inputs, a few lines of plain
TorchScript-able code. No other nasp code stays in the network: it trains, scripts, traces and
exports like any ``nn.Module``. A model searched by :func:`nasp.search` gives, fixed at the
architecture found, the same outputs as the search's network at its discrete plans with the same
weights.
"""

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from nasp.errors import GenotypeError
from nasp.nn.choice import Choice, InputChoice
from nasp.nn.labels import Decision, decisions_of

__all__ = ["SumInputs", "check_arch", "fix"]


class SumInputs(nn.Module):
    """The fixed :class:`~nasp.nn.InputChoice`: the sum of the inputs at ``indices``."""

    def __init__(self, indices: list[int]):
        super().__init__()
        self.indices: list[int] = [int(i) for i in indices]

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        out = inputs[self.indices[0]]
        for i in self.indices[1:]:
            out = out + inputs[i]
        return out

    def extra_repr(self) -> str:
        return f"indices={self.indices}"


def check_arch(decisions: Mapping[str, Decision], arch: Mapping[str, Any]) -> dict[str, Any]:
    """``arch`` as plain values (an int per Choice label, a sorted list of ``keep`` distinct
    input indices per InputChoice label), checked against the model's ``decisions``; anything
    missing, unknown or out of range is a :class:`~nasp.errors.GenotypeError` naming the
    label."""
    if not isinstance(arch, Mapping):
        raise GenotypeError(f"an architecture is a mapping {{label: choice}}, got "
                            f"{type(arch).__name__}")
    unknown = [str(k) for k in arch if k not in decisions]
    if unknown:
        raise GenotypeError(f"the architecture names labels the model does not have: "
                            f"{', '.join(unknown)} (its labels: {', '.join(decisions)})")
    out: dict[str, Any] = {}
    for label, d in decisions.items():
        if label not in arch:
            raise GenotypeError(f"the architecture has no value for label {label!r}; give "
                                f"{_expected(d)}")
        value = arch[label]
        if d.kind == "choice":
            ok = (isinstance(value, int) and not isinstance(value, bool)
                  and 0 <= value < d.options)
            if not ok:
                raise GenotypeError(f"label {label!r}: expected {_expected(d)}, got {value!r}")
            out[label] = int(value)
        else:
            chosen = list(value) if isinstance(value, (list, tuple)) else None
            ok = (chosen is not None and len(chosen) == d.keep and len(set(chosen)) == d.keep
                  and all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < d.options
                          for i in chosen))
            if not ok:
                raise GenotypeError(f"label {label!r}: expected {_expected(d)}, got {value!r}")
            out[label] = sorted(int(i) for i in chosen)
    return out


def _expected(d: Decision) -> str:
    if d.kind == "choice":
        return f"the index of one of its {d.options} options (0..{d.options - 1})"
    return f"a list of {d.keep} distinct input indices in 0..{d.options - 1}"


def fix(model: nn.Module, arch: Mapping[str, Any]) -> nn.Module:
    """A deep copy of ``model`` with every choice replaced as ``arch`` says (see the module
    docstring); ``model`` itself is left as it is. ``arch`` maps every label to a value:
    the index of the chosen option for a :class:`~nasp.nn.Choice`, the list of chosen input
    indices for an :class:`~nasp.nn.InputChoice` (what :func:`nasp.search` returns)."""
    values = check_arch(decisions_of(model), arch)
    copy = _deepcopy(model)
    return _replaced(copy, values)


def _deepcopy(model: nn.Module) -> nn.Module:
    import copy

    plans = {}
    for m in model.modules():  # the search's plans (tensors) are not copied
        if isinstance(m, (Choice, InputChoice)):
            plans[m] = m.plan
            m.plan = None
    try:
        return copy.deepcopy(model)
    finally:
        for m, plan in plans.items():
            m.plan = plan


def _replaced(module: nn.Module, values: Mapping[str, Any]) -> nn.Module:
    """``module`` with its choices replaced, recursively (a chosen option may hold choices)."""
    if isinstance(module, Choice):
        return _replaced(module.ops[values[module.label]], values)
    if isinstance(module, InputChoice):
        return SumInputs(values[module.label])
    for name, child in list(module._modules.items()):
        if child is not None:
            module._modules[name] = _replaced(child, values)
    return module
