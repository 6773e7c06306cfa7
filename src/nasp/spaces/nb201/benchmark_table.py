"""NAS-Bench-201 look-up: the benchmark accuracy of a searched cell, without training it.

:meth:`BenchmarkTable.load` reads either

- a CSV table (a file whose name ends in ``.csv``): one row per architecture, one column holding
  the arch string (named ``arch``, ``arch_str``, ``arch_string``, ``architecture``,
  ``architecture_string`` or ``genotype``, in any case, with or without ``_``/``-``/spaces, so
  NATS-Bench's long ``ArchitectureString`` too; else the first column whose first cell is an arch
  string) and one accuracy column per data set, named as NATS-Bench names them
  (``cifar10-valid``, ``cifar10``, ``cifar100``, ``ImageNet16-120``), as its long exports name
  them (``CIFAR10TestAccuracy200Epochs``, ``CIFAR100TestAccuracy200Epochs``,
  ``ImageNetTestAccuracy200Epochs``, ``cifar10_test_acc``...: see :func:`column_dataset`) or as
  the user likes. Arch strings may be written with any
  spacing; they are normalised. Accuracy columns are the other columns whose cells are all
  numbers in [0, 100] (empty cells mean "not measured"), except the cost columns NATS-Bench also
  exports (``index``, ``params``, ``flops``, ``latency``...). A column whose values all lie in
  [0, 1] holds fractions, any other percentages (NATS-Bench's unit). The same architecture may
  appear twice only with the same values; or
- anything else (a directory or a file of NATS-Bench's topology search space, ``tss``) through
  the official ``nats_bench`` package when it is installed:
  ``nats_bench.create(path, "tss", fast_mode=<path is a directory>, verbose=False)``; an
  architecture's accuracy is ``get_more_info(index, data set, hp="200", is_random=False)``'s
  ``"test-accuracy"`` (``"valid-accuracy"`` for ``cifar10-valid``), the mean over the
  benchmark's seeds of the 200-epoch training.

Every accuracy leaves this module as a fraction in [0, 1], like every accuracy in nasp.

Our data set names map to the benchmark's columns: ``cifar10`` -> ``cifar10`` (the test
accuracy after training on the full training set), ``cifar100`` -> ``cifar100``, or to the
column a long export names the same way (``CIFAR10TestAccuracy200Epochs``; of several, the
200-epoch one). ``--benchmark-column`` may name the benchmark's data set instead of the column
(``imagenet16-120`` finds ``ImageNetTestAccuracy200Epochs``). Any other data set (e.g. a search
on ``digits``) has no column of its own: name one with ``benchmark_column``
(``--benchmark-column``).

:meth:`NB201Space.open_benchmark <nasp.spaces.nb201.space.NB201Space.open_benchmark>`
(:func:`open_table`) gives the search loop a :class:`BenchmarkLookup`, the
:class:`~nasp.spaces.base.Benchmark` it adds ``benchmark_acc`` to every epoch's metrics and log
line with (:mod:`nasp.spaces.benchmark`).
"""

from __future__ import annotations

import bisect
import csv
import math
import os
import re
import reprlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasp.errors import BenchmarkError, GenotypeError
from nasp.spaces.nb201.genotype import NB201Genotype

__all__ = [
    "DATASET_COLUMNS", "BenchmarkError", "BenchmarkLookup", "BenchmarkTable", "column_dataset",
    "open_benchmark", "open_table",
]

#: Our data set names -> the benchmark's column for them.
DATASET_COLUMNS = {"cifar10": "cifar10", "cifar100": "cifar100"}
#: Names of the arch-string column of a CSV table, in order of preference (compared by
#: :func:`_name_key`: any case, ``_``, ``-`` and spaces ignored).
ARCH_COLUMNS = ("arch", "arch_str", "arch_string", "architecture", "architecture_string",
                "genotype")
#: Numeric columns of a NATS-Bench export that are not accuracies.
COST_COLUMNS = ("index", "idx", "id", "params", "flops", "latency", "time")
#: The data sets of NATS-Bench's topology search space.
NATS_DATASETS = ("cifar10-valid", "cifar10", "cifar100", "ImageNet16-120")

Query = Callable[[str, str], "float | None"]

#: A column name (as :func:`_name_key` writes it) that begins with a NATS-Bench data set: the
#: data set, then whatever follows (``cifar100`` before ``cifar10``, the longest first).
_DATASET_PREFIX = re.compile(r"(cifar100|cifar10|imagenet16120|imagenet16|imagenet)(\D.*)?$")
#: Words of a column name that make it something other than the data set's test accuracy.
_NOT_TEST_ACCURACY = ("train", "loss", "time", "param", "flop", "latency", "valid", "val")


def _name_key(name: str) -> str:
    """``name`` in lower case without ``_``, ``-``, spaces or other punctuation."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def column_dataset(name: str) -> str | None:
    """The NATS-Bench data set (one of :data:`NATS_DATASETS`) whose test accuracy the column
    ``name`` holds, going by its name; None when the name says no such thing.

    A data set's name (any case and punctuation: ``cifar10``, ``CIFAR-100``, ``ImageNet16-120``,
    ``imagenet``) alone, or followed by words about a test accuracy
    (``CIFAR10TestAccuracy200Epochs``, ``cifar100_test_acc``, ``ImageNetTestAccuracy200Epochs``)
    names it; validation accuracies name ``cifar10-valid`` (CIFAR-10's validation split,
    NATS-Bench's ``cifar10-valid``) and nothing for the other data sets; training accuracies,
    losses, times and costs name nothing."""
    match = _DATASET_PREFIX.match(_name_key(name))
    if match is None:
        return None
    dataset = {"cifar10": "cifar10", "cifar100": "cifar100"}.get(match[1], "ImageNet16-120")
    rest = match[2] or ""
    if dataset == "cifar10" and rest.startswith("val"):
        rest, dataset = re.sub(r"^val(id(ation)?)?", "", rest), "cifar10-valid"
    if any(word in rest for word in _NOT_TEST_ACCURACY):
        return None
    return dataset if not rest or "acc" in rest or "test" in rest else None


def _arch_string(arch: NB201Genotype | str) -> str:
    """The normalised arch string of a genotype or of any equivalent spelling of one."""
    if isinstance(arch, NB201Genotype):
        return arch.to_string()
    if isinstance(arch, str):
        return NB201Genotype.from_string(arch).to_string()
    raise BenchmarkError(
        f"the benchmark looks up NAS-Bench-201 cells (an arch string or NB201Genotype), got a "
        f"{type(arch).__name__}; search with --space nb201")


class BenchmarkTable:
    """Benchmark accuracies of NAS-Bench-201 architectures, per data set column.

    ``datasets`` are the accuracy columns; :meth:`accuracy` looks one up. Build one with
    :meth:`load` (or directly from ``query(arch string, column) -> fraction or None``).
    """

    def __init__(self, source: str, datasets: Sequence[str], query: Query,
                 notes: Mapping[str, str] | None = None,
                 column_values: Callable[[str], list[float]] | None = None):
        self.source = source
        self.datasets = tuple(datasets)
        self._query = query
        self._notes = dict(notes or {})  # column -> why it is not an accuracy column
        self._column_values = column_values
        self._sorted: dict[str, list[float]] = {}

    def __repr__(self) -> str:
        return f"BenchmarkTable({self.source!r}, datasets={self.datasets})"

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> BenchmarkTable:
        """Read a CSV table or NATS-Bench files (see the module docstring)."""
        path = Path(path).expanduser()
        if not path.exists():
            raise BenchmarkError(
                f"benchmark file {path} does not exist; pass --benchmark a CSV table of arch "
                f"strings and accuracies, or the NATS-Bench topology (tss) files")
        if path.is_file() and path.suffix.lower() == ".csv":
            return _load_csv(path)
        return _load_nats(path)

    def column(self, dataset: str) -> str:
        """The accuracy column for ``dataset``: a column name (any case) or one of our data
        set names (:data:`DATASET_COLUMNS`)."""
        by_name = {c.lower(): c for c in self.datasets}
        for name in (dataset, DATASET_COLUMNS.get(dataset.lower(), dataset)):
            if name.lower() in by_name:
                return by_name[name.lower()]
        wanted = column_dataset(dataset)
        named = [c for c in self.datasets if wanted and column_dataset(c) == wanted]
        if len(named) > 1:  # e.g. after 12 and after 200 epochs: the benchmark's 200
            named = [c for c in named if "200" in c] or named
        if len(named) == 1:
            return named[0]
        if named:
            raise BenchmarkError(
                f"the benchmark {self.source} has several accuracy columns for {dataset!r} "
                f"({', '.join(named)}); name one with --benchmark-column")
        why = ""
        for column, note in self._notes.items():
            if column.lower() == dataset.lower():
                why = f" (its column {column!r} is not an accuracy column: {note})"
        raise BenchmarkError(
            f"the benchmark {self.source} has no accuracy column for {dataset!r}{why}; its "
            f"accuracy columns are {', '.join(self.datasets)}; name one with "
            f"--benchmark-column")

    def accuracy(self, arch: NB201Genotype | str, dataset: str) -> float | None:
        """Benchmark accuracy (a fraction) of ``arch`` on ``dataset``; None when the table does
        not hold that architecture (or has no value for it in that column)."""
        return self._query(_arch_string(arch), self.column(dataset))

    def percentile(self, accuracy: float, dataset: str) -> float | None:
        """The share (in %) of the table's architectures whose ``dataset`` accuracy is at most
        ``accuracy`` (the best cell: 100); None when the table cannot list a column (NATS-Bench
        files)."""
        if self._column_values is None:
            return None
        column = self.column(dataset)
        if column not in self._sorted:
            self._sorted[column] = sorted(self._column_values(column))
        ranked = self._sorted[column]
        return 100.0 * bisect.bisect_right(ranked, accuracy) / len(ranked)


# -------------------------------------------------------------------------------------- CSV


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _read_rows(path: Path) -> list[list[str]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise BenchmarkError(f"cannot read the benchmark table {path}: {err}") from None
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    try:
        rows = list(csv.reader(text.splitlines(), dialect))
    except csv.Error as err:
        raise BenchmarkError(f"benchmark table {path} is not valid CSV: {err}") from None
    return [[cell.strip() for cell in row] for row in rows]


def _arch_column(path: Path, header: list[str], body: list[tuple[int, list[str]]]) -> int:
    keys = [_name_key(h) for h in header]
    for name in ARCH_COLUMNS:
        if _name_key(name) in keys:
            return keys.index(_name_key(name))
    if body:
        for c, cell in enumerate(body[0][1]):
            try:
                NB201Genotype.from_string(cell)
                return c
            except GenotypeError:
                continue
    raise BenchmarkError(
        f"benchmark table {path} has no architecture column: name it one of "
        f"{', '.join(ARCH_COLUMNS)}, or hold arch strings like |nor_conv_3x3~0|+|...|+|...| in "
        f"a column; its header is {', '.join(header)}")


def _accuracy_columns(header: list[str], body: list[tuple[int, list[str]]], arch: int
                      ) -> tuple[dict[int, float], dict[str, str]]:
    """``{column index: scale to a fraction}`` of the accuracy columns, and why the others are
    not."""
    scales, notes = {}, {}
    for c, name in enumerate(header):
        if c == arch:
            continue
        if name.lower() in COST_COLUMNS:
            notes[name] = "a cost column"
            continue
        values, bad = [], None
        for line, row in body:
            cell = row[c] if c < len(row) else ""
            if not cell:
                continue
            value = _number(cell)
            if value is None or not 0 <= value <= 100:
                bad = f"line {line} holds {reprlib.repr(cell)}, not a number in [0, 100]"
                break
            values.append(value)
        if bad or not values:
            notes[name] = bad or "it is empty"
            continue
        scales[c] = 1.0 if max(values) <= 1 else 0.01
    return scales, notes


def _load_csv(path: Path) -> BenchmarkTable:
    rows = _read_rows(path)
    body = [(n, row) for n, row in enumerate(rows[1:], start=2) if any(row)]
    if not rows or not body:
        raise BenchmarkError(f"benchmark table {path} is empty; it needs a header line and one "
                             f"line per architecture")
    header = rows[0]
    if len(set(h.lower() for h in header)) != len(header):
        raise BenchmarkError(f"benchmark table {path} repeats a column name in its header "
                             f"({', '.join(header)})")
    arch = _arch_column(path, header, body)
    scales, notes = _accuracy_columns(header, body, arch)
    if not scales:
        raise BenchmarkError(
            f"benchmark table {path} has no accuracy column: besides the arch column it needs "
            f"at least one column of numbers in [0, 100] (percent) or [0, 1]; "
            + "; ".join(f"{name}: {note}" for name, note in notes.items()))
    values: dict[str, dict[str, float]] = {}
    first_line: dict[str, int] = {}
    for line, row in body:
        cell = row[arch] if arch < len(row) else ""
        try:
            key = NB201Genotype.from_string(cell).to_string()
        except GenotypeError as err:
            raise BenchmarkError(f"benchmark table {path} line {line}: {err}") from None
        entry = {header[c]: _number(row[c]) * scale for c, scale in scales.items()
                 if c < len(row) and row[c]}
        if key in values:
            for name in set(entry) | set(values[key]):
                if entry.get(name) != values[key].get(name):
                    raise BenchmarkError(
                        f"benchmark table {path}: architecture {key} is on lines "
                        f"{first_line[key]} and {line} with different {name} values "
                        f"({values[key].get(name)} and {entry.get(name)} as fractions); keep "
                        f"one line per architecture")
        values[key] = entry
        first_line.setdefault(key, line)
    return BenchmarkTable(str(path), [header[c] for c in scales],
                          lambda arch, column: values.get(arch, {}).get(column), notes,
                          lambda column: [v[column] for v in values.values() if column in v])


# -------------------------------------------------------------------------------- nats_bench


def _load_nats(path: Path) -> BenchmarkTable:
    try:
        import nats_bench
    except ImportError:
        raise BenchmarkError(
            f"benchmark {path} is not a .csv table, and reading NATS-Bench's own files needs "
            f"the nats_bench package, which is not installed: pip install nats_bench, or pass a "
            f"CSV table of arch strings and accuracies") from None
    try:
        api = nats_bench.create(str(path), "tss", fast_mode=path.is_dir(), verbose=False)
    except Exception as err:  # the package raises ValueError, AssertionError, OSError...
        raise BenchmarkError(
            f"nats_bench cannot open {path} as the NATS-Bench topology search space (tss): "
            f"{err}; pass the NATS-tss-v1_0-3ffb9-simple directory or a CSV table") from None
    cache: dict[tuple[str, str], float | None] = {}

    def query(arch: str, column: str) -> float | None:
        if (arch, column) not in cache:
            index = api.query_index_by_arch(arch)
            if index is None or index < 0:
                cache[arch, column] = None
            else:
                key = "valid-accuracy" if column == "cifar10-valid" else "test-accuracy"
                try:
                    info = api.get_more_info(index, column, hp="200", is_random=False)
                    cache[arch, column] = float(info[key]) / 100
                except Exception as err:  # missing data in the benchmark files
                    raise BenchmarkError(
                        f"nats_bench has no {key} for architecture {index} ({arch}) on {column} "
                        f"in {path}: {err}") from None
        return cache[arch, column]

    return BenchmarkTable(str(path), NATS_DATASETS, query)


# ------------------------------------------------------------------------ the search loop's use


@dataclass(frozen=True)
class BenchmarkLookup:
    """A table and the column a search reports: ``lookup(genotype)`` is its accuracy (a
    :class:`~nasp.spaces.base.Benchmark`)."""

    table: BenchmarkTable
    column: str

    def __call__(self, genotype: NB201Genotype | str) -> float | None:
        return self.table.accuracy(genotype, self.column)

    def percentile(self, accuracy: float) -> float | None:
        """:meth:`BenchmarkTable.percentile` in the lookup's column."""
        return self.table.percentile(accuracy, self.column)


def open_table(path: str | os.PathLike[str], column: str | None,
               dataset: str) -> BenchmarkLookup:
    """The look-up of the table ``path`` in ``column`` (None: the column of ``dataset``). Every
    problem is a :class:`BenchmarkError` raised here, before a search starts."""
    table = BenchmarkTable.load(path)
    if column is None and dataset.lower() not in DATASET_COLUMNS:
        raise BenchmarkError(
            f"the benchmark has no column for the data set {dataset!r}; name the "
            f"column to report with --benchmark-column (one of {', '.join(table.datasets)})")
    return BenchmarkLookup(table, table.column(column or dataset))


def open_benchmark(config: Any) -> BenchmarkLookup | None:
    """The look-up a search config asks for (``benchmark``, ``benchmark_column``, ``dataset``),
    or None without a benchmark (:func:`open_table`)."""
    if getattr(config, "benchmark", None) is None:
        return None
    return open_table(config.benchmark, getattr(config, "benchmark_column", None),
                      config.dataset)
