"""The configuration of a train-from-scratch run (:class:`TrainConfig`) and its presets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nasp.config.base import _check_numbers, _Config, _is_int
from nasp.errors import ConfigError


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
    :mod:`nasp.runtime.device` as for the search; evaluation always runs in float32.
    ``checkpoint_every`` and ``deterministic`` are as in :class:`SearchConfig`.
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
    # torchrun: BatchNorm statistics of the global batch across processes (nasp.runtime.distributed)
    sync_bn: bool = False
    out: str | None = None
    # checkpoints and reproducibility (see nasp.engine.session)
    checkpoint_every: int = 0
    deterministic: bool = False

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` for a value no training can run with."""
        self._check_common({"network": ("cifar", "imagenet"),
                            "lr_schedule": ("cosine", "exponential")})
        if self.subset is not None and (not _is_int(self.subset) or self.subset < 1):
            raise ConfigError(f"--subset must be a positive integer, got {self.subset!r}")
        _check_numbers(self, ("lr", "lr_min", "momentum", "weight_decay", "grad_clip",
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
