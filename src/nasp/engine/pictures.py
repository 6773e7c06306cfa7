"""Pictures of a run: cell diagrams, learning curves, time, the search's weights (extra ``viz``).

:func:`plot_run` writes into a search or train run directory whatever its files allow:

- one file stem per cell the genotype's space draws (:meth:`SearchSpace.picture_cells
  <nasp.spaces.base.SearchSpace.picture_cells>`: ``cell_normal.*`` / ``cell_reduce.*`` for a DARTS
  cell, ``cell.*`` for a space with one cell): the cells of ``genotype.json`` (or of the latest
  epoch in ``metrics.jsonl``) as diagrams: ``.dot`` (graphviz source, the space's
  :meth:`~nasp.spaces.base.SearchSpace.cell_dot`) always, rendered to ``.png`` by graphviz
  ``dot`` when it is installed, else drawn with matplotlib by the space;
- ``curves.png``: every ``*_loss`` and ``*_acc`` / ``*_top5`` series of ``metrics.jsonl`` (a
  language model's: ``*_ppl``, perplexities, instead of accuracies) and the learning rate, per
  epoch; ``timing.png``: seconds per epoch;
- search runs (:mod:`nasp.engine.search_pictures`): ``genotype_evolution.png``, the op each
  edge holds in the derived cell after every epoch; ``arch_weights.png``, the final
  architecture weights of ``arch.pt`` (or of ``checkpoint.pt`` while the search runs) and
  ``arch_evolution.png``, the weights per edge over the epochs (when the metrics record them:
  an ``"arch"`` entry per epoch, ``{cell type: edges x ops nested list}`` of the raw
  parameters), both relative to their edge (NASP's ``A`` minus the edge's mean, DARTS'
  ``softmax(alpha) - 1/K``) and marking the op the final cell keeps;
  ``diagnostics.png``, the collapse diagnostics and the strategy's own per-epoch numbers;
  ``benchmark.png``, the benchmark table's accuracy of every epoch's cell (``--benchmark``).

The cells are drawn by their space; these modules draw what every space shares. Every picture
is sized and lettered to be read at its own size (:mod:`nasp.engine.plotting`). matplotlib is
imported only when a picture is drawn, through its object API (no pyplot, no global backend).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from nasp.config import load_config
from nasp.engine.plotting import (
    epoch_axis,
    epochs_of,
    figure,
    format_duration,
    marker,
    number,
    numeric_keys,
    save,
    styled,
)
from nasp.engine.search_pictures import (
    diagnostic_panels,
    plot_arch_evolution,
    plot_arch_weights,
    plot_benchmark,
    plot_diagnostics,
    plot_genotype_evolution,
)
from nasp.errors import ConfigError, MissingExtraError, RunDirError
from nasp.runtime.atomic import atomic_write_text
from nasp.runtime.extras import require
from nasp.spaces import (
    Genotype,
    SearchSpace,
    build_space,
    described_space,
    genotype_from_dict,
    load_genotype,
    space_of,
)

__all__ = [
    "cell_dot", "draw_cell", "plot_curves", "plot_run", "plot_timing", "read_records",
    "run_genotype", "run_kind", "search_space", "write_pictures",
]


def cell_dot(genotype: Genotype, cell: str) -> str:
    """Graphviz source of one cell of ``genotype``, as its space draws it
    (:meth:`~nasp.spaces.base.SearchSpace.cell_dot`)."""
    return space_of(genotype).cell_dot(genotype, cell)


def draw_cell(genotype: Genotype, cell: str, stem: str | os.PathLike,
              use_dot: bool | None = None) -> list[Path]:
    """Write ``stem.dot`` and ``stem.png`` for one cell; returns the files written.

    The PNG is rendered by graphviz ``dot`` when ``use_dot`` (default: when ``dot`` is on the
    PATH), else drawn with matplotlib by the genotype's space
    (:meth:`~nasp.spaces.base.SearchSpace.draw_cell`).
    """
    stem = Path(stem)
    dot_file, png = stem.with_suffix(".dot"), stem.with_suffix(".png")
    atomic_write_text(dot_file, cell_dot(genotype, cell))
    dot = shutil.which("dot") if use_dot is not False else None
    if use_dot and dot is None:
        raise FileNotFoundError("graphviz dot is not on the PATH")
    if dot:
        subprocess.run([dot, "-Tpng", "-Gdpi=110", "-o", str(png), str(dot_file)], check=True,
                       capture_output=True, timeout=60)
    else:
        space_of(genotype).draw_cell(genotype, cell, png)
    return [dot_file, png]


@styled
def plot_curves(records: Sequence[Mapping[str, Any]], path: str | os.PathLike,
                title: str = "") -> Path:
    """Per-epoch curves: losses, accuracies (in %) and the learning rate, one panel each; every
    axis scaled to its data. A key some records lack is a gap in its line. Records with
    perplexities (``*_ppl``, a language model's) show them, on a log scale, instead of the
    accuracies."""
    # a strategy measured on its supernet (DARTS: val_measure "supernet") has child_val_* of
    # the child on supernet weights without its own BatchNorm statistics: not shown
    unmeasured = ("child_val_",) if any(r.get("val_measure") == "supernet"
                                        for r in records) else ()

    def shown(key: str, ends: tuple[str, ...]) -> bool:
        return key.endswith(ends) and not (unmeasured and key.startswith(unmeasured))

    # a language model's runs record perplexities (*_ppl): its headline, shown instead of the
    # next-word accuracy, on a log scale (from about the vocabulary's size down to ~100)
    perplexities = numeric_keys(records, lambda k: shown(k, ("_ppl",)))
    panels = [("loss", numeric_keys(records, lambda k: shown(k, ("_loss",)))),
              ("perplexity", perplexities) if perplexities else
              ("accuracy (%)", numeric_keys(records, lambda k: shown(k, ("_acc", "_top5")))),
              ("learning rate", numeric_keys(records, lambda k: k == "lr"))]
    panels = [(name, keys) for name, keys in panels if keys]
    epochs = epochs_of(records)
    fig = figure(figsize=(3.6 * max(len(panels), 1) + 0.4, 3.2), layout="constrained")
    for i, (name, keys) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        scale = 100 if name.startswith("accuracy") else 1
        for key in keys:
            ax.plot(epochs, [scale * number(r.get(key)) for r in records],
                    marker=marker(epochs), label=key.replace("_", " "))
        epoch_axis(ax)
        ax.set_ylabel(name)
        if name == "perplexity":
            ax.set_yscale("log")
        if len(keys) > 1:
            ax.legend()
    if title:
        fig.suptitle(title)
    return save(fig, path)


@styled
def plot_timing(records: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Seconds per epoch (wall clock; CPU seconds of the process as a line where recorded)."""
    epochs = epochs_of(records)
    seconds = [number(r.get("seconds")) for r in records]
    total = sum(s for s in seconds if not math.isnan(s))
    fig = figure(figsize=(6.4, 2.8), layout="constrained")
    ax = fig.add_subplot()
    ax.set_axisbelow(True)
    ax.bar(epochs, seconds, width=0.8, color="C0", alpha=0.75, label="wall clock")
    if numeric_keys(records, lambda k: k == "cpu_seconds"):
        ax.plot(epochs, [number(r.get("cpu_seconds")) for r in records], color="C1",
                marker=marker(epochs), label="CPU (this process)")
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
    epoch_axis(ax)
    ax.set_ylabel("seconds")
    ax.set_title(f"time per epoch (total {format_duration(total)})")
    return save(fig, path)


def _read_records(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    records = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except ValueError:
                raise RunDirError(f"{path} line {n} is not JSON; the metrics file is damaged"
                                  ) from None
    return records


def _final_arch(run: Path) -> dict[str, torch.Tensor] | None:
    """The architecture parameters of ``arch.pt``, else of a search ``checkpoint.pt``."""
    if (run / "arch.pt").is_file():
        return torch.load(run / "arch.pt", map_location="cpu", weights_only=True)
    if (run / "checkpoint.pt").is_file():
        state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
        return state.get("strategy", {}).get("arch")
    return None


def read_records(run: Path) -> list[dict[str, Any]]:
    """The records of ``run``'s ``metrics.jsonl`` (none without the file)."""
    return _read_records(Path(run) / "metrics.jsonl")


def run_genotype(run: Path, records: Sequence[Mapping[str, Any]]) -> Genotype | None:
    """The run's cell: ``genotype.json``, else the latest epoch's genotype in the metrics."""
    if (run / "genotype.json").is_file():
        return load_genotype(run / "genotype.json")
    for record in reversed(records):
        if isinstance(record.get("genotype"), Mapping):
            return genotype_from_dict(record["genotype"])
    return None


def run_kind(records: Sequence[Mapping[str, Any]]) -> str:
    """``"search"`` when the metrics record a derived genotype per epoch, else ``"training"``."""
    return "search" if any("genotype" in r for r in records) else "training"


def plot_run(run_dir: str | os.PathLike, use_dot: bool | None = None) -> list[Path]:
    """Write every picture the run directory's files allow (see the module doc); return them.

    Raises :class:`~nasp.runtime.extras.MissingExtraError` without matplotlib, and
    :class:`~nasp.runtime.runs.RunDirError` for a directory with nothing to draw.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise RunDirError(f"run directory {run} does not exist; pass the --out folder of a "
                          f"nasp search or nasp train run")
    require("matplotlib", "viz", "Drawing pictures (nasp plot)")
    records = read_records(run)
    genotype = run_genotype(run, records)
    if genotype is None and not records:
        raise RunDirError(f"{run} holds neither genotype.json nor metrics.jsonl, so there is "
                          f"nothing to draw; pass the --out folder of a nasp search or nasp "
                          f"train run")
    written: list[Path] = []
    if genotype is not None:
        for cell, stem in space_of(genotype).picture_cells(genotype).items():
            written += draw_cell(genotype, cell, run / stem, use_dot)
    if records:
        written.append(plot_curves(records, run / "curves.png",
                                   f"{run_kind(records)}: {run.name}"))
    if numeric_keys(records, lambda k: k == "seconds"):
        written.append(plot_timing(records, run / "timing.png"))
    searched = [r for r in records if isinstance(r.get("genotype"), Mapping)]
    space = search_space(run)
    if searched:
        written.append(plot_genotype_evolution(searched, run / "genotype_evolution.png",
                                               space[0] if space else None))
    written += _search_weights(run, records, space)
    if searched and diagnostic_panels(searched):
        written.append(plot_diagnostics(searched, run / "diagnostics.png"))
    if numeric_keys(records, lambda k: k == "benchmark_acc"):
        written.append(plot_benchmark(records, run / "benchmark.png",
                                      _config_value(run, "benchmark_column")))
    return written


def _config_value(run: Path, key: str) -> Any:
    """One value of the run's ``config.yaml`` (None when it or the file is missing)."""
    try:
        data = yaml.safe_load((run / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    return data.get(key) if isinstance(data, dict) else None


def search_space(run: Path) -> tuple[SearchSpace, bool] | None:
    """The space a search run searched and whether its strategy's weights are read through a
    softmax (DARTS) or as they are (NASP); None for a train run or a space or op set this
    version does not know. The space is the one ``searched.json`` describes where the run wrote
    one (a search of a user's model, whose space config.yaml cannot name), else config.yaml's.
    """
    if not (run / "config.yaml").is_file():
        return None
    try:
        config = load_config(run / "config.yaml")
    except ConfigError:
        return None  # a train run's config
    try:
        searched = json.loads((run / "searched.json").read_text())
    except (OSError, ValueError):
        searched = None
    try:
        if isinstance(searched, Mapping) and "space" in searched:
            return described_space(searched), config.strategy != "nasp"
        return build_space(config.space, config.primitives), config.strategy != "nasp"
    except ValueError:
        return None


def _search_weights(run: Path, records: Sequence[Mapping[str, Any]],
                    searched: tuple[SearchSpace, bool] | None) -> list[Path]:
    """The architecture-weight pictures of a search run (none without its space)."""
    if searched is None:
        return []
    space, softmax = searched
    written = []
    arch = _final_arch(run)
    genotype = run_genotype(run, records)
    if arch is not None:
        written.append(plot_arch_weights(arch, space, run / "arch_weights.png", softmax,
                                         genotype))
    with_arch = [r for r in records if isinstance(r.get("arch"), Mapping)]
    if with_arch:
        last = with_arch[-1].get("genotype")
        written.append(plot_arch_evolution(
            with_arch, space, run / "arch_evolution.png", softmax,
            genotype_from_dict(last) if isinstance(last, Mapping) else genotype))
    return written


def write_pictures(run_dir: str | os.PathLike, log: Callable[[str], None]) -> None:
    """:func:`plot_run` at the end of a run: a missing matplotlib is one logged line, not an
    error, so a run without the ``viz`` extra still finishes."""
    try:
        written = plot_run(run_dir)
    except MissingExtraError as err:
        log(f"no pictures: {err}")
        return
    log(f"pictures: {', '.join(p.name for p in written)}")
