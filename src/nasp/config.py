"""Run configurations: one dataclass per kind of run, named presets, YAML in and out.

A search is fully described by a :class:`SearchConfig`, a train-from-scratch run by a
:class:`TrainConfig` (and the genotype it trains). The command line starts from a preset,
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

__all__ = [
    "PRESETS", "TRAIN_PRESETS", "ConfigError", "SearchConfig", "TrainConfig", "load_config",
    "preset", "train_preset",
]


class ConfigError(ValueError):
    """An invalid configuration value or file; the message names the option and the problem."""


class _Config:
    """What the config dataclasses share: dict/YAML out, checked construction from a mapping."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self, **changes: Any):
        """A copy with ``changes`` applied (None values are ignored) and validated."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def _check_common(self, choices: dict[str, tuple[str, ...]]) -> None:
        """Checks both configs need: network size, batch, epochs, device layout and precision,
        and any further ``choices`` (option -> allowed values)."""
        for name in ("batch_size", "layers", "channels", "epochs"):
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
        if not isinstance(self.sync_bn, bool):
            raise ConfigError(f"sync_bn must be true or false, got {self.sync_bn!r}")
        choices = {"memory_format": ("auto", "channels_last", "contiguous"),
                   "precision": ("auto", "fp32", "bf16"), **choices}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"--{name.replace('_', '-')} must be one of "
                                  f"{', '.join(allowed)}, got {getattr(self, name)!r}")

    @classmethod
    def from_dict(cls, data: Any, source: str = "the configuration"):
        """A config from a mapping such as :meth:`to_dict` gives; unknown keys are an error."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source} must be a mapping of option: value")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source} has unknown keys {', '.join(unknown)}; known keys are "
                              f"{', '.join(sorted(known))}")
        try:
            return cls(**data)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{source} has a bad value: {err}") from None


@dataclass
class SearchConfig(_Config):
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
    memory_format: str = "auto"
    precision: str = "auto"
    # torchrun: BatchNorm statistics of the global batch across processes (nasp.distributed)
    sync_bn: bool = False
    out: str | None = None

    def __post_init__(self):
        self.a_betas = tuple(float(b) for b in self.a_betas)
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` for a value no search can run with."""
        self._check_common({"arch_mode": ("sparse", "reference")})
        if self.subset is not None and (not isinstance(self.subset, int) or self.subset < 2):
            raise ConfigError(f"--subset must be an integer of at least 2, got {self.subset!r}")
        _check_numbers(self, ("w_lr", "w_lr_min", "w_momentum", "w_weight_decay", "grad_clip",
                              "a_lr", "a_weight_decay", "hessian_radius", "size_penalty",
                              "init_noise", "cutout"), 0, "a non-negative number")
        if len(self.a_betas) != 2 or not all(0 <= b < 1 for b in self.a_betas):
            raise ConfigError(f"a_betas must be two numbers in [0, 1), got {self.a_betas!r}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["a_betas"] = list(self.a_betas)
        return d



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
    return SearchConfig.from_dict(data, f"config file {path}")


def _check_numbers(config: Any, names: tuple[str, ...], low: float, what: str,
                   high: float | None = None) -> None:
    """Raise :class:`ConfigError` unless every option in ``names`` is a number in [low, high)."""
    for name in names:
        value = getattr(config, name)
        if (not isinstance(value, (int, float)) or isinstance(value, bool) or value < low
                or (high is not None and value >= high)):
            raise ConfigError(f"--{name.replace('_', '-')} must be {what}, got {value!r}")


@dataclass
class TrainConfig(_Config):
    """Everything a train-from-scratch run depends on, besides the genotype.

    Defaults are the ``quick`` preset. The network is the DARTS evaluation network
    (``network="cifar"``: NetworkCIFAR, ``"imagenet"``: NetworkImageNet) with ``layers`` cells
    and ``channels`` initial channels. SGD with momentum and weight decay; the lr goes from
    ``lr`` to ``lr_min`` along a cosine over the epochs (``lr_schedule="cosine"``) or is
    multiplied by ``lr_gamma`` after each epoch (``"exponential"``, the DARTS ImageNet schedule).
    ``grad_clip`` bounds the gradient norm (0 = no clipping). ``drop_path`` is the final
    drop-path probability, ramped linearly from 0; ``auxiliary_weight`` weighs the auxiliary
    head's loss (0 = no auxiliary head); ``label_smoothing`` applies to both losses.
    ``memory_format`` and ``precision`` (the training steps' autocast) are resolved by
    :mod:`nasp.device` as for the search; evaluation always runs in float32.
    """

    # data
    dataset: str = "digits"
    data_dir: str | None = None
    subset: int | None = None
    batch_size: int = 64
    cutout: int = 0
    # network
    network: str = "cifar"
    layers: int = 5
    channels: int = 16
    auxiliary_weight: float = 0.4
    drop_path: float = 0.1
    # optimiser and schedule
    epochs: int = 10
    lr: float = 0.05
    lr_min: float = 0.0
    lr_schedule: str = "cosine"
    lr_gamma: float = 0.97
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    label_smoothing: float = 0.0
    # run
    seed: int = 0
    device: str = "auto"
    memory_format: str = "auto"
    precision: str = "auto"
    # torchrun: BatchNorm statistics of the global batch across processes (nasp.distributed)
    sync_bn: bool = False
    out: str | None = None

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` for a value no training can run with."""
        self._check_common({"network": ("cifar", "imagenet"),
                            "lr_schedule": ("cosine", "exponential")})
        if self.subset is not None and (not isinstance(self.subset, int)
                                        or isinstance(self.subset, bool) or self.subset < 1):
            raise ConfigError(f"--subset must be a positive integer, got {self.subset!r}")
        _check_numbers(self, ("lr", "lr_min", "momentum", "weight_decay", "grad_clip", "cutout",
                              "auxiliary_weight"), 0, "a non-negative number")
        _check_numbers(self, ("drop_path", "label_smoothing"), 0, "a probability in [0, 1)", 1)
        _check_numbers(self, ("lr_gamma",), 0, "a factor in (0, 1]")
        if not 0 < self.lr_gamma <= 1:
            raise ConfigError(f"--lr-gamma must be a factor in (0, 1], got {self.lr_gamma!r}")


TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    # a few seconds: tests and smoke runs
    "tiny": dict(subset=256, layers=3, channels=8, epochs=2, batch_size=32),
    # the default: digits on a laptop CPU in about a minute
    "quick": {},
    # the DARTS/NASP CIFAR-10 evaluation protocol (DESIGN.md section 4)
    "paper": dict(dataset="cifar10", layers=20, channels=36, epochs=600, batch_size=96,
                  lr=0.025, lr_min=0.0, cutout=16, drop_path=0.2, auxiliary_weight=0.4),
    # the DARTS ImageNet protocol, for an image folder of 224x224 images
    "imagenet": dict(dataset="folder", network="imagenet", layers=14, channels=48, epochs=250,
                     batch_size=128, lr=0.1, lr_schedule="exponential", lr_gamma=0.97,
                     weight_decay=3e-5, label_smoothing=0.1, drop_path=0.0,
                     auxiliary_weight=0.4),
}


def train_preset(name: str, **overrides: Any) -> TrainConfig:
    """The named train preset with ``overrides`` (None values ignored)."""
    if name not in TRAIN_PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(TRAIN_PRESETS)}")
    return TrainConfig(**TRAIN_PRESETS[name]).replace(**overrides)
