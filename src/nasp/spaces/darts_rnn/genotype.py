"""The searched architecture of a DARTS recurrent cell, as immutable data.

A :class:`RecurrentGenotype` lists one ``(op name, input state)`` pair per intermediate node and
the states whose mean is the cell output. States are numbered as in DARTS: state 0 is the cell's
initial state (from ``x_t`` and ``h_{t-1}``), intermediate node ``i`` (``i = 0, 1, ...``) is state
``i + 1`` and reads one state ``0..i``; the output ``h_t`` is the mean of the ``concat`` states
(DARTS: ``range(1, 9)``, every node). Ops: ``tanh``, ``relu``, ``sigmoid``, ``identity`` (the
activation of the node's highway update), and ``none`` (a node whose output is zero), which
DARTS's derivation never picks but a NASP projection may.

Formats:

- JSON (:meth:`RecurrentGenotype.to_json`, ``save``), a search run's ``genotype.json``::

    {"space": "darts-rnn", "recurrent": [["sigmoid", 0], ["relu", 1], ...], "concat": [1, ..., 8]}

- DARTS tuple text (``str(genotype)``, :meth:`RecurrentGenotype.parse`), as the DARTS repository
  writes recurrent genotypes::

    Genotype(recurrent=[('sigmoid', 0), ('relu', 1), ...], concat=range(1, 9))

Published cells are in :data:`BUILTIN_GENOTYPES` (``DARTS_V1_RNN``, ``DARTS_V2_RNN``; the DARTS
CNN space holds ``DARTS_V1``/``DARTS_V2``).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from nasp.errors import GenotypeError
from nasp.spaces.genotype_file import JSONGenotype
from nasp.spaces.tuple_text import is_int, read_genotype_call, short, show

__all__ = ["BUILTIN_GENOTYPES", "RNN_PRIMITIVES", "SPACE", "RecurrentGenotype"]

#: The registry name of the DARTS recurrent space, which every genotype's ``to_dict`` names.
SPACE = "darts-rnn"

#: DARTS's recurrent ops (rnn/genotypes.py ``PRIMITIVES``), in its order.
RNN_PRIMITIVES = ("none", "tanh", "relu", "sigmoid", "identity")

_FIELDS = ("recurrent", "concat")
TEXT_EXAMPLE = "Genotype(recurrent=[('sigmoid', 0), ('relu', 1), ...], concat=range(1, 9))"

Pair = tuple[str, int]


def _check_pairs(pairs: object) -> tuple[Pair, ...]:
    if not isinstance(pairs, (list, tuple)):
        raise GenotypeError(
            f"recurrent must be a list of (op name, input state) pairs, got {show(pairs)}")
    if not pairs:
        raise GenotypeError("recurrent is empty; the cell needs at least one node")
    checked = []
    for i, pair in enumerate(pairs):
        where = f"recurrent[{i}] (node {i + 1})"
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise GenotypeError(
                f"{where}: expected an (op name, input state) pair, got {show(pair)}")
        op, j = pair
        if not isinstance(op, str) or op not in RNN_PRIMITIVES:
            raise GenotypeError(f"{where}: unknown op {show(op)}; the recurrent cell's ops are "
                                f"{', '.join(RNN_PRIMITIVES)}")
        if not is_int(j):
            raise GenotypeError(f"{where}: the input state must be an int, got {show(j)}")
        if not 0 <= j <= i:
            raise GenotypeError(f"{where}: input state {short(j)} is out of range; node "
                                f"{i + 1} can read states 0..{i}")
        checked.append((op, int(j)))
    return tuple(checked)


def _check_concat(concat: object, n_states: int) -> tuple[int, ...]:
    if not isinstance(concat, (list, tuple, range)):
        raise GenotypeError(f"concat must be a list of state indices, got {show(concat)}")
    states = tuple(itertools.islice(concat, n_states + 1))  # never unpack a huge range
    if not states:
        raise GenotypeError("concat is empty; the cell output needs at least one state")
    if len(states) > n_states:
        raise GenotypeError(f"concat has more than {n_states} entries, but the cell has only "
                            f"{n_states} states to average")
    for k, state in enumerate(states):
        if not is_int(state):
            raise GenotypeError(f"concat[{k}]: a state index must be an int, got {show(state)}")
        if not 0 <= state < n_states:
            raise GenotypeError(f"concat[{k}]: state {short(state)} is out of range "
                                f"0..{n_states - 1}")
        if state in states[:k]:
            raise GenotypeError(f"concat[{k}]: state {state} appears twice")
    return tuple(int(s) for s in states)


@dataclass(frozen=True)
class RecurrentGenotype(JSONGenotype):
    """A DARTS recurrent cell: ``recurrent[i] = (op, j)`` makes node ``i`` (state ``i + 1``) from
    state ``j <= i``; the output is the mean of the ``concat`` states.

    Lists and ranges are stored as tuples (hashable, equal however built); construction checks
    everything and raises :class:`~nasp.errors.GenotypeError` naming the first problem.
    """

    recurrent: tuple[Pair, ...]
    concat: tuple[int, ...]

    space: ClassVar[str] = SPACE

    def __post_init__(self) -> None:
        pairs = _check_pairs(self.recurrent)
        object.__setattr__(self, "recurrent", pairs)
        object.__setattr__(self, "concat", _check_concat(self.concat, len(pairs) + 1))

    @property
    def steps(self) -> int:
        """Intermediate nodes of the cell."""
        return len(self.recurrent)

    # ----------------------------------------------------------------------------- dict / JSON
    def to_dict(self) -> dict[str, Any]:
        return {"space": self.space, "recurrent": [list(p) for p in self.recurrent],
                "concat": list(self.concat)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RecurrentGenotype:
        """Inverse of :meth:`to_dict`; ``"space"`` may be left out."""
        if not isinstance(data, Mapping):
            raise GenotypeError(f"a recurrent genotype must be an object with keys recurrent, "
                                f"concat; got {show(data)}")
        missing = [key for key in _FIELDS if key not in data]
        extra = sorted(repr(key) for key in data if key not in _FIELDS and key != "space")
        if missing or extra:
            raise GenotypeError(
                f"a recurrent genotype needs exactly the keys recurrent, concat; missing: "
                f"{', '.join(missing) or 'none'}; unexpected: {', '.join(extra) or 'none'}")
        if data.get("space", cls.space) != cls.space:
            raise GenotypeError(f"a genotype of space {short(data['space'])} is not a DARTS "
                                f"recurrent cell genotype (space {cls.space!r})")
        return cls(data["recurrent"], data["concat"])

    # ---------------------------------------------------------------------------- DARTS text
    def to_text(self) -> str:
        """DARTS text; a contiguous ``concat`` is written ``range(a, b)`` as DARTS prints it."""
        first, last = self.concat[0], self.concat[-1]
        concat = (f"range({first}, {last + 1})" if self.concat == tuple(range(first, last + 1))
                  else repr(list(self.concat)))
        return f"Genotype(recurrent={list(self.recurrent)!r}, concat={concat})"

    def __str__(self) -> str:
        return self.to_text()

    @classmethod
    def parse(cls, text: str) -> RecurrentGenotype:
        """Read DARTS recurrent tuple text (module docstring); read with :mod:`ast`, never
        evaluated; any problem is a :class:`~nasp.errors.GenotypeError`."""
        arguments = read_genotype_call(text, _FIELDS, TEXT_EXAMPLE)
        return cls(arguments["recurrent"], arguments["concat"])

    def compact(self) -> str:
        """One line for logs: ``1<-sigmoid(0) 2<-relu(1) ... mean=1..8``."""
        nodes = " ".join(f"{i + 1}<-{op}({j})" for i, (op, j) in enumerate(self.recurrent))
        return f"recurrent: {nodes} mean={','.join(map(str, self.concat))}"


_CONCAT = range(1, 9)

#: Published recurrent cells by name (DARTS, Liu et al. 2019, rnn/genotypes.py).
BUILTIN_GENOTYPES: dict[str, RecurrentGenotype] = {
    # DARTS first order
    "DARTS_V1_RNN": RecurrentGenotype(
        [("relu", 0), ("relu", 1), ("tanh", 2), ("relu", 3), ("relu", 4), ("identity", 1),
         ("relu", 5), ("relu", 1)], _CONCAT),
    # DARTS second order: the cell of the paper's PTB results (58.1 test perplexity, 23M)
    "DARTS_V2_RNN": RecurrentGenotype(
        [("sigmoid", 0), ("relu", 1), ("relu", 1), ("identity", 1), ("tanh", 2),
         ("sigmoid", 5), ("tanh", 3), ("relu", 5)], _CONCAT),
}
