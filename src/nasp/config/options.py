"""Options declared once: a dataclass field with its help text, metavar, choices and whether it is
on the command line, from which the command line (:mod:`nasp.apps.arguments`), the config file
and the choice checks are all made.

The run configurations (:class:`~nasp.config.SearchConfig`, :class:`~nasp.config.TrainConfig`)
declare their fields with :func:`option`, and so does each search strategy's options dataclass
(a :class:`StrategyOptions` subclass, see :mod:`nasp.strategies.base`), which also checks its
own values (:meth:`StrategyOptions.validate`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import MISSING, Field, dataclass, fields
from typing import Any, ClassVar

from nasp.config.base import (
    _check_choices,
    _check_numbers,
    _choices_of,
    _flag,
    _is_int,
    _is_number,
)

__all__ = ["RUN_OPTIONS", "StrategyOptions", "check_choices", "check_numbers", "choices_of",
           "cli_fields", "flag", "is_int", "is_number", "option", "value_type"]

# the checks an options class's validate() uses
check_choices = _check_choices
check_numbers = _check_numbers
choices_of = _choices_of
flag = _flag
is_int = _is_int
is_number = _is_number


def option(default: Any = MISSING, *, help: str | None = None, metavar: str | None = None,
           choices: tuple[str, ...] | str | None = None, cli: bool = True) -> Any:
    """A dataclass field with a default and what the command line needs to offer it.

    ``choices``: the allowed values, or the name of a registry they come from (``"strategy"``,
    ``"space"``, ``"primitives"``, ``"dataset"``); a value outside them is a
    :class:`ConfigError` (:func:`check_choices`). ``cli``: whether the option is on the command
    line (``--name-with-dashes``); every option is in the config file either way.
    """
    return dataclasses.field(default=default, metadata={
        "help": help, "metavar": metavar, "choices": choices, "cli": cli})


def cli_fields(cls: type) -> list[Field]:
    """The fields of dataclass ``cls`` on the command line, in declaration order."""
    return [f for f in fields(cls) if f.metadata.get("cli", False)]


def value_type(cls: type, f: Field) -> type:
    """The type of field ``f``'s values with None left out (``int`` for ``int | None``)."""
    hint = typing.get_type_hints(cls)[f.name]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return typing.get_origin(hint) or hint


#: The options both run configurations declare alike: keyword arguments of :func:`option`.
RUN_OPTIONS: dict[str, dict[str, Any]] = {
    "dataset": dict(default="digits", choices="dataset"),
    "data_dir": dict(default=None, metavar="DIR", help="where the data set lives (or goes)"),
    "batch_size": dict(default=64),
    "cutout": dict(default=0, metavar="PIXELS", help="cutout size (0 = off)"),
    "seed": dict(default=0),
    "device": dict(default="auto", help="cpu, cuda, cuda:N or auto (default)"),
    "memory_format": dict(
        default="auto", choices=("auto", "channels_last", "contiguous"),
        help="tensor layout (auto: channels_last on CPU, contiguous on CUDA)"),
    "precision": dict(default="auto", choices=("auto", "fp32", "bf16"),
                      help="autocast precision (auto: bf16 on CUDA, fp32 on CPU)"),
    "sync_bn": dict(
        default=False,
        help="under torchrun: BatchNorm statistics of the global batch across all processes "
             "(SyncBatchNorm on CUDA); no effect in a single process"),
    "checkpoint_every": dict(
        default=0, metavar="N",
        help="also write the resume checkpoint every N steps (default 0: only at the end of "
             "each epoch)"),
    "deterministic": dict(
        default=False,
        help="deterministic algorithms only (torch.use_deterministic_algorithms; on CUDA also "
             "cuDNN and cuBLAS settings): the same config gives the same result, on the same "
             "hardware and software"),
}


@dataclass
class StrategyOptions:
    """The options of a search strategy (its ``Options``), declared with :func:`option`.

    A subclass adds fields and may extend :meth:`validate`; a strategy reads them as
    ``self.options.name``. In a :class:`~nasp.config.SearchConfig` they sit in ``options`` and
    in ``config.yaml`` beside the run's own keys, at the top level. ``title`` names the options
    a class declares (one group of ``nasp search --help``).
    """

    title: ClassVar[str] = "strategy options"

    def validate(self, run: Any) -> None:
        """Raise :class:`ConfigError` for a value no search can run with (``run`` is the
        :class:`~nasp.config.SearchConfig`, for checks against its values); may normalise
        values (a list to a tuple)."""
        check_choices(self)

    @classmethod
    def declared(cls) -> list[Field]:
        """The fields this class itself declares (not those it inherits)."""
        own = cls.__dict__.get("__annotations__", {})
        return [f for f in fields(cls) if f.name in own]
