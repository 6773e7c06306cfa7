"""What the run configurations share: YAML in and out (YAML 1.2 numbers), checked construction
from a mapping, and the checks of values both kinds of run take.

Every value is checked on construction (type, range, known choice; numbers must be finite and
given as numbers, not as text), so a bad option or config file is a :class:`ConfigError` with a
one-line message naming the option (and the file) before anything runs or is written.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import Field, fields
from pathlib import Path
from typing import Any

import yaml

from nasp.errors import ConfigError


class _Loader(yaml.SafeLoader):
    """YAML's safe loader, reading ``1e-3`` as a number (YAML 1.2) rather than as text."""


class _Dumper(yaml.SafeDumper):
    """YAML's safe dumper, quoting text such as ``1e-3`` that :class:`_Loader` reads as a number."""


for _yaml_class in (_Loader, _Dumper):
    _yaml_class.add_implicit_resolver("tag:yaml.org,2002:float",
                                      re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"),
                                      list("-+0123456789"))

_SEED_LIMIT = 2**32
"""Seeds lie in [0, 2**32): the range every generator seeded from it (NumPy's too) accepts."""


def _kind(value: Any) -> str:
    """``a list``, ``a str``...: what a value is, for error messages."""
    if value is None:
        return "nothing"
    name = type(value).__name__
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def _key(key: Any) -> str:
    """A config key for an error message: plain if it is a simple name, else its repr."""
    return key if isinstance(key, str) and key.isidentifier() else repr(key)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _known_names() -> dict[str, tuple[str, ...]]:
    """The registries' names, for the options that pick from them.

    Imported here, when a config is checked, so that this module stays importable by the
    modules that fill the registries.
    """
    from nasp.data import DATASET_NAMES
    from nasp.registry import STRATEGIES
    from nasp.spaces import SPACES

    sets = {name for cls in SPACES.values() for name in cls.primitive_sets}
    return {"strategy": tuple(sorted(STRATEGIES)), "space": tuple(sorted(SPACES)),
            "primitives": tuple(sorted(sets)), "dataset": DATASET_NAMES}


def _flag(name: str) -> str:
    """``--a-lr`` for ``a_lr``: an option's name on the command line (and in messages)."""
    return "--" + name.replace("_", "-")


def _choices_of(f: Field) -> tuple[str, ...] | None:
    """The values field ``f`` allows (its ``choices`` metadata: a tuple, or the name of a
    registry, whose names are given sorted), or None for any value."""
    choices = f.metadata.get("choices")
    if isinstance(choices, str):
        return _known_names()[choices]
    return choices


def _check_choices(obj: Any, names: tuple[str, ...] | None = None) -> None:
    """Raise :class:`ConfigError` when a field of dataclass ``obj`` (of those in ``names``, if
    given) that has choices holds another value."""
    for f in fields(obj):
        if names is not None and f.name not in names:
            continue
        allowed = _choices_of(f)
        value = getattr(obj, f.name)
        if allowed is not None and (not isinstance(value, str) or value not in allowed):
            raise ConfigError(f"{_flag(f.name)} must be one of {', '.join(allowed)}, got "
                              f"{value!r}")


class _Config:
    """What the config dataclasses share: dict/YAML out, checked construction from a mapping."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.dump(self.to_dict(), Dumper=_Dumper, sort_keys=False)

    def replace(self, **changes: Any):
        """A copy with ``changes`` applied (None values are ignored) and validated."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def _check_common(self) -> None:
        """Checks both configs need: network size, batch, epochs, seed, cutout, paths and device
        names, checkpoint interval and determinism, and the value of every field with choices
        (the data set, device layout and precision...)."""
        for name in ("batch_size", "layers", "channels", "epochs"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, "
                                  f"got {value!r}")
        if not _is_int(self.seed) or not 0 <= self.seed < _SEED_LIMIT:
            raise ConfigError(f"--seed must be an integer in [0, 2**32), got {self.seed!r}")
        if not _is_int(self.cutout) or self.cutout < 0:
            raise ConfigError(f"--cutout must be a non-negative integer (pixels; 0 = off), got "
                              f"{self.cutout!r}")
        for name in ("data_dir", "out"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise ConfigError(f"--{name.replace('_', '-')} must be a path (text), got "
                                  f"{getattr(self, name)!r}")
        if not isinstance(self.device, str):
            raise ConfigError(f"--device must be a device name (cpu, cuda, cuda:N or auto), got "
                              f"{self.device!r}")
        self._check_sizes()
        every = self.checkpoint_every
        if not isinstance(every, int) or isinstance(every, bool) or every < 0:
            raise ConfigError(f"--checkpoint-every must be a number of steps (0 = only at the end "
                              f"of each epoch), got {every!r}")
        if not isinstance(self.deterministic, bool):
            raise ConfigError(f"deterministic must be true or false, got {self.deterministic!r}")
        if not isinstance(self.sync_bn, bool):
            raise ConfigError(f"sync_bn must be true or false, got {self.sync_bn!r}")
        _check_choices(self)

    @classmethod
    def keys(cls) -> set[str]:
        """The keys a config file of this kind may hold."""
        return {f.name for f in fields(cls)}

    def _check_sizes(self) -> None:
        """``layers`` and ``channels`` as the networks of the default search space take them
        (:meth:`~nasp.spaces.base.SearchSpace.check_sizes`); a config that names its space asks
        that space instead."""
        from nasp.spaces import DEFAULT_SPACE, SPACES

        try:
            SPACES[DEFAULT_SPACE].check_sizes(self.layers, self.channels)
        except ValueError as err:
            raise ConfigError(str(err)) from None

    @classmethod
    def from_dict(cls, data: Any, source: str = "the configuration"):
        """A config from a mapping such as :meth:`to_dict` gives.

        Raises :class:`ConfigError` (and nothing else), its message starting with ``source``,
        for anything but a mapping, unknown keys and any value :meth:`validate` refuses.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"{source} must be a mapping of option: value, got {_kind(data)}")
        known = cls.keys()
        unknown = sorted(_key(key) for key in data if key not in known)
        if unknown:
            raise ConfigError(f"{source} has unknown keys {', '.join(unknown)}; known keys are "
                              f"{', '.join(sorted(known))}")
        try:
            return cls(**data)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{source} has a bad value: {err}") from None


def _yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML error on one line, with the line and column of each mark."""
    if not isinstance(err, yaml.MarkedYAMLError):
        return " ".join(str(err).split())
    parts = []
    for text, mark in ((err.context, err.context_mark), (err.problem, err.problem_mark)):
        if text:
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            parts.append(f"{' '.join(text.split())}{where}")
    return ": ".join(parts) or " ".join(str(err).split())


def _is_number(value: Any) -> bool:
    """A finite int or float (not a bool, not text)."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and (not isinstance(value, float) or math.isfinite(value)))


def _check_numbers(config: Any, names: tuple[str, ...], low: float, what: str,
                   high: float | None = None) -> None:
    """Raise :class:`ConfigError` unless every option in ``names`` is a finite number in
    [low, high)."""
    for name in names:
        value = getattr(config, name)
        if not _is_number(value) or value < low or (high is not None and value >= high):
            raise ConfigError(f"--{name.replace('_', '-')} must be {what}, got {value!r}")


def read_yaml(path: str | os.PathLike) -> Any:
    """The YAML document in ``path``; :class:`ConfigError` naming ``path`` when the file cannot be
    read, is not UTF-8 text or not valid YAML (the line and column are given)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror or err}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"cannot read config file {path}: it is not UTF-8 text (byte "
                          f"{err.start}); save it as UTF-8") from None
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {_yaml_problem(err)}") from None
    except RecursionError:
        raise ConfigError(f"config file {path} is nested too deeply to be a config") from None
    return data
