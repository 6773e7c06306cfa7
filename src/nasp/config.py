"""Run configurations: one dataclass per kind of run, named presets, YAML in and out.

A search is fully described by a :class:`SearchConfig`, a train-from-scratch run by a
:class:`TrainConfig` (and the genotype it trains). The command line starts from a preset (a
search preset has values per search space, :class:`Preset`), overrides the options given on it,
and writes the resolved config into the run directory as ``config.yaml``; :func:`load_config`
reads it back.

Every value is checked on construction (type, range, known choice; numbers must be finite and
given as numbers, not as text), so a bad option or config file is a :class:`ConfigError` with a
one-line message naming the option (and the file) before anything runs or is written.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from nasp.errors import ConfigError

__all__ = [
    "PRESETS", "TRAIN_PRESETS", "ConfigError", "Preset", "SearchConfig", "TrainConfig",
    "describe_preset", "load_config", "preset", "train_preset",
]


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
    from nasp.core.ops import PRIMITIVE_SETS
    from nasp.data import DATASETS
    from nasp.spaces import SPACES
    from nasp.strategies import STRATEGIES

    return {"strategy": tuple(sorted(STRATEGIES)), "space": tuple(sorted(SPACES)),
            "primitives": tuple(sorted(PRIMITIVE_SETS)), "dataset": tuple(sorted(DATASETS))}


class _Config:
    """What the config dataclasses share: dict/YAML out, checked construction from a mapping."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.dump(self.to_dict(), Dumper=_Dumper, sort_keys=False)

    def replace(self, **changes: Any):
        """A copy with ``changes`` applied (None values are ignored) and validated."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def _check_common(self, choices: dict[str, tuple[str, ...]]) -> None:
        """Checks both configs need: network size, batch, epochs, seed, cutout, the data set,
        paths and device names, device layout and precision, checkpoint interval and
        determinism, and any further ``choices`` (option -> allowed values)."""
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
        if self.layers < 3:
            raise ConfigError(f"--layers must be at least 3 so that the network has normal and "
                              f"reduction cells, got {self.layers}")
        if self.channels % 2:
            raise ConfigError(f"--channels must be even (reduction cells concatenate two "
                              f"halves), got {self.channels}")
        every = self.checkpoint_every
        if not isinstance(every, int) or isinstance(every, bool) or every < 0:
            raise ConfigError(f"--checkpoint-every must be a number of steps (0 = only at the end "
                              f"of each epoch), got {every!r}")
        if not isinstance(self.deterministic, bool):
            raise ConfigError(f"deterministic must be true or false, got {self.deterministic!r}")
        if not isinstance(self.sync_bn, bool):
            raise ConfigError(f"sync_bn must be true or false, got {self.sync_bn!r}")
        choices = {"memory_format": ("auto", "channels_last", "contiguous"),
                   "precision": ("auto", "fp32", "bf16"), "dataset": _known_names()["dataset"],
                   **choices}
        for name, allowed in choices.items():
            if not isinstance(getattr(self, name), str) or getattr(self, name) not in allowed:
                raise ConfigError(f"--{name.replace('_', '-')} must be one of "
                                  f"{', '.join(allowed)}, got {getattr(self, name)!r}")

    @classmethod
    def from_dict(cls, data: Any, source: str = "the configuration"):
        """A config from a mapping such as :meth:`to_dict` gives.

        Raises :class:`ConfigError` (and nothing else), its message starting with ``source``,
        for anything but a mapping, unknown keys and any value :meth:`validate` refuses.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"{source} must be a mapping of option: value, got {_kind(data)}")
        known = {f.name for f in fields(cls)}
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


@dataclass
class SearchConfig(_Config):
    """Everything a search run depends on. Defaults are the ``cpu`` preset.

    ``checkpoint_every``: besides the end of each epoch, write the resume checkpoint after every
    so many steps (0 = only at the end of each epoch). ``deterministic``: deterministic
    algorithms only (:func:`nasp.engine.session.deterministic_mode`).
    """

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
    a_lr_schedule: str = "constant"    # constant | cosine (over the epochs after the warm-up)
    # DARTS second order: eps = hessian_radius / ||v|| in the finite-difference Hessian
    hessian_radius: float = 0.01
    # NASP
    size_penalty: float = 0.0
    arch_mode: str = "sparse"
    init_noise: float = 0.0
    arch_update: str = "lazy"          # lazy (Algorithm 2) | plain (Algorithm 1)
    nasp_cell: str = "projection"      # the cell NASP returns: projection | softmax
    arch_grad: str = "plain"           # NASP: dL/dA_bar as it is, or centered per edge
    # NASP, DARTS: epochs of uniformly sampled paths before the first architecture step
    warmup_epochs: int = 0
    # NASP: share of weight steps after the warm-up that train a sampled path, not the child
    path_mix: float = 0.0
    # weights of ops a step does not run: decay (zero gradient) | frozen (no gradient)
    unselected_weights: str = "decay"
    # NAS-Bench-201 look-up (space nb201): a CSV table or NATS-Bench files, and the column to
    # report (default: the column of `dataset`, see nasp.spaces.nb201.benchmark_table)
    benchmark: str | None = None
    benchmark_column: str | None = None
    # random search: architectures sampled over the search (None: one per epoch)
    random_samples: int | None = None
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
        if self.space == "nb201" and self.primitives == "darts-7":
            self.primitives = "nb201"  # darts-7 is the DARTS space's default; nb201 has one set
        self.validate()
        self._check_nb201()

    def _check_nb201(self) -> None:
        """The NAS-Bench-201 space's fixed op set, and the benchmark options it alone takes."""
        if self.space == "nb201" and self.primitives != "nb201":
            raise ConfigError(f"--space nb201 has the benchmark's fixed op set: --primitives "
                              f"must be nb201 (or left out), got {self.primitives!r}")
        if self.benchmark is not None and self.space != "nb201":
            raise ConfigError("--benchmark looks up NAS-Bench-201 cells: it needs --space nb201")
        if self.benchmark_column is not None and self.benchmark is None:
            raise ConfigError("--benchmark-column names a column of the --benchmark table: "
                              "give --benchmark PATH too")

    def validate(self) -> None:
        """Raise :class:`ConfigError` for a value no search can run with; store ``a_betas`` as
        a tuple of floats."""
        self._check_common({"arch_mode": ("sparse", "reference"),
                            "arch_update": ("lazy", "plain"),
                            "nasp_cell": ("projection", "softmax"),
                            "arch_grad": ("plain", "centered"),
                            "a_lr_schedule": ("constant", "cosine"),
                            "unselected_weights": ("decay", "frozen"),
                            **{k: v for k, v in _known_names().items() if k != "dataset"}})
        if self.subset is not None and (not _is_int(self.subset) or self.subset < 2):
            raise ConfigError(f"--subset must be an integer of at least 2, got {self.subset!r}")
        _check_numbers(self, ("w_lr", "w_lr_min", "w_momentum", "w_weight_decay", "grad_clip",
                              "a_lr", "a_weight_decay", "hessian_radius", "size_penalty",
                              "init_noise"), 0, "a non-negative number")
        betas = self.a_betas
        if not (isinstance(betas, (list, tuple)) and len(betas) == 2
                and all(_is_number(b) and 0 <= b < 1 for b in betas)):
            raise ConfigError(f"a_betas must be a list of two numbers in [0, 1), got {betas!r}")
        self.a_betas = tuple(float(b) for b in betas)
        _check_numbers(self, ("path_mix",), 0, "a probability in [0, 1]", 1.0000001)
        if not _is_int(self.warmup_epochs) or not 0 <= self.warmup_epochs < self.epochs:
            raise ConfigError(f"--warmup-epochs must be an integer from 0 to --epochs - 1 "
                              f"({self.epochs - 1}) so that some epochs search the "
                              f"architecture, got {self.warmup_epochs!r}")
        if self.random_samples is not None and (not _is_int(self.random_samples)
                                                or self.random_samples < 1):
            raise ConfigError(f"--random-samples must be a positive integer, got "
                              f"{self.random_samples!r}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["a_betas"] = list(self.a_betas)
        return d


@dataclass(frozen=True)
class Preset:
    """A named starting configuration of a search, per search space.

    ``shared`` holds the values of every space; ``spaces`` maps a space to the values that are
    its own, which replace the shared ones of the same option (a space without an entry takes
    the shared values alone). Options named in neither keep :class:`SearchConfig`'s defaults.
    ``about`` says in a few words what the preset is for (``nasp search --help``).
    """

    about: str
    shared: dict[str, Any] = dataclasses.field(default_factory=dict)
    spaces: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def values(self, space: str) -> dict[str, Any]:
        """The preset's options on ``space``: the shared values, then the space's own."""
        return {**self.shared, **self.spaces.get(space, {})}


PRESETS: dict[str, Preset] = {
    "tiny": Preset("seconds: tests and smoke runs",
                   dict(dataset="digits", subset=256, layers=3, channels=4, epochs=2,
                        batch_size=32)),
    "cpu": Preset("digits on a laptop CPU in a minute or two"),
    "paper": Preset(
        "the search setting of the space's paper: NASP's and DARTS's on darts, that of the "
        "NAS-Bench-201 paper's DARTS baseline on nb201",
        # NASP and DARTS on the DARTS space: CIFAR-10, 8 cells, C 16, 50 epochs, batch 64 (the
        # optimisers are SearchConfig's defaults, the DARTS code's)
        dict(dataset="cifar10", layers=8, channels=16, epochs=50, batch_size=64),
        spaces={
            # The NAS-Bench-201 paper's one-shot baselines (Dong & Yang, ICLR 2020), as
            # AutoDL-Projects runs them (github.com/D-X-Y/AutoDL-Projects): the network is
            # the benchmark's own, N 5 cells per stage and C 16 (scripts-search/NAS-Bench-201-
            # algos/DARTS-V1.sh: --channel 16 --num_cells 5). The weights
            # (configs/nas-benchmark/algos/DARTS.config): SGD, lr 0.025 cosine down to
            # eta_min 0.001 over 50 epochs, no warm-up, momentum 0.9, nesterov, weight decay
            # 5e-4, batch 64; gradient clipping 5 (exps/NAS-Bench-201-algos/DARTS-V1.py's
            # default). The architecture (DARTS-V1.sh and DARTS-V1.py): Adam, lr 3e-4, weight
            # decay 1e-3, betas (0.5, 0.999). Data: CIFAR-10's 50,000 training images in two
            # disjoint halves of 25,000 (configs/nas-benchmark/cifar-split.txt, a fixed random
            # split), one for the weights and one for the architecture. Differences here: the
            # two halves are a seeded, class-stratified split (nasp.data.search_split),
            # and the weights' SGD is plain momentum (SearchConfig has no nesterov option).
            # GDAS.config is the same but for 240 epochs.
            "nb201": dict(dataset="cifar10", layers=5, channels=16, epochs=50, batch_size=64,
                          w_lr=0.025, w_lr_min=0.001, w_momentum=0.9, w_weight_decay=5e-4,
                          grad_clip=5.0, a_lr=3e-4, a_weight_decay=1e-3, a_betas=(0.5, 0.999)),
        }),
    "faithful": Preset(
        "NASP exactly as its paper and released code: the paper preset's data and network, no "
        "warm-up, the cell derived from softmax(A), every weight decayed each step",
        # the NASP paper (Yao et al., AAAI 2020) and xujinfan/NASP-codes: A = 0.5 (no noise),
        # Adam 3e-4 / (0.5, 0.999) / 1e-3, SGD 0.025 cosine to 0.001, momentum 0.9, weight decay
        # 3e-4, clip 5 (SearchConfig's defaults); Algorithm 2; genotype() on softmax(A); every
        # parameter has a zeroed gradient each step. On nb201 (not in the paper) the benchmark's
        # network, N 5, C 16.
        dict(dataset="cifar10", layers=8, channels=16, epochs=50, batch_size=64,
             strategy="nasp", warmup_epochs=0, nasp_cell="softmax", unselected_weights="decay",
             arch_update="lazy", init_noise=0.0, a_lr=3e-4),
        spaces={"nb201": dict(layers=5, channels=16)}),
}
"""The search presets by name; ``nasp search --preset NAME`` starts from one."""


def preset(name: str, **overrides: Any) -> SearchConfig:
    """The named preset on the space of ``overrides`` (default: :class:`SearchConfig`'s),
    with ``overrides`` applied (None values ignored)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    space = overrides.get("space") or SearchConfig.space
    return SearchConfig(**PRESETS[name].values(space)).replace(**overrides)


def describe_preset(name: str, space: str) -> str:
    """What the named preset is on ``space`` in a few words, such as ``cifar10, 8 cells, C 16,
    50 epochs, batch 64``; options other than the data and the size and schedule of the search
    are named when they differ from :class:`SearchConfig`'s defaults."""
    values = preset(name, space=space).to_dict()
    defaults = SearchConfig(space=space).to_dict()
    cells = (f"N {values['layers']} cells per stage" if space == "nb201"
             else f"{values['layers']} cells")
    parts = [values["dataset"] + ("" if values["subset"] is None
                                  else f" ({values['subset']} images)"),
             cells, f"C {values['channels']}", f"{values['epochs']} epochs",
             f"batch {values['batch_size']}"]
    shown = {"space", "dataset", "subset", "layers", "channels", "epochs", "batch_size"}
    parts += [f"{key} {value}" for key, value in values.items()
              if key not in shown and value != defaults[key]]
    return ", ".join(parts)


def load_config(path: str | os.PathLike) -> SearchConfig:
    """Read a ``config.yaml`` written by a run (or by hand).

    Raises :class:`ConfigError` naming ``path`` (and nothing else) when the file cannot be read,
    is not UTF-8 text or valid YAML (the line and column are given), does not hold a mapping, has
    unknown keys, or holds a value :meth:`SearchConfig.validate` refuses.
    """
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
    return SearchConfig.from_dict(data, f"config file {path}")


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
