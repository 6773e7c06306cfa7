"""Genotypes of any space: read a genotype file or dict, resolve a command-line specification.

Every genotype names its space (``"space"`` in its dict and ``genotype.json``); files written
before they did are recognised by their layout (:meth:`SearchSpace.claims_genotype_dict
<nasp.spaces.base.SearchSpace.claims_genotype_dict>`, the default space taking whatever no other
space claims), so they still load. Each registered space is asked in turn: nothing here knows a
particular space. The spaces built from a user's model (:data:`MODEL_SPACES
<nasp.spaces.registry.MODEL_SPACES>`) are asked too, after the registered ones: their
genotypes (``genotype.json`` and ``arch.json`` of ``nasp.search(model, ...)``) are read here as
well, though they are not searched by name.
"""

from __future__ import annotations

import json
import os
import reprlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nasp.errors import GenotypeError
from nasp.spaces.base import Genotype, SearchSpace
from nasp.spaces.registry import DEFAULT_SPACE, MODEL_SPACES, SPACES

__all__ = ["GENOTYPE_FILE", "builtin_genotypes", "genotype_from_dict", "is_genotype",
           "load_genotype", "resolve_genotype"]

#: Name of the genotype file inside a search or train run directory.
GENOTYPE_FILE = "genotype.json"


def _known() -> dict[str, type[SearchSpace]]:
    """Every space whose genotypes are read: the registered ones, then the model spaces."""
    return {**SPACES, **MODEL_SPACES}


def _space_of_dict(data: Any) -> type[SearchSpace]:
    """The space whose genotype ``data`` is: the one it names, else the first registered space
    other than the default that claims its layout, else the default space if it claims it, else
    the first model space that claims it (a model's ``arch.json``: a mapping of labels to
    indices, which a damaged file of a built-in space may look like), else the default space
    (whose reader says what is wrong)."""
    known = _known()
    if isinstance(data, Mapping) and "space" in data:
        name = data["space"]
        if isinstance(name, str) and name in known:
            return known[name]
        raise GenotypeError(f"the genotype names the space {reprlib.repr(name)}, which this nasp "
                            f"does not know (its spaces: {', '.join(known)})")
    default = SPACES[DEFAULT_SPACE]
    others = [cls for name, cls in SPACES.items() if name != DEFAULT_SPACE]
    for cls in [*others, default, *MODEL_SPACES.values()]:
        if cls.claims_genotype_dict(data):
            return cls
    return default


def genotype_from_dict(data: Any) -> Genotype:
    """A genotype of any space from its ``to_dict()`` (see the module docstring); anything
    invalid is a :class:`~nasp.errors.GenotypeError`."""
    return _space_of_dict(data).genotype_type.from_dict(data)


def load_genotype(path: str | os.PathLike[str]) -> Genotype:
    """A ``genotype.json`` of any space; any problem is a :class:`~nasp.errors.GenotypeError`
    naming ``path``."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        data = None  # the default space's reader says what is wrong with the file
    try:
        cls = _space_of_dict(data)
    except GenotypeError as err:
        raise GenotypeError(f"genotype file {path}: {err}") from None
    return cls.genotype_type.load(path)


def is_genotype(value: object) -> bool:
    """Whether ``value`` is a genotype of a registered space or a model space."""
    return isinstance(value, tuple(cls.genotype_type for cls in _known().values()))


def builtin_genotypes() -> dict[str, Genotype]:
    """The published cells of every space by name."""
    return {name: g for cls in SPACES.values() for name, g in cls.builtin_genotypes.items()}


def _existing_path(spec: str | os.PathLike[str]) -> Path | None:
    """``spec`` as a path if it names an existing file or directory, else ``None``."""
    if not os.fspath(spec).strip():
        return None
    path = Path(spec)
    try:
        return path if path.exists() else None
    except (OSError, ValueError):  # a name too long, a NUL byte...
        return None


def _short(value: object) -> str:
    try:
        return reprlib.repr(value)
    except ValueError:  # an int too long to convert to decimal
        return "<huge>"


def resolve_genotype(spec: str | os.PathLike[str]) -> Genotype:
    """A genotype from a built-in name, a JSON file, a search run directory or genotype text.

    Tried in this order: a built-in name of any space (:func:`builtin_genotypes`, any case); an
    existing file, read with :func:`load_genotype`; an existing directory holding
    ``genotype.json``; text in a space's text format (each space's
    :meth:`~nasp.spaces.base.SearchSpace.parse_genotype` in registry order, e.g. DARTS tuple
    text or a NAS-Bench-201 arch string). Anything else, and any problem reading or validating
    what was found, is a :class:`~nasp.errors.GenotypeError` (a ``ValueError``) whose one-line
    message names the file or text and what is wrong; nothing else is raised.
    """
    builtins = builtin_genotypes()
    if isinstance(spec, str):
        by_name = {name.lower(): genotype for name, genotype in builtins.items()}
        if spec.strip().lower() in by_name:
            return by_name[spec.strip().lower()]
    path = _existing_path(spec)
    if path is not None:
        if path.is_dir():
            if not (path / GENOTYPE_FILE).is_file():
                raise GenotypeError(f"directory {path} holds no {GENOTYPE_FILE}")
            path = path / GENOTYPE_FILE
        return load_genotype(path)
    if isinstance(spec, str):
        for cls in SPACES.values():
            genotype = cls.parse_genotype(spec)
            if genotype is not None:
                return genotype
    text = os.fspath(spec)
    shown = repr(text) if len(text) <= 300 else _short(text)  # a path is shown whole
    texts = " nor ".join(cls.genotype_text_help for cls in SPACES.values())
    raise GenotypeError(
        f"cannot resolve genotype {shown}: it is not a built-in name "
        f"({', '.join(builtins)}, any case), not an existing genotype file or run "
        f"directory holding {GENOTYPE_FILE}, and neither {texts}")
