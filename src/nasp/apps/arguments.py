"""Command-line options made from the option declarations (:func:`nasp.config.options.option`):
the run configurations' fields and every registered strategy's options, so that no option is
listed by hand.

Each field on the command line becomes ``--name-with-dashes`` with its help text, metavar and
choices; an ``int`` or ``float`` field parses its type, a ``bool`` one is a flag. Every
option's default is None (``--flag``: None or True): an option left out takes the preset's or
the config file's value. :func:`given` collects the parsed values by field name.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from dataclasses import Field, fields
from typing import Any

from nasp.config import PRESETS, describe_preset
from nasp.config.options import choices_of, cli_fields, flag, value_type
from nasp.registry import STRATEGIES
from nasp.spaces import SPACES

__all__ = ["DEVICE_OPTIONS", "add_options", "add_strategy_options", "given", "preset_help"]

#: The options that say where and how a run computes.
DEVICE_OPTIONS = ("device", "memory_format", "precision")

_Parser = argparse.ArgumentParser | argparse._ArgumentGroup


def _add(parser: _Parser, cls: type, f: Field, prefix: str, help: Mapping[str, str | None],
         default: Any) -> str:
    """Add field ``f`` of dataclass ``cls`` as ``--<prefix><name>``; return its dest."""
    dest = prefix + f.name
    kwargs: dict[str, Any] = dict(dest=dest, default=default,
                                  help=help.get(f.name, f.metadata.get("help")))
    kind = value_type(cls, f)
    if kind is bool:
        kwargs["action"] = "store_true"
    else:
        if kind in (int, float):
            kwargs["type"] = kind
        if choices_of(f) is not None:
            kwargs["choices"] = choices_of(f)
        if f.metadata.get("metavar"):
            kwargs["metavar"] = f.metadata["metavar"]
    parser.add_argument(flag(dest), **kwargs)
    return dest


def add_options(parser: _Parser, cls: type, names: Iterable[str] | None = None, *,
                prefix: str = "", help: Mapping[str, str | None] | None = None,
                default: Any = None) -> list[str]:
    """Add the command-line fields of dataclass ``cls`` (those in ``names``, in that order, if
    given: any field, on the command line or not) as options ``--<prefix><name>``, with the help
    texts in ``help`` instead of the declared ones; return their dests."""
    by_name = {f.name: f for f in fields(cls)}
    chosen = cli_fields(cls) if names is None else [by_name[n] for n in names]
    return [_add(parser, cls, f, prefix, help or {}, default) for f in chosen]


def add_strategy_options(parser: argparse.ArgumentParser,
                         names: Iterable[str] | None = None) -> list[str]:
    """Add every registered strategy's command-line options (or only those in ``names``), one
    group per options class that declares some (``NASP options (nasp)``), each option once;
    return their dests."""
    def wanted(cls: type) -> list[Field]:
        declared = cls.declared() if hasattr(cls, "declared") else []
        return [f for f in declared if f.metadata.get("cli") and (names is None or f.name in names)]

    declarers: dict[type, list[str]] = {}
    for strategy_name, strategy in STRATEGIES.items():
        for cls in reversed(strategy.Options.__mro__):
            if wanted(cls):
                declarers.setdefault(cls, []).append(strategy_name)
    dests = []
    for cls, strategies in declarers.items():
        group = parser.add_argument_group(f"{cls.title} options ({', '.join(strategies)})")
        dests += [_add(group, cls, f, "", {}, None) for f in wanted(cls)]
    return dests


def given(args: argparse.Namespace, dests: Iterable[str], prefix: str = "") -> dict[str, Any]:
    """The parsed values of ``dests`` by field name (``prefix`` taken off), None when not
    given."""
    return {dest[len(prefix):]: getattr(args, dest) for dest in dests}


def preset_help(default: str) -> str:
    """--preset's help: what each search preset is on each --space."""
    return "starting configuration; each preset has values per --space: " + " ".join(
        f"{name} ({'the default; ' if name == default else ''}{p.about}): "
        + "; ".join(f"{space}: {describe_preset(name, space)}" for space in sorted(SPACES))
        + "." for name, p in PRESETS.items())
