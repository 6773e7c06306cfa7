"""The search spaces by name: one line per space makes it known to the library and the CLI."""

from __future__ import annotations

from collections.abc import Mapping

from nasp.errors import GenotypeError
from nasp.spaces.base import Genotype, SearchSpace
from nasp.spaces.darts_cnn.space import DartsCNNSpace
from nasp.spaces.darts_rnn.space import DartsRNNSpace
from nasp.spaces.nb201.space import NB201Space
from nasp.spaces.user_model.space import ModuleSpace

__all__ = [
    "DEFAULT_SPACE", "MODEL_SPACES", "PRIMITIVE_SETS", "SPACES", "benchmark_help", "build_space",
    "described_space", "primitive_sets_help", "primitives_help", "space_help", "space_of",
]

#: Space classes by registry name (``--space``); the first is the default.
SPACES: dict[str, type[SearchSpace]] = {
    DartsCNNSpace.name: DartsCNNSpace,
    NB201Space.name: NB201Space,
    DartsRNNSpace.name: DartsRNNSpace,
}

#: Spaces built from a user's model (``nasp.search(model, ...)``), not in ``--space``: their
#: genotypes are read and drawn like any space's. Such a class rebuilds itself without the model
#: from its ``describe()`` data (``from_description``; ``None``: from nothing but the name).
MODEL_SPACES: dict[str, type[SearchSpace]] = {ModuleSpace.name: ModuleSpace}

#: The space searched when none is named.
DEFAULT_SPACE: str = next(iter(SPACES))

#: Every space's candidate op sets by name (``--primitives``): per cell type, its ops.
PRIMITIVE_SETS: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    name: ops for cls in SPACES.values() for name, ops in cls.primitive_sets.items()}


def build_space(name: str = DEFAULT_SPACE, primitives: str | None = None) -> SearchSpace:
    """The search space ``name`` with the named primitive set (default: the space's own)."""
    try:
        cls = SPACES[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown search space {name!r}; choose one of {', '.join(SPACES)}") from None
    return cls(cls.default_primitives if primitives is None else primitives)


def space_of(genotype: Genotype) -> SearchSpace:
    """The space ``genotype`` belongs to (named by its ``space``), with its default op set: for
    the networks and pictures of the genotype, which take any of the space's ops."""
    name = getattr(genotype, "space", None)
    if isinstance(name, str) and name in MODEL_SPACES:
        return MODEL_SPACES[name].from_description(None)
    if not isinstance(name, str) or name not in SPACES:
        raise GenotypeError(f"{type(genotype).__name__} is not a genotype of a known search space "
                            f"({', '.join(SPACES)})")
    return build_space(name)


def described_space(data: Mapping[str, object]) -> SearchSpace:
    """The space ``data`` describes: ``{"space": name, "primitives": set}`` for a registered
    space, a model space's ``describe()`` (a run's ``searched.json``) for one of
    :data:`MODEL_SPACES`. ``ValueError`` (or :class:`~nasp.errors.GenotypeError`) for anything
    else."""
    name = data.get("space")
    if isinstance(name, str) and name in MODEL_SPACES:
        return MODEL_SPACES[name].from_description(data)
    primitives = data.get("primitives")
    return build_space(name, primitives if isinstance(primitives, str) else None)


# -- help texts of the options that pick a space, an op set or a benchmark, from the spaces' own
# descriptions (the command line and the config's option declarations show them)
def space_help() -> str:
    """``--space``'s help."""
    return "; ".join(f"{name}{' (default)' if name == DEFAULT_SPACE else ''}: {cls.description}"
                     for name, cls in SPACES.items())


def primitives_help(what: str) -> str:
    """``--primitives``' help: ``what``, then each space's default op set."""
    return (f"{what} (default: the space's own: "
            + ", ".join(f"{cls.default_primitives} on {name}" for name, cls in SPACES.items())
            + ")")


def primitive_sets_help() -> str:
    """The op sets of every space."""
    return "; ".join(f"--space {name}: {', '.join(cls.primitive_sets)}"
                     for name, cls in SPACES.items())


def benchmark_help() -> str:
    """``--benchmark``'s help, from the spaces that have a benchmark table."""
    return (f"--space {' or '.join(n for n, c in SPACES.items() if c.has_benchmark)}: log the "
            f"benchmark accuracy of the genotype every epoch, looked up in PATH ("
            + "; ".join(f"{n}: {c.benchmark_about}" for n, c in SPACES.items() if c.has_benchmark)
            + ")")
