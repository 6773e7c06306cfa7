"""The configuration of a search run (:class:`SearchConfig`) and its file (``config.yaml``).

A search config holds the run's own options (what to search, data, network, schedule, the
weight optimiser, device and run) and, in ``options``, those of its strategy: an instance of the
strategy's options dataclass (:mod:`nasp.strategies.base`), looked up by name in
:data:`nasp.registry.STRATEGIES`, so that this module imports no strategy.

``config.yaml`` is flat: the run's keys (in declaration order), then the keys of the strategy's
options. Reading a file (or keywords), a key that is another strategy's option is dropped when it
holds that option's default (a file written by nasp 0.1, which listed every strategy's options; a
preset made for another strategy); any other value is a :class:`ConfigError` naming the
strategies that take it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import Field, dataclass, fields
from pathlib import Path
from typing import Any

from nasp.config.base import (
    _check_choices,
    _check_numbers,
    _Config,
    _flag,
    _is_int,
    _is_number,
    read_yaml,
)
from nasp.config.budget import run_budget
from nasp.config.options import RUN_OPTIONS, StrategyOptions, option
from nasp.errors import ConfigError
from nasp.registry import STRATEGIES
from nasp.spaces import (
    DEFAULT_SPACE,
    SPACES,
    benchmark_help,
    primitive_sets_help,
    primitives_help,
    space_help,
)


@dataclass(init=False)
class SearchConfig(_Config):
    """Everything a search run depends on. Defaults are the ``cpu`` preset.

    ``options`` holds the strategy's options (an instance of its ``Options`` dataclass, by
    default with its defaults). Keyword construction and :meth:`replace` take option keywords
    too and route them there: ``SearchConfig(strategy="nasp", size_penalty=0.1)``; reading
    ``config.size_penalty`` gives ``config.options.size_penalty`` (another strategy's option:
    its default, as the file says).

    ``checkpoint_every``: besides the end of each epoch, write the resume checkpoint after every
    so many steps (0 = only at the end of each epoch). ``deterministic``: deterministic
    algorithms only (:func:`nasp.engine.reproducibility.deterministic_mode`).
    """

    # what to search
    strategy: str = option("nasp", choices="strategy")
    space: str = option(DEFAULT_SPACE, choices="space", help=space_help())
    primitives: str = option(
        SPACES[DEFAULT_SPACE].default_primitives, choices="primitives",
        help=primitives_help(f"candidate op set ({primitive_sets_help()})"))
    # data
    dataset: str = option(**RUN_OPTIONS["dataset"])
    data_dir: str | None = option(**RUN_OPTIONS["data_dir"])
    subset: int | None = option(
        None, metavar="N",
        help="use only N training images, a class-stratified sample drawn with --seed (cut in "
             "two stratified halves)")
    batch_size: int = option(**RUN_OPTIONS["batch_size"])
    cutout: int = option(**RUN_OPTIONS["cutout"])
    # text corpora (a recurrent space): truncated back-propagation through time
    bptt: int = option(35, metavar="N",
                       help="text: time steps per window of truncated back-propagation (the mean "
                            "of the --bptt-rule lengths; the lr of a step is scaled by its "
                            "length / N; default 35)")
    bptt_rule: str = option(
        "darts", choices=("darts", "awd", "fixed"),
        help="text: window lengths: darts (N, or N/2 with probability 0.05; DARTS's "
             "search; default), awd (around those by a normal of sd 5, 5 to N+20; "
             "AWD-LSTM) or fixed")
    # network
    layers: int = option(5, help="cells in the supernet")
    channels: int = option(8, help="initial channels C")
    # schedule
    epochs: int = option(12)
    # network weights: SGD, cosine lr from w_lr to w_lr_min over the epochs
    w_lr: float = option(0.025, cli=False)
    w_lr_min: float = option(0.001, cli=False)
    w_momentum: float = option(0.9, cli=False)
    w_weight_decay: float = option(3e-4, cli=False)
    grad_clip: float = option(5.0, cli=False)
    # weights of ops a step does not run: decay (zero gradient) | frozen (no gradient)
    unselected_weights: str = option(
        "decay", choices=("decay", "frozen"),
        help="weights of ops a step does not run: decay (a zero gradient, so weight decay and "
             "momentum still act, as the reference code; default) or frozen (untouched)")
    # benchmark look-up (a space with a benchmark table: SearchSpace.open_benchmark): the table,
    # and the column to report (default: the column of `dataset`)
    benchmark: str | None = option(None, metavar="PATH", help=benchmark_help())
    benchmark_column: str | None = option(
        None, metavar="NAME",
        help="the benchmark's accuracy column to report, or the benchmark's data set "
             "(cifar10-valid, imagenet16-120, ...) (default: the one of --dataset: cifar10, "
             "cifar100; needed for other data sets)")
    # hard budgets (nasp.core.budget, nasp.config.budget): of the evaluation network the cell
    # will be trained in (the space's evaluation sizes, this data set's images and classes)
    max_params: int | None = option(
        None, metavar="N",
        help="hard budget: the found cell's evaluation network (at the space's training "
             "sizes, as `nasp info` counts it) has at most N parameters (NASP projects within "
             "it, DARTS derives within it, random search samples within it)")
    max_flops: int | None = option(
        None, metavar="N", help="hard budget: at most N FLOPs per image (as --max-params)")
    max_latency: float | None = option(
        None, metavar="MS",
        help="hard budget: at most MS milliseconds per image by the --latency-table (as "
             "--max-params)")
    latency_table: str | None = option(
        None, metavar="PATH",
        help="the per-op latency table of --max-latency, measured on the target device by "
             "`nasp profile --out PATH`")
    # run
    seed: int = option(**RUN_OPTIONS["seed"])
    device: str = option(**RUN_OPTIONS["device"])
    memory_format: str = option(**RUN_OPTIONS["memory_format"])
    precision: str = option(**RUN_OPTIONS["precision"])
    # torchrun: BatchNorm statistics of the global batch across processes (nasp.runtime.distributed)
    sync_bn: bool = option(**RUN_OPTIONS["sync_bn"])
    out: str | None = option(None, metavar="RUN_DIR",
                             help="run directory (default runs/search-...)")
    # checkpoints and reproducibility (see nasp.engine.session and .reproducibility)
    checkpoint_every: int = option(**RUN_OPTIONS["checkpoint_every"])
    deterministic: bool = option(**RUN_OPTIONS["deterministic"])
    # the strategy's options (an instance of STRATEGIES[strategy].Options)
    options: StrategyOptions = dataclasses.field(default=None, metadata={"cli": False})

    def __init__(self, *, options: StrategyOptions | None = None, **values: Any):
        own = _run_fields()
        unknown = [k for k in values if k not in own and k not in _option_takers()]
        if unknown:
            raise TypeError(f"SearchConfig() got an unexpected keyword argument {unknown[0]!r}")
        for name, f in own.items():
            object.__setattr__(self, name, values.pop(name, f.default))
        _check_choices(self, ("strategy",))
        cls = STRATEGIES[self.strategy].Options
        if options is None:
            options = cls()
        elif type(options) is not cls:
            raise ConfigError(f"--strategy {self.strategy} takes {cls.__name__}, got options "
                              f"{options!r}")
        taken = {f.name for f in fields(cls)}
        for key, value in values.items():  # another strategy's options: their defaults only
            if key not in taken:
                _drop_foreign(key, value, self.strategy)
        object.__setattr__(self, "options", dataclasses.replace(
            options, **{k: v for k, v in values.items() if k in taken}))
        self.__post_init__()

    def __post_init__(self):
        space = _space(self.space)
        if (space is not None and self.primitives == _DEFAULT_PRIMITIVES
                and self.primitives not in space.primitive_sets):
            # the default space's default set, left as it is, stands for this space's own
            self.primitives = space.default_primitives
        self.validate()
        self._check_space()
        run_budget(self, read_data=False)  # an infeasible budget fails here

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
        _check_data_kind(self.space, space, self.dataset)
        if self.benchmark_column is not None and self.benchmark is None:
            raise ConfigError("--benchmark-column names a column of the --benchmark table: "
                              "give --benchmark PATH too")

    def validate(self) -> None:
        """Raise :class:`ConfigError` for a value no search can run with; the strategy's options
        check theirs (and may normalise them: ``a_betas`` becomes a tuple of floats)."""
        self._check_common()
        if not _is_int(self.bptt) or self.bptt < 2:
            raise ConfigError(f"--bptt must be an integer of at least 2 (time steps), got "
                              f"{self.bptt!r}")
        if self.subset is not None and (not _is_int(self.subset) or self.subset < 2):
            raise ConfigError(f"--subset must be an integer of at least 2, got {self.subset!r}")
        _check_numbers(self, ("w_lr", "w_lr_min", "w_momentum", "w_weight_decay", "grad_clip"),
                       0, "a non-negative number")
        self.options.validate(self)

    # -- the strategy's options, read and set as if they were the config's own ------------------
    def __getattr__(self, name: str) -> Any:
        options = self.__dict__.get("options")
        if options is not None and name in _names(options):
            return getattr(options, name)
        takers = _option_takers().get(name) if not name.startswith("__") else None
        if takers:  # another strategy's option: its default, as config.yaml says
            return next(iter(takers.values()))
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        options = self.__dict__.get("options")
        if name in _run_fields() or name == "options" or options is None:
            object.__setattr__(self, name, value)
        elif name in _names(options):
            setattr(options, name, value)
        elif name in _option_takers():
            raise AttributeError(_foreign_message(name, value, self.strategy))
        else:
            object.__setattr__(self, name, value)

    @classmethod
    def keys(cls) -> set[str]:
        """The run's keys and every registered strategy's option keys."""
        return set(_run_fields()) | set(_option_takers())

    def replace(self, **changes: Any) -> SearchConfig:
        """A copy with ``changes`` applied (None values are ignored) and validated; ``changes``
        may name options of the (new) strategy. A new strategy keeps the options it shares with
        the old one (``a_lr`` from NASP to DARTS) and drops the others."""
        changes = {k: v for k, v in changes.items() if v is not None}
        options = changes.pop("options", self.options)
        strategy = changes.get("strategy", self.strategy)
        cls = STRATEGIES[strategy].Options if strategy in STRATEGIES else type(options)
        if type(options) is not cls:
            shared = _names(options)
            options = cls(**{f.name: getattr(options, f.name) for f in fields(cls)
                             if f.name in shared})
        return SearchConfig(**{**{n: getattr(self, n) for n in _run_fields()}, **changes},
                            options=options)

    def to_dict(self) -> dict[str, Any]:
        """The flat mapping ``config.yaml`` holds (see the module docstring); tuples as lists."""
        keys = [*_run_fields(), *_names(self.options)]
        return {k: _plain(getattr(self, k)) for k in keys}


def _check_data_kind(name: str, space: Any, dataset: Any) -> None:
    """A space whose ``data_kind`` is ``"text"`` (a recurrent space) searches on a text corpus
    (:data:`~nasp.data.TEXT_DATASETS`), every other space on images."""
    from nasp.data import TEXT_DATASETS, is_text_dataset

    takes_text = getattr(space, "data_kind", "image") == "text"
    if not isinstance(dataset, str) or takes_text == is_text_dataset(dataset):
        return
    if takes_text:
        raise ConfigError(f"--space {name} searches a language model on a text corpus; "
                          f"--dataset {dataset} holds images: use --dataset "
                          f"{' or '.join(sorted(TEXT_DATASETS))}")
    text_spaces = [n for n, cls in SPACES.items() if getattr(cls, "data_kind", "") == "text"]
    raise ConfigError(f"--dataset {dataset} is a text corpus and --space {name} searches image "
                      f"cells: use "
                      + (f"--space {' or '.join(text_spaces)}" if text_spaces
                         else "a recurrent space (none is installed)"))


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _names(options: Any) -> list[str]:
    """The option names of an options dataclass (or class), in declaration order."""
    return [f.name for f in fields(options)]


def _run_fields() -> dict[str, Field]:
    """The run's own fields of :class:`SearchConfig` (all but ``options``), by name."""
    return {f.name: f for f in fields(SearchConfig) if f.name != "options"}


def _option_takers() -> dict[str, dict[str, Any]]:
    """Every registered strategy's option -> {strategy that takes it: its default there}."""
    takers: dict[str, dict[str, Any]] = {}
    for name, strategy in STRATEGIES.items():
        for f in fields(strategy.Options):
            takers.setdefault(f.name, {})[name] = f.default
    return takers


def _same(value: Any, default: Any) -> bool:
    """Whether a value read from a file or given as a keyword is ``default`` (numbers by value,
    sequences item by item, a bool only as a bool)."""
    if isinstance(value, (list, tuple)) and isinstance(default, (list, tuple)):
        return len(value) == len(default) and all(map(_same, value, default))
    if _is_number(value) and _is_number(default):
        return value == default
    return type(value) is type(default) and value == default


def _foreign_message(key: str, value: Any, strategy: str) -> str:
    takers = _option_takers()[key]
    defaults = " or ".join(dict.fromkeys(repr(d) for d in takers.values()))
    return (f"{key} ({_flag(key)}) is an option of strateg{'y' if len(takers) == 1 else 'ies'} "
            f"{', '.join(sorted(takers))}, not of {strategy}: leave it out or give its default "
            f"{defaults} (got {value!r})")


def _drop_foreign(key: str, value: Any, strategy: str) -> None:
    """Accept another strategy's option ``key`` only at its default (it is dropped)."""
    if not any(_same(value, default) for default in _option_takers()[key].values()):
        raise ConfigError(_foreign_message(key, value, strategy))


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
