"""Search configuration: one dataclass, named presets, YAML in and out.

A run is fully described by a :class:`SearchConfig`. The command line starts from a preset,
overrides the options given on it, and writes the resolved config into the run directory as
``config.yaml``; :func:`load_config` reads it back.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

__all__ = ["PRESETS", "ConfigError", "SearchConfig", "load_config", "preset"]


class ConfigError(ValueError):
    """An invalid configuration value or file; the message names the option and the problem."""


@dataclass
class SearchConfig:
    """Everything a search run depends on. Defaults are the ``cpu`` preset."""

    # what to search
    strategy: str = "nasp"
    space: str = "darts"
    primitives: str = "darts-7"
    # data
    dataset: str = "digits"
    data_dir: str | None = None
    subset: int | None = None
    batch_size: int = 64
    cutout: int = 0
    # network
    layers: int = 5
    channels: int = 8
    # schedule
    epochs: int = 12
    # network weights: SGD, cosine lr from w_lr to w_lr_min over the epochs
    w_lr: float = 0.025
    w_lr_min: float = 0.001
    w_momentum: float = 0.9
    w_weight_decay: float = 3e-4
    grad_clip: float = 5.0
    # architecture parameters: Adam with coupled weight decay
    a_lr: float = 3e-4
    a_betas: tuple[float, float] = (0.5, 0.999)
    a_weight_decay: float = 1e-3
    # DARTS second order: eps = hessian_radius / ||v|| in the finite-difference Hessian
    hessian_radius: float = 0.01
    # NASP
    size_penalty: float = 0.0
    arch_mode: str = "sparse"
    init_noise: float = 0.0
    # run
    seed: int = 0
    device: str = "auto"
    out: str | None = None

    def __post_init__(self):
        self.a_betas = tuple(float(b) for b in self.a_betas)
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` for a value no search can run with."""
        positive = ("batch_size", "layers", "channels", "epochs")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, "
                                  f"got {value!r}")
        if self.layers < 3:
            raise ConfigError(f"--layers must be at least 3 so that the network has normal and "
                              f"reduction cells, got {self.layers}")
        if self.channels % 2:
            raise ConfigError(f"--channels must be even (reduction cells concatenate two "
                              f"halves), got {self.channels}")
        if self.subset is not None and (not isinstance(self.subset, int) or self.subset < 2):
            raise ConfigError(f"--subset must be an integer of at least 2, got {self.subset!r}")
        nonneg = ("w_lr", "w_lr_min", "w_momentum", "w_weight_decay", "grad_clip", "a_lr",
                  "a_weight_decay", "hessian_radius", "size_penalty", "init_noise", "cutout")
        for name in nonneg:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{name} must be a non-negative number, got {value!r}")
        if len(self.a_betas) != 2 or not all(0 <= b < 1 for b in self.a_betas):
            raise ConfigError(f"a_betas must be two numbers in [0, 1), got {self.a_betas!r}")
        if self.arch_mode not in ("sparse", "reference"):
            raise ConfigError(
                f"--arch-mode must be 'sparse' or 'reference', got {self.arch_mode!r}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["a_betas"] = list(self.a_betas)
        return d

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self, **changes: Any) -> SearchConfig:
        """A copy with ``changes`` applied (None values are ignored) and validated."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


PRESETS: dict[str, dict[str, Any]] = {
    # a few seconds: tests and smoke runs
    "tiny": dict(dataset="digits", subset=256, layers=3, channels=4, epochs=2, batch_size=32),
    # the default: digits on a laptop CPU in a minute or two
    "cpu": {},
    # the paper's search setting (NASP, DARTS): CIFAR-10, 8 cells, C 16, 50 epochs, batch 64
    "paper": dict(dataset="cifar10", layers=8, channels=16, epochs=50, batch_size=64),
}


def preset(name: str, **overrides: Any) -> SearchConfig:
    """The named preset with ``overrides`` (None values ignored)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return SearchConfig(**PRESETS[name]).replace(**overrides)


def load_config(path: str | os.PathLike) -> SearchConfig:
    """Read a ``config.yaml`` written by a run (or by hand)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of option: value")
    known = {f.name for f in fields(SearchConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"config file {path} has unknown keys {', '.join(unknown)}; "
                          f"known keys are {', '.join(sorted(known))}")
    try:
        return SearchConfig(**data)
    except ConfigError as err:
        raise ConfigError(f"config file {path}: {err}") from None
    except (TypeError, ValueError) as err:
        raise ConfigError(f"config file {path} has a bad value: {err}") from None
