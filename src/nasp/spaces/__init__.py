"""Search spaces by name."""

from __future__ import annotations

from nasp.spaces.base import SearchSpace
from nasp.spaces.darts_cnn.space import ChildNetwork, DartsCNNSpace, Supernet
from nasp.spaces.nb201.space import NB201ChildNetwork, NB201Space, NB201Supernet

SPACES = {"darts": DartsCNNSpace, "nb201": NB201Space}


def build_space(name: str = "darts", primitives: str = "darts-7") -> SearchSpace:
    """The search space ``name`` with the named primitive set."""
    try:
        cls = SPACES[name]
    except KeyError:
        raise ValueError(
            f"unknown search space {name!r}; choose one of {', '.join(SPACES)}") from None
    return cls(primitives)


__all__ = ["SPACES", "ChildNetwork", "DartsCNNSpace", "NB201ChildNetwork", "NB201Space",
           "NB201Supernet", "SearchSpace", "Supernet", "build_space"]
