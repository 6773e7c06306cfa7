"""The architecture of a NAS-Bench-201 cell, as immutable data, and its arch string.

A NAS-Bench-201 cell (Dong & Yang, ICLR 2020) has 4 nodes: node 0 is the cell input and node
``j`` (1..3) is the sum of one op applied to every earlier node, so the cell has 6 edges, in the
order of the benchmark's arch string::

    |op~0|+|op~0|op~1|+|op~0|op~1|op~2|
     1<-0   2<-0 2<-1   3<-0 3<-1 3<-2

``op~i`` is the op on the edge from node ``i``; the groups separated by ``+`` are nodes 1, 2
and 3. The cell output is node 3. Every edge holds exactly one of the five ops of
:data:`NB201_PRIMITIVES` (``none`` included: a ``none`` edge contributes zeros).

:class:`NB201Genotype` holds the 6 op names in that edge order; it parses and prints the arch
string (:meth:`NB201Genotype.from_string`, ``str()``), and round-trips through JSON as
``{"space": "nb201", "arch": "<arch string>"}`` (the file format of a search run's
``genotype.json``). Any problem raises :class:`ArchStringError`, a
:class:`~nasp.errors.GenotypeError`. (:func:`nasp.spaces.load_genotype` and
:func:`nasp.spaces.genotype_from_dict` read a genotype of any space.)
"""

from __future__ import annotations

import reprlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from nasp.errors import ArchStringError
from nasp.spaces.genotype_file import JSONGenotype

__all__ = ["EDGES", "NB201_PRIMITIVES", "SPACE", "ArchStringError", "NB201Genotype",
           "is_nb201_dict"]

#: The registry name of the NAS-Bench-201 space, which every genotype's ``to_dict`` names.
SPACE = "nb201"

#: NAS-Bench-201's candidate ops, in the benchmark's order (AutoDL ``NAS_BENCH_201``).
NB201_PRIMITIVES = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")

#: ``(node, input node)`` of every edge, in arch-string order.
EDGES: tuple[tuple[int, int], ...] = tuple((j, i) for j in range(1, 4) for i in range(j))

_EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"
_SHORT = {"none": "none", "skip_connect": "skip", "nor_conv_1x1": "conv1x1",
          "nor_conv_3x3": "conv3x3", "avg_pool_3x3": "pool"}


def is_nb201_dict(data: object) -> bool:
    """Whether ``data`` (e.g. a parsed ``genotype.json``) is an :meth:`NB201Genotype.to_dict`."""
    return isinstance(data, Mapping) and "arch" in data


@dataclass(frozen=True)
class NB201Genotype(JSONGenotype):
    """A NAS-Bench-201 cell: ``ops[e]`` is the op on edge ``e`` (:data:`EDGES` order).

    Construction checks that there are 6 known op names; lists are stored as tuples, so a
    genotype is hashable and compares equal however it was built.
    """

    file_error: ClassVar[type[ArchStringError]] = ArchStringError

    ops: tuple[str, ...]

    space: ClassVar[str] = SPACE

    def __post_init__(self) -> None:
        ops = self.ops
        if isinstance(ops, str) or not isinstance(ops, (list, tuple)):
            raise ArchStringError(
                f"a NAS-Bench-201 genotype takes a list of {len(EDGES)} op names, got "
                f"{reprlib.repr(ops)}")
        if len(ops) != len(EDGES):
            raise ArchStringError(
                f"a NAS-Bench-201 cell has {len(EDGES)} edges, got {len(ops)} ops")
        for e, op in enumerate(ops):
            if op not in NB201_PRIMITIVES:
                node, i = EDGES[e]
                raise ArchStringError(
                    f"edge {node}<-{i}: unknown op {reprlib.repr(op)}; NAS-Bench-201 ops are "
                    f"{', '.join(NB201_PRIMITIVES)}")
        object.__setattr__(self, "ops", tuple(ops))

    # ------------------------------------------------------------------------------ the string

    @classmethod
    def from_string(cls, text: str) -> NB201Genotype:
        """Parse an arch string such as ``|nor_conv_3x3~0|+|none~0|skip_connect~1|+|...|``.

        Whitespace anywhere is ignored. Exactly 3 ``+``-separated node groups; group ``j``
        lists ``j`` entries ``op~i`` with ``i`` = the entry's position (0, 1, ...) in the group.
        """
        if not isinstance(text, str):
            raise ArchStringError(f"an arch string must be a str, got {reprlib.repr(text)}")
        compact = "".join(text.split())
        where = f"arch string {reprlib.repr(compact)}"
        groups = compact.split("+")
        if len(groups) != 3:
            raise ArchStringError(
                f"{where}: expected 3 node groups separated by '+', found {len(groups)}; "
                f"the form is {_EXAMPLE}")
        ops = []
        for node, group in enumerate(groups, start=1):
            if len(group) < 2 or not (group.startswith("|") and group.endswith("|")):
                raise ArchStringError(
                    f"{where}: node {node} group {reprlib.repr(group)} must start and end with "
                    f"'|', as in {_EXAMPLE}")
            entries = group[1:-1].split("|")
            if len(entries) != node:
                raise ArchStringError(
                    f"{where}: node {node} must have {node} input(s) (op~0..op~{node - 1}), "
                    f"found {len(entries)}")
            for position, entry in enumerate(entries):
                op, tilde, index = entry.partition("~")
                if not tilde:
                    raise ArchStringError(
                        f"{where}: node {node} entry {reprlib.repr(entry)} is not of the form "
                        f"op~input")
                if index != str(position):
                    raise ArchStringError(
                        f"{where}: node {node} entry {position + 1} is {reprlib.repr(entry)}, "
                        f"but the entries of a node read inputs 0..{node - 1} in order, so it "
                        f"must end in ~{position}")
                if op not in NB201_PRIMITIVES:
                    raise ArchStringError(
                        f"{where}: node {node} input {position}: unknown op {reprlib.repr(op)}; "
                        f"NAS-Bench-201 ops are {', '.join(NB201_PRIMITIVES)}")
                ops.append(op)
        return cls(tuple(ops))

    def to_string(self) -> str:
        """The benchmark's arch string, e.g. ``|nor_conv_3x3~0|+|...|+|...|``."""
        return "+".join("|" + "|".join(f"{op}~{i}" for op, i in node) + "|"
                        for node in self.nodes)

    def __str__(self) -> str:
        return self.to_string()

    @property
    def nodes(self) -> tuple[tuple[tuple[str, int], ...], ...]:
        """Per node 1..3, its ``(op, input node)`` pairs (AutoDL's genotype structure)."""
        return tuple(tuple((self.ops[e], i) for e, (j, i) in enumerate(EDGES) if j == node)
                     for node in range(1, 4))

    def compact(self) -> str:
        """One short line for logs, e.g. ``1<-conv3x3(0) 2<-conv3x3(0),pool(1) 3<-...``."""
        return " ".join(f"{node}<-" + ",".join(f"{_SHORT[op]}({i})" for op, i in pairs)
                        for node, pairs in enumerate(self.nodes, start=1))

    # ------------------------------------------------------------------------------ dict / JSON

    def to_dict(self) -> dict[str, str]:
        """``{"space": "nb201", "arch": "<arch string>"}``."""
        return {"space": self.space, "arch": self.to_string()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NB201Genotype:
        """Inverse of :meth:`to_dict` (the ``space`` key may be left out)."""
        if not is_nb201_dict(data):
            raise ArchStringError(
                f'a NAS-Bench-201 genotype is an object {{"space": "nb201", "arch": "..."}}, '
                f"got {reprlib.repr(data)}")
        extra = sorted(repr(k) for k in data if k not in ("space", "arch"))
        if extra:
            raise ArchStringError(
                f"a NAS-Bench-201 genotype has the keys space and arch only; unexpected: "
                f"{', '.join(extra)}")
        if data.get("space", cls.space) != cls.space:
            raise ArchStringError(
                f"genotype of space {reprlib.repr(data['space'])} is not a NAS-Bench-201 one")
        return cls.from_string(data["arch"])
