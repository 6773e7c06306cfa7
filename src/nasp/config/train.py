"""The configuration of a train-from-scratch run (:class:`TrainConfig`) and its presets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nasp.config.base import _check_numbers, _Config, _is_int, _is_number
from nasp.config.options import RUN_OPTIONS, option
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

    ``val_fraction`` of the training images (of the ``subset`` if one is given) are held out as
    a validation split, a class-stratified sample drawn with ``seed``
    (:func:`nasp.engine.train.validation_split`): evaluated after every epoch, it chooses
    ``best.pt``. ``val_fraction = 0`` trains on every training image, exactly as nasp did before
    the option existed, and keeps no ``best.pt``. The test split never chooses anything.
    """

    # data
    dataset: str = option(**RUN_OPTIONS["dataset"])
    data_dir: str | None = option(**RUN_OPTIONS["data_dir"])
    subset: int | None = option(
        None, metavar="N",
        help="use N training images only, a class-stratified sample drawn with --seed "
             "(--val-fraction of them are held out for validation)")
    val_fraction: float = option(
        0.1, metavar="F",
        help="hold out this fraction of the training images (class-stratified, drawn with "
             "--seed) as a validation split that chooses best.pt (tiny, quick: 0.1; paper, "
             "imagenet: 0 = train on all of them, no best.pt)")
    batch_size: int = option(**RUN_OPTIONS["batch_size"])
    cutout: int = option(**RUN_OPTIONS["cutout"])
    # network
    network: str = option(
        "cifar", choices=("cifar", "imagenet"),
        help="cifar: 3x3 stem (default); imagenet: three stride-2 stem convolutions")
    layers: int = option(5, help="cells in the network")
    channels: int = option(16, help="initial channels C")
    auxiliary_weight: float = option(
        0.4, metavar="W", help="weight of the auxiliary head's loss (0 = no auxiliary head)")
    drop_path: float = option(
        0.1, metavar="P", help="final drop-path probability, ramped up linearly (0 = off)")
    # optimiser and schedule
    epochs: int = option(10)
    lr: float = option(0.05, help="initial learning rate")
    lr_min: float = option(0.0, cli=False)
    lr_schedule: str = option("cosine", choices=("cosine", "exponential"), cli=False)
    lr_gamma: float = option(0.97, cli=False)
    momentum: float = option(0.9, cli=False)
    weight_decay: float = option(3e-4, cli=False)
    grad_clip: float = option(5.0, cli=False)
    label_smoothing: float = option(0.0, metavar="EPS")
    # text corpora (a recurrent cell's language model; nasp.engine.train_text): truncated
    # back-propagation through time, the switch to averaged SGD, the network's regularisers
    bptt: int = option(35, metavar="N",
                       help="text: time steps per window (the mean of the --bptt-rule lengths; "
                            "the lr of a step is scaled by its length / N; default 35)")
    bptt_rule: str = option(
        "awd", choices=("darts", "awd", "fixed"),
        help="text: window lengths: awd (AWD-LSTM's and DARTS's training; default), darts "
             "(DARTS's search) or fixed")
    nonmono: int = option(5, cli=False)  # text: SGD -> ASGD when the val loss stalls (0: never)
    dropouts: dict | None = option(None, cli=False)  # text: the network's dropouts, by name
    slowness: float | None = option(None, cli=False)  # text: TAR weight (None: the network's)
    # run
    seed: int = option(**RUN_OPTIONS["seed"])
    device: str = option(**RUN_OPTIONS["device"])
    memory_format: str = option(**RUN_OPTIONS["memory_format"])
    precision: str = option(**RUN_OPTIONS["precision"])
    # torchrun: BatchNorm statistics of the global batch across processes (nasp.runtime.distributed)
    sync_bn: bool = option(**RUN_OPTIONS["sync_bn"])
    out: str | None = option(None, metavar="RUN_DIR",
                             help="run directory (default runs/train-...)")
    # checkpoints and reproducibility (see nasp.engine.session and .reproducibility)
    checkpoint_every: int = option(**RUN_OPTIONS["checkpoint_every"])
    deterministic: bool = option(**RUN_OPTIONS["deterministic"])

    def __post_init__(self):
        self.validate()

    def _check_sizes(self) -> None:
        """As the default space's networks take them; on a text corpus the recurrent cell's
        space checks them when it builds the network (the genotype names that space)."""
        from nasp.data import is_text_dataset

        if not is_text_dataset(self.dataset):
            super()._check_sizes()

    def validate(self) -> None:
        """Raise :class:`ConfigError` for a value no training can run with."""
        self._check_common()
        if self.subset is not None and (not _is_int(self.subset) or self.subset < 1):
            raise ConfigError(f"--subset must be a positive integer, got {self.subset!r}")
        _check_numbers(self, ("lr", "lr_min", "momentum", "weight_decay", "grad_clip",
                              "auxiliary_weight"), 0, "a non-negative number")
        _check_numbers(self, ("drop_path", "label_smoothing"), 0, "a probability in [0, 1)", 1)
        _check_numbers(self, ("val_fraction",), 0, "a fraction in [0, 1) (0 = no validation split)",
                       1)
        _check_numbers(self, ("lr_gamma",), 0, "a factor in (0, 1]")
        if not _is_int(self.bptt) or self.bptt < 2:
            raise ConfigError(f"--bptt must be an integer of at least 2 (time steps), got "
                              f"{self.bptt!r}")
        if not _is_int(self.nonmono) or self.nonmono < 0:
            raise ConfigError(f"nonmono must be a number of epochs (0 = never switch to "
                              f"averaged SGD), got {self.nonmono!r}")
        if self.dropouts is not None and not (
                isinstance(self.dropouts, dict)
                and all(isinstance(k, str) and _is_number(v) and 0 <= v < 1
                        for k, v in self.dropouts.items())):
            raise ConfigError(f"dropouts must map dropout names to probabilities in [0, 1), got "
                              f"{self.dropouts!r}")
        if self.slowness is not None and not (_is_number(self.slowness) and self.slowness >= 0):
            raise ConfigError(f"slowness must be a non-negative number, got {self.slowness!r}")
        if not 0 < self.lr_gamma <= 1:
            raise ConfigError(f"--lr-gamma must be a factor in (0, 1], got {self.lr_gamma!r}")


TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    # a few seconds: tests and smoke runs
    "tiny": dict(subset=256, layers=3, channels=8, epochs=2, batch_size=32),
    # the default: digits on a laptop CPU in about a minute
    "quick": {},
    # the DARTS/NASP CIFAR-10 evaluation protocol (docs/evaluation.md): all 50,000 training
    # images, the last epoch's test accuracy reported, nothing chosen (val_fraction 0)
    "paper": dict(dataset="cifar10", layers=20, channels=36, epochs=600, batch_size=96,
                  lr=0.025, lr_min=0.0, cutout=16, drop_path=0.2, auxiliary_weight=0.4,
                  val_fraction=0.0),
    # the DARTS ImageNet protocol, for an image folder of 224x224 images (all its training
    # images, as for paper)
    "imagenet": dict(dataset="folder", network="imagenet", layers=14, channels=48, epochs=250,
                     batch_size=128, lr=0.1, lr_schedule="exponential", lr_gamma=0.97,
                     weight_decay=3e-5, label_smoothing=0.1, drop_path=0.0,
                     auxiliary_weight=0.4, val_fraction=0.0),
    # DARTS's recurrent cell on Penn Treebank (rnn/train.py; docs/evaluation.md): 850 units,
    # SGD lr 20 without momentum, clip 0.25, weight decay 8e-7, AWD-LSTM's window lengths,
    # averaged SGD after 5 stalled epochs; they stopped by hand (8000 epochs at most)
    "ptb-paper": dict(dataset="ptb", layers=1, channels=850, epochs=8000, batch_size=64,
                      lr=20.0, momentum=0.0, weight_decay=8e-7, grad_clip=0.25, bptt=35,
                      bptt_rule="awd", nonmono=5, lr_min=20.0, val_fraction=0.0,
                      auxiliary_weight=0.0, drop_path=0.0),
    # the same on a CPU in minutes: 200 units, the first 100,000 training tokens, 3 epochs
    "ptb-cpu": dict(dataset="ptb", layers=1, channels=200, epochs=3, batch_size=32,
                    subset=100_000, lr=20.0, momentum=0.0, weight_decay=8e-7, grad_clip=0.25,
                    bptt=35, bptt_rule="awd", nonmono=5, lr_min=20.0, val_fraction=0.0,
                    auxiliary_weight=0.0, drop_path=0.0),
}


def train_preset(name: str, **overrides: Any) -> TrainConfig:
    """The named train preset with ``overrides`` (None values ignored)."""
    if name not in TRAIN_PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(TRAIN_PRESETS)}")
    return TrainConfig(**TRAIN_PRESETS[name]).replace(**overrides)
