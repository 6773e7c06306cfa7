"""JSON text and files of a genotype, written once for every space's genotype type.

A genotype class mixes in :class:`JSONGenotype` and provides ``to_dict``/``from_dict``;
``file_error`` is the :class:`~nasp.errors.GenotypeError` subclass its problems raise. Every
problem reading a file (missing, unreadable, not UTF-8, not JSON, refused by ``from_dict``) is
that error naming the file, and nothing else is raised.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar

from nasp.errors import GenotypeError
from nasp.runtime.atomic import atomic_write_text
from nasp.spaces.tuple_text import one_line

__all__ = ["JSONGenotype"]


class JSONGenotype:
    """``to_json``/``from_json``/``save``/``load`` from ``to_dict``/``from_dict``."""

    file_error: ClassVar[type[GenotypeError]] = GenotypeError

    def to_json(self, indent: int | None = None) -> str:
        """JSON text of :meth:`to_dict` (one line unless ``indent`` is given)."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str | bytes) -> Any:
        """Inverse of :meth:`to_json`; any text that is not the JSON of a genotype of this type
        is a :attr:`file_error` (and nothing else)."""
        try:
            data = json.loads(text)
        except (ValueError, TypeError, RecursionError) as err:
            raise cls.file_error(f"invalid genotype JSON: {one_line(err)}") from None
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_json` to ``path`` atomically (a temporary file in the same folder
        replaces ``path``: a crash leaves the old file or the new one, never half of one)."""
        atomic_write_text(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Any:
        """Read a genotype written by :meth:`save`; every problem is a :attr:`file_error`
        naming ``path``."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise cls.file_error(f"cannot read genotype file {path}: {one_line(err)}") from None
        try:
            return cls.from_json(text)
        except GenotypeError as err:
            raise cls.file_error(f"genotype file {path}: {err}") from None
