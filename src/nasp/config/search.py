"""The configuration of a search run (:class:`SearchConfig`) and its file (``config.yaml``)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasp.config.base import _check_numbers, _Config, _is_int, _is_number, _known_names, read_yaml
from nasp.errors import ConfigError
from nasp.spaces import DEFAULT_SPACE, SPACES


@dataclass
class SearchConfig(_Config):
    """Everything a search run depends on. Defaults are the ``cpu`` preset.

    ``checkpoint_every``: besides the end of each epoch, write the resume checkpoint after every
    so many steps (0 = only at the end of each epoch). ``deterministic``: deterministic
    algorithms only (:func:`nasp.engine.session.deterministic_mode`).
    """

    # what to search
    strategy: str = "nasp"
    space: str = DEFAULT_SPACE
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
    # benchmark look-up (a space with a benchmark table: SearchSpace.open_benchmark): the table,
    # and the column to report (default: the column of `dataset`)
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
        space = _space(self.space)
        if (space is not None and self.primitives == _DEFAULT_PRIMITIVES
                and self.primitives not in space.primitive_sets):
            # the default space's default set, left as it is, stands for this space's own
            self.primitives = space.default_primitives
        self.validate()
        self._check_space()

    def _check_sizes(self) -> None:
        """``layers`` and ``channels`` as the space's networks take them."""
        space = _space(self.space)
        if space is None:
            return  # an unknown space: validate() says so
        try:
            space.check_sizes(self.layers, self.channels)
        except ValueError as err:
            raise ConfigError(str(err)) from None

    def _check_space(self) -> None:
        """The space's own op sets, and the benchmark options only a space with a benchmark
        takes (:class:`~nasp.spaces.base.SearchSpace`)."""
        space = SPACES[self.space]
        try:
            space(self.primitives)  # the space refuses an op set of another
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if self.benchmark is not None and not space.has_benchmark:
            with_table = [name for name, cls in SPACES.items() if cls.has_benchmark]
            raise ConfigError(f"--benchmark looks up cells in a benchmark table, which --space "
                              f"{self.space} has none of: it needs --space "
                              f"{' or '.join(with_table)}")
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


_DEFAULT_PRIMITIVES = SearchConfig.primitives


def _space(name: Any) -> Any:
    """The space class registered as ``name``, or None."""
    return SPACES.get(name) if isinstance(name, str) else None


def load_config(path: str | os.PathLike) -> SearchConfig:
    """Read a ``config.yaml`` written by a run (or by hand).

    Raises :class:`ConfigError` naming ``path`` (and nothing else) when the file cannot be read,
    is not UTF-8 text or valid YAML (the line and column are given), does not hold a mapping, has
    unknown keys, or holds a value :meth:`SearchConfig.validate` refuses.
    """
    return SearchConfig.from_dict(read_yaml(path), f"config file {Path(path)}")
