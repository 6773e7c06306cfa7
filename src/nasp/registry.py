"""Registries: names -> classes of one kind, at the bottom floor (imports only :mod:`nasp.errors`).

A registry is defined here and filled by the package that defines its classes (each class is
registered with the :meth:`Registry.register` decorator where it is written), so that the layers
below that package (the configuration, which checks the names a user gives) look classes up
without importing it. Importing :mod:`nasp` imports every package, so the registries are full
whenever a name is looked up.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Generic, TypeVar

from nasp.errors import ConfigError

__all__ = ["STRATEGIES", "Registry"]

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """Names -> classes of one ``kind`` (``"strategy"``...), in the order they were registered.

    A read-only mapping (``registry[name]``, ``name in registry``, ``sorted(registry)``);
    :meth:`lookup` is the checked look-up of a name a user gave: an unknown name is a
    :class:`~nasp.errors.ConfigError` that lists the known ones.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._classes: dict[str, T] = {}

    def register(self, cls: T | None = None, *, name: str | None = None) -> Any:
        """Register ``cls`` under ``name`` (default: its ``name`` attribute); usable as a class
        decorator, with or without arguments. A name registered twice is an error."""

        def add(cls: T) -> T:
            key = name if name is not None else cls.name  # type: ignore[attr-defined]
            if key in self._classes and self._classes[key] is not cls:
                raise ValueError(f"{self.kind} {key!r} is registered twice: "
                                 f"{self._classes[key]!r} and {cls!r}")
            self._classes[key] = cls
            return cls

        return add if cls is None else add(cls)

    def lookup(self, name: Any) -> T:
        """The class registered as ``name``; :class:`ConfigError` ``unknown <kind> 'name';
        choose one of ...`` for any other name."""
        try:
            return self._classes[name]
        except (KeyError, TypeError):
            raise ConfigError(f"unknown {self.kind} {name!r}; choose one of "
                              f"{', '.join(self._classes)}") from None

    def __getitem__(self, name: str) -> T:
        return self._classes[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._classes)

    def __len__(self) -> int:
        return len(self._classes)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._classes)})"


#: The search strategies by name (:class:`nasp.strategies.base.Strategy` subclasses), filled by
#: :mod:`nasp.strategies`; the configuration looks a strategy's options up here.
STRATEGIES: Registry[Any] = Registry("strategy")
