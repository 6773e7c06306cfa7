"""The searched architecture of a DARTS-style cell network, as immutable data.

A :class:`Genotype` lists, for the normal and the reduction cell, two ``(op name, input index)``
pairs per intermediate node and the states whose concatenation is the cell output. States are
numbered as in DARTS: 0 and 1 are the outputs of the two previous cells and intermediate node
``i`` (``i = 0, 1, ...``) is state ``i + 2``, which may read any state before it. Error messages
and :meth:`Genotype.compact` name a node by its state number.

Formats:

- JSON (:meth:`Genotype.to_json`, :meth:`Genotype.save`), the file format of a search run::

    {"space": "darts", "normal": [["sep_conv_3x3", 0], ...], "normal_concat": [2, 3, 4, 5],
     "reduce": ..., ...}

  Files written before genotype files named their space lack ``"space"``; they still load.

- DARTS tuple text (``str(genotype)``, :meth:`Genotype.parse`), as published cells appear in the
  DARTS and NASP repositories. Parsing reads literals with :mod:`ast`; nothing is evaluated.

Published cells are in :data:`BUILTIN_GENOTYPES`. :func:`nasp.spaces.resolve_genotype` turns a
command-line style specification (built-in name, file, run directory or text) into a genotype of
any space.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from nasp.core.ops import OPS
from nasp.errors import GenotypeError
from nasp.spaces.genotype_file import JSONGenotype
from nasp.spaces.tuple_text import is_int, read_genotype_call, short, show

__all__ = ["BUILTIN_GENOTYPES", "SPACE", "Genotype", "GenotypeError"]

#: An ``(op name, input state index)`` pair.
Pair = tuple[str, int]

#: The registry name of the DARTS CNN space, which every genotype's ``to_dict`` names.
SPACE = "darts"

_CELLS = ("normal", "reduce")
_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")
_TEXT_EXAMPLE = "Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3, 4, 5], ...)"


def _check_cell(cell: str, pairs: object) -> tuple[Pair, ...]:
    """Validate the pairs of one cell and return them as a tuple of tuples."""
    if not isinstance(pairs, (list, tuple)):
        raise GenotypeError(
            f"{cell} must be a list of (op name, input index) pairs, got {show(pairs)}")
    if not pairs or len(pairs) % 2:
        raise GenotypeError(
            f"{cell} has {len(pairs)} pairs; it needs two per intermediate node, "
            "so a non-zero even number")
    checked = []
    for k, pair in enumerate(pairs):
        node = k // 2 + 2
        where = f"{cell}[{k}] ({('first', 'second')[k % 2]} input of node {node})"
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise GenotypeError(
                f"{where}: expected an (op name, input index) pair, got {show(pair)}")
        op, index = pair
        if not isinstance(op, str) or op not in OPS:
            raise GenotypeError(
                f"{where}: unknown op {show(op)}; known ops: {', '.join(sorted(OPS))}")
        if not is_int(index):
            raise GenotypeError(f"{where}: the input index must be an int, got {show(index)}")
        if not 0 <= index < node:
            raise GenotypeError(
                f"{where}: input index {short(index)} is out of range; "
                f"node {node} can read states 0..{node - 1}")
        checked.append((op, int(index)))
    return tuple(checked)


def _check_concat(field: str, concat: object, n_states: int) -> tuple[int, ...]:
    """Validate the output states of one cell with ``n_states`` states; return them as a tuple."""
    if not isinstance(concat, (list, tuple, range)):
        raise GenotypeError(f"{field} must be a list of state indices, got {show(concat)}")
    states = tuple(itertools.islice(concat, n_states + 1))  # never unpack a huge range
    if not states:
        raise GenotypeError(f"{field} is empty; the cell output needs at least one state")
    if len(states) > n_states:
        raise GenotypeError(
            f"{field} has more than {n_states} entries, but the cell has only {n_states} "
            "states to concatenate")
    seen: set[int] = set()
    for k, state in enumerate(states):
        if not is_int(state):
            raise GenotypeError(f"{field}[{k}]: a state index must be an int, got {show(state)}")
        if not 0 <= state < n_states:
            raise GenotypeError(
                f"{field}[{k}]: state {short(state)} is out of range 0..{n_states - 1}")
        if state in seen:
            raise GenotypeError(f"{field}[{k}]: state {state} appears twice")
        seen.add(state)
    return tuple(int(state) for state in states)


@dataclass(frozen=True)
class Genotype(JSONGenotype):
    """The discrete architecture of a DARTS-style cell network.

    ``normal`` and ``reduce`` hold two ``(op name, input index)`` pairs per intermediate node,
    node by node; ``normal_concat`` and ``reduce_concat`` are the states concatenated as each
    cell's output. Lists and ranges are accepted and stored as tuples, so a genotype is hashable
    and compares equal however it was built. Construction validates everything and raises
    :class:`GenotypeError` on the first problem found.
    """

    normal: tuple[Pair, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Pair, ...]
    reduce_concat: tuple[int, ...]

    space: ClassVar[str] = SPACE

    def __post_init__(self) -> None:
        cells = {cell: _check_cell(cell, getattr(self, cell)) for cell in _CELLS}
        if len(cells["normal"]) != len(cells["reduce"]):
            raise GenotypeError(
                f"normal has {len(cells['normal']) // 2} nodes but reduce has "
                f"{len(cells['reduce']) // 2}; both cells need the same number of nodes")
        n_states = len(cells["normal"]) // 2 + 2
        for cell, pairs in cells.items():
            field = f"{cell}_concat"
            object.__setattr__(self, cell, pairs)
            object.__setattr__(self, field, _check_concat(field, getattr(self, field), n_states))

    @property
    def steps(self) -> int:
        """Number of intermediate nodes per cell."""
        return len(self.normal) // 2

    def _cells(self) -> Iterator[tuple[str, tuple[Pair, ...], tuple[int, ...]]]:
        """``(cell name, pairs, concat)`` for the normal then the reduction cell."""
        for cell in _CELLS:
            yield cell, getattr(self, cell), getattr(self, f"{cell}_concat")

    # ----------------------------------------------------------------------------- dict / JSON

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: ``{"space": "darts", "normal": [["op", index], ...],
        "normal_concat": [...], ...}``."""
        data: dict[str, Any] = {"space": self.space}
        for cell, pairs, concat in self._cells():
            data[cell] = [list(pair) for pair in pairs]
            data[f"{cell}_concat"] = list(concat)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Genotype:
        """Inverse of :meth:`to_dict`; exactly the four cell keys are required, ``"space"``
        may be left out (files written before genotype files named their space)."""
        if not isinstance(data, Mapping):
            raise GenotypeError(
                f"a genotype must be an object with keys {', '.join(_FIELDS)}, got {show(data)}")
        missing = [key for key in _FIELDS if key not in data]
        extra = sorted(repr(key) for key in data if key not in _FIELDS and key != "space")
        if missing or extra:
            raise GenotypeError(
                f"a genotype needs exactly the keys {', '.join(_FIELDS)}; missing: "
                f"{', '.join(missing) or 'none'}; unexpected: {', '.join(extra) or 'none'}")
        if data.get("space", cls.space) != cls.space:
            raise GenotypeError(f"a genotype of space {short(data['space'])} is not a DARTS cell "
                                f"genotype (space {cls.space!r})")
        return cls(**{key: data[key] for key in _FIELDS})

    # ---------------------------------------------------------------------------- DARTS text

    def to_text(self) -> str:
        """DARTS reference style text, e.g.
        ``Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3, 4, 5], reduce=...)``.
        """
        fields = ", ".join(
            f"{cell}={list(pairs)!r}, {cell}_concat={list(concat)!r}"
            for cell, pairs, concat in self._cells())
        return f"Genotype({fields})"

    def __str__(self) -> str:
        return self.to_text()

    @classmethod
    def parse(cls, text: str) -> Genotype:
        """Read DARTS tuple text such as :meth:`to_text` writes or the DARTS repository holds.

        Accepts an optional leading ``NAME =``, lists or tuples, and ``range(a, b)`` for the
        concat fields. The text is read with :mod:`ast` and never evaluated: anything but the
        call ``Genotype(...)`` with the four keyword arguments holding literals is rejected.
        Every problem, from a syntax error to an invalid cell, is a :class:`GenotypeError`;
        nothing else is raised.
        """
        arguments = read_genotype_call(text, _FIELDS, _TEXT_EXAMPLE)
        return cls(**arguments)

    # ---------------------------------------------------------------------------------- logs

    def compact(self) -> str:
        """One-line summary for logs.

        Format: ``normal: 2<-sep_conv_3x3(0),sep_conv_3x3(1) 3<-... concat=2,3,4,5 | reduce: ...``
        where each node reads ``state<-op(input),op(input)`` and ``concat`` lists the output
        states.
        """
        parts = []
        for cell, pairs, concat in self._cells():
            inputs = [f"{op}({index})" for op, index in pairs]
            nodes = (
                f"{node}<-{first},{second}"
                for node, (first, second) in enumerate(
                    zip(inputs[::2], inputs[1::2], strict=True), start=2))
            parts.append(f"{cell}: {' '.join(nodes)} concat={','.join(map(str, concat))}")
        return " | ".join(parts)


_CONCAT = (2, 3, 4, 5)

#: Published cells by name; all have four nodes and concatenate states 2..5.
BUILTIN_GENOTYPES: dict[str, Genotype] = {
    # DARTS first order (Liu et al., 2019).
    "DARTS_V1": Genotype(
        normal=[("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1),
                ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2)],
        normal_concat=_CONCAT,
        reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
                ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)],
        reduce_concat=_CONCAT,
    ),
    # DARTS second order (Liu et al., 2019), the cell of the paper's CIFAR-10 results.
    "DARTS_V2": Genotype(
        normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
                ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
        normal_concat=_CONCAT,
        reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
                ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
        reduce_concat=_CONCAT,
    ),
    # NASP (Yao et al., 2020), searched in the 12-op space.
    "NASP": Genotype(
        normal=[("conv_3x1_1x3", 0), ("conv_3x3", 1), ("dil_conv_3x3", 2), ("conv_3x3", 1),
                ("dil_conv_3x3", 2), ("conv_3x3", 0), ("skip_connect", 0), ("dil_conv_3x3", 3)],
        normal_concat=_CONCAT,
        reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_5x5", 1),
                ("skip_connect", 2), ("skip_connect", 3), ("skip_connect", 0), ("skip_connect", 1)],
        reduce_concat=_CONCAT,
    ),
}
