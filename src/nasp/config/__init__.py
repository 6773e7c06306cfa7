"""Run configurations: one dataclass per kind of run, named presets, YAML in and out.

A search is fully described by a :class:`SearchConfig`, a train-from-scratch run by a
:class:`TrainConfig` (and the genotype it trains). The command line starts from a preset (a
search preset has values per search space, :class:`Preset`), overrides the options given on it,
and writes the resolved config into the run directory as ``config.yaml``; :func:`load_config`
reads it back. A bad option or config file is a :class:`~nasp.errors.ConfigError` naming it.

Every option is declared once, as a dataclass field with its help text, metavar and choices
(:func:`nasp.config.options.option`); the command line is made from these declarations. A search
strategy declares its own options (:class:`nasp.config.options.StrategyOptions`); a
:class:`SearchConfig` holds those of its strategy in ``options``.
"""

from nasp.config.presets import PRESETS, Preset, describe_preset, preset
from nasp.config.search import SearchConfig, load_config
from nasp.config.train import TRAIN_PRESETS, TrainConfig, train_preset
from nasp.errors import ConfigError

__all__ = [
    "PRESETS", "TRAIN_PRESETS", "ConfigError", "Preset", "SearchConfig", "TrainConfig",
    "describe_preset", "load_config", "preset", "train_preset",
]
