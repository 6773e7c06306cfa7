"""The architecture of a user's model: the plain mapping ``{label: choice}``.

A :class:`~nasp.nn.Choice` label maps to the index of its chosen option, an
:class:`~nasp.nn.InputChoice` label to the sorted list of its chosen inputs. :class:`ModuleArch`
is that mapping, immutable, with what a genotype does (:class:`~nasp.spaces.base.Genotype`):
``to_dict`` is ``{"space": "user_model", "arch": {label: choice}}`` (a search's ``genotype.json``);
``arch.json`` holds the mapping alone. ``dict(arch)`` is an ordinary dict again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from nasp.errors import GenotypeError
from nasp.runtime.atomic import atomic_write_text

__all__ = ["SPACE", "ModuleArch"]

#: The name every genotype of a user's model carries (the space is not in the --space registry).
SPACE = "user_model"

Value = int | tuple[int, ...]


class ModuleArch(Mapping[str, Any]):
    """``{label: option index | tuple of input indices}``; see the module docstring."""

    space: ClassVar[str] = SPACE

    def __init__(self, choices: Mapping[str, Any]):
        data: dict[str, Value] = {}
        for label, value in dict(choices).items():
            if not isinstance(label, str):
                raise GenotypeError(f"architecture labels are strings, got {label!r}")
            if isinstance(value, (list, tuple)):
                if not all(isinstance(i, int) and not isinstance(i, bool) for i in value):
                    raise GenotypeError(f"label {label!r}: input indices must be integers, got "
                                        f"{value!r}")
                data[label] = tuple(sorted(value))
            elif isinstance(value, int) and not isinstance(value, bool):
                data[label] = value
            else:
                raise GenotypeError(f"label {label!r}: a choice is an option index or a list of "
                                    f"input indices, got {value!r}")
        self._data = data

    def __getitem__(self, label: str) -> Value:
        return self._data[label]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ModuleArch) and self._data == other._data

    def __hash__(self) -> int:
        return hash(tuple(self._data.items()))

    def __repr__(self) -> str:
        return f"ModuleArch({self.plain()!r})"

    def __str__(self) -> str:
        """The mapping as ``arch.json`` holds it (one line)."""
        return json.dumps(self.plain())

    def plain(self) -> dict[str, int | list[int]]:
        """The mapping with JSON types (lists for input choices): what ``arch.json`` holds."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self._data.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"space": SPACE, "arch": self.plain()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def save(self, path: str | os.PathLike[str]) -> None:
        atomic_write_text(Path(path), self.to_json() + "\n")

    def compact(self) -> str:
        return " ".join(f"{k}={list(v) if isinstance(v, tuple) else v}"
                        for k, v in self._data.items())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModuleArch:
        """From :meth:`to_dict`, or from the plain mapping of ``arch.json``."""
        if not isinstance(data, Mapping):
            raise GenotypeError(f"an architecture of a model is a mapping, got "
                                f"{type(data).__name__}")
        if "arch" in data and isinstance(data["arch"], Mapping):
            if data.get("space", SPACE) != SPACE:
                raise GenotypeError(f"the genotype names the space {data.get('space')!r}, not "
                                    f"{SPACE!r} (a model with nasp.nn choices)")
            data = data["arch"]
        return cls(data)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ModuleArch:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as err:
            raise GenotypeError(f"architecture file {path}: {err}") from None
