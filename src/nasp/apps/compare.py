"""``nasp compare``: search strategies x seeds on one space, data set and budget, then a report.

For every strategy and seed, a search (:func:`nasp.engine.search.search`, the given
:class:`~nasp.config.SearchConfig` with that strategy and seed, and the strategy's own candidate
op set where one is given, e.g. DARTS on ``darts`` with ``none`` beside NASP on ``darts-7``)
derives a genotype, whose final accuracy is either

- the test top-1 accuracy after the last epoch of a train-from-scratch
  (:func:`nasp.engine.train.train`, the given :class:`~nasp.config.TrainConfig` on the search's
  data set, with the same seed), or
- with a benchmark table, its accuracy looked up in the table (no training).

On a text corpus (``--dataset ptb``, a recurrent space) the final measure is the test
perplexity (lower is better; :data:`~nasp.apps.compare_report.PERPLEXITY`, rows'
``final_ppl``) of the trained language model's ``best.pt`` (the lowest validation loss), as
``nasp test`` reports it (:func:`~nasp.engine.train_text.evaluate_text_checkpoint`).

Layout of the output directory::

    DIR/<strategy>-seed<k>/search/     the search run directory
    DIR/<strategy>-seed<k>/search.json genotype, search wall and CPU time, the search config
    DIR/<strategy>-seed<k>/train/      the train-from-scratch run directory
    DIR/<strategy>-seed<k>/train.json  final accuracy, parameters, training time, train config
    DIR/report.md                      command, configs, per-run rows, per-strategy op set,
                                       mean +- std and best, genotypes
    DIR/results.json, DIR/results.csv  the same figures as data (with each run's op set, and in
                                       results.json the op set of every strategy)
    DIR/accuracy_vs_time.png           final accuracy against search time (needs the viz extra)

``search.json`` and ``train.json`` are written (atomically) only once their stage has finished,
so a stage that has one is reused, not rerun: a killed compare continues where it stopped, and
strategies or seeds can be added to a finished one. A stage whose configuration differs from the
recorded one is an error, never silently mixed. An unfinished search starts again; an unfinished
training continues from its ``last.pt``. The report is rewritten after every run, the plot after
the last.

Search time is measured around the whole :func:`~nasp.engine.search.search` call (data loading,
supernet construction, epochs): wall time (``time.perf_counter``) and the CPU time of this process
(``time.process_time``, all threads). One-off costs that only the first search of the process
would pay (lazy imports of the data loader and of torch's optimisers) are paid before any is
timed. Child parameters are those of the trained network
(auxiliary head excluded); with a benchmark table they are not measured.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from nasp.apps.compare_report import (
    ACCURACY,
    PERPLEXITY,
    FinalMeasure,
    plot_accuracy_vs_time,
    report_markdown,
    summarise,
)
from nasp.config import SearchConfig, TrainConfig
from nasp.core.measure import parameter_count
from nasp.data import is_text_dataset, load_corpus, load_dataset
from nasp.engine.checkpoints import BEST, LAST, OLDER_DEFAULTS
from nasp.engine.search import search
from nasp.engine.train import resume, train
from nasp.engine.train_text import evaluate_text_checkpoint
from nasp.errors import ConfigError, MissingExtraError
from nasp.registry import STRATEGIES
from nasp.runtime.atomic import atomic_write_text
from nasp.spaces import Genotype, genotype_from_dict, open_benchmark

__all__ = ["ComparePlan", "run_comparison", "write_report"]

#: Options that may differ between a recorded stage and the current plan (where the data
#: lives, where the run directory is): every other one must match for the stage to be reused.
MAY_DIFFER = ("out", "data_dir")


@dataclass(frozen=True)
class ComparePlan:
    """What ``nasp compare`` runs.

    ``search`` is the search configuration of every run (its strategy, seed and out are set per
    run); ``train`` the train-from-scratch configuration (its data set, data_dir, seed and out
    are set per run), unused when ``benchmark`` names a table; ``command`` is recorded in the
    report as given. ``strategy_primitives`` maps a strategy to its own candidate op set (a
    name of :data:`nasp.spaces.PRIMITIVE_SETS`); the others search on ``search.primitives``.
    ``strategy_options`` holds values of strategy options (``random_samples``...), each given to
    the strategies that take it (None: left as ``search`` has it).
    """

    strategies: tuple[str, ...]
    seeds: tuple[int, ...]
    search: SearchConfig
    out: Path
    train: TrainConfig | None = None
    benchmark: str | None = None
    command: str = ""
    strategy_primitives: dict[str, str] = field(default_factory=dict)
    strategy_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not self.strategies or not self.seeds:
            raise ConfigError("nasp compare needs at least one strategy (--strategies) and one "
                              "seed (--seeds)")
        for what, items in (("--strategies", self.strategies), ("--seeds", self.seeds)):
            if len(set(items)) != len(items):
                raise ConfigError(f"{what} lists a value twice: {' '.join(map(str, items))}; "
                                  f"give each once")
        if self.train is None and not self.benchmark:
            raise ConfigError("nasp compare needs a train-from-scratch configuration or a "
                              "benchmark table (--benchmark) to measure the final accuracy")
        resolved = {}
        for strategy, name in self.strategy_primitives.items():
            if strategy not in self.strategies:
                what = (f"{strategy}, which is not among --strategies "
                        f"({' '.join(self.strategies)}); add it there or drop its set"
                        if strategy in STRATEGIES else
                        f"the unknown strategy {strategy!r}; the strategies are "
                        f"{', '.join(sorted(STRATEGIES))}")
                raise ConfigError(f"--strategy-primitives gives an op set for {what}")
            try:
                resolved[strategy] = self.search_config(strategy, self.seeds[0]).primitives
            except ConfigError as err:
                raise ConfigError(f"--strategy-primitives {strategy}={name} does not fit the "
                                  f"search configuration: {err}") from None
        # as the search configs resolve them (the default darts-7 stands for the space's own)
        object.__setattr__(self, "strategy_primitives", resolved)

    def primitives(self, strategy: str) -> str:
        """The candidate op set ``strategy`` searches on."""
        return self.strategy_primitives.get(strategy, self.search.primitives)

    @property
    def text(self) -> bool:
        """Whether the runs search and train language models (a text corpus)."""
        return is_text_dataset(self.search.dataset)

    @property
    def measure(self) -> FinalMeasure:
        """What is compared: a final accuracy, or (text, trained) a test perplexity."""
        return PERPLEXITY if self.text and not self.benchmark else ACCURACY

    @property
    def final_metric(self) -> str:
        """What "final accuracy" (or the final test perplexity) means in this comparison."""
        if self.benchmark:
            return f"accuracy of the derived genotype in the benchmark table {self.benchmark}"
        epochs = f"{self.train.epochs} epoch{'' if self.train.epochs == 1 else 's'}"
        if self.text:
            return (f"test perplexity on {self.search.dataset} (batch 1) of {BEST}, the epoch "
                    f"of the lowest validation loss in {epochs} of training the derived cell's "
                    f"language model from scratch ({self.train.channels} units)")
        return (f"test top-1 accuracy on {self.search.dataset} after {epochs} of training the "
                f"derived genotype from scratch ({self.train.layers} cells, C "
                f"{self.train.channels})")

    def search_config(self, strategy: str, seed: int) -> SearchConfig:
        takes = ({f.name for f in fields(STRATEGIES[strategy].Options)}
                 if strategy in STRATEGIES else set())
        config = self.search.replace(strategy=strategy, seed=seed,
                                     primitives=self.strategy_primitives.get(strategy),
                                     out=str(self.run_dir(strategy, seed) / "search"),
                                     **{k: v for k, v in self.strategy_options.items()
                                        if k in takes})
        if self.benchmark:
            config = config.replace(benchmark=self.benchmark)
        return config

    def train_config(self, strategy: str, seed: int) -> TrainConfig:
        return self.train.replace(dataset=self.search.dataset, data_dir=self.search.data_dir,
                                  seed=seed, out=str(self.run_dir(strategy, seed) / "train"))

    def run_dir(self, strategy: str, seed: int) -> Path:
        return self.out / f"{strategy}-seed{seed}"


def run_comparison(plan: ComparePlan, *, progress: bool = False,
            log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Run (or reuse) every strategy x seed of ``plan``; write the report after each; return
    the per-run rows."""
    plan.out.mkdir(parents=True, exist_ok=True)
    scorer = _benchmark_scorer(plan) if plan.benchmark else None
    _warm_up(plan.search)
    rows = []
    runs = [(strategy, seed) for strategy in plan.strategies for seed in plan.seeds]
    for i, (strategy, seed) in enumerate(runs):
        name = f"{strategy}-seed{seed}"
        rows.append(_run(plan, strategy, seed, scorer, progress,
                         lambda s, n=name: log(f"[{n}] {s}")))
        write_report(plan, rows, log, plot=i == len(runs) - 1)
    return rows


def _warm_up(config: SearchConfig) -> None:
    """Pay the one-off costs of a first search before any is timed: the data set's loading
    code (and download) and the lazy imports behind the first torch optimiser."""
    if is_text_dataset(config.dataset):
        load_corpus(config.dataset, config.data_dir)
    else:
        load_dataset(config.dataset, config.data_dir, "train")
    weight = torch.zeros(1, requires_grad=True)
    torch.optim.SGD([weight], lr=0.1)
    torch.optim.Adam([weight])


def _run(plan: ComparePlan, strategy: str, seed: int,
         scorer: Callable[[Genotype], float | None] | None, progress: bool,
         log: Callable[[str], None]) -> dict[str, Any]:
    """One (strategy, seed): its search and final accuracy, each reused when recorded."""
    run_dir = plan.run_dir(strategy, seed)
    config = plan.search_config(strategy, seed)
    searched = _recorded(run_dir / "search.json", config.to_dict())
    if searched is None:
        wall, cpu = time.perf_counter(), time.process_time()
        result = search(config, overwrite=True, progress=progress, plots=False, log=log)
        searched = {"genotype": result.genotype.to_dict(),
                    "search_seconds": time.perf_counter() - wall,
                    "search_cpu_seconds": time.process_time() - cpu,
                    "config": config.to_dict()}
        _write_json(run_dir / "search.json", searched)
    else:
        log(f"reusing the finished search in {run_dir / 'search'}")
    genotype = genotype_from_dict(searched["genotype"])
    row = {"strategy": strategy, "primitives": config.primitives, "seed": seed,
           "genotype": genotype.to_dict(),
           "search_seconds": searched["search_seconds"],
           "search_cpu_seconds": searched["search_cpu_seconds"]}
    if scorer is not None:
        accuracy = scorer(genotype)
        return {**row, "final_accuracy": accuracy, "parameters": None, "train_seconds": 0.0,
                "total_seconds": row["search_seconds"]}

    tconfig = plan.train_config(strategy, seed)
    trained = _recorded(run_dir / "train.json", tconfig.to_dict(), OLDER_DEFAULTS)
    if trained is None:
        wall = time.perf_counter()
        if (Path(tconfig.out) / LAST).is_file():
            options = {k: v for k, v in tconfig.to_dict().items() if k != "out"}
            result = resume(tconfig.out, genotype=genotype, progress=progress, plots=False,
                            log=log, **options)
        else:
            result = train(genotype, tconfig, overwrite=True, progress=progress, plots=False,
                           log=log)
        trained = {**_final_test(plan, tconfig, result.history),
                   "parameters": parameter_count(result.net),
                   "train_seconds": time.perf_counter() - wall, "config": tconfig.to_dict()}
        _write_json(run_dir / "train.json", trained)
    else:
        log(f"reusing the finished training in {run_dir / 'train'}")
    final = trained["test_ppl"] if plan.text else trained["test_acc"]
    return {**row, plan.measure.key: final, "parameters": trained["parameters"],
            "train_seconds": trained["train_seconds"],
            "total_seconds": row["search_seconds"] + trained["train_seconds"]}


def _final_test(plan: ComparePlan, tconfig: TrainConfig, history: list[dict[str, Any]]
                ) -> dict[str, Any]:
    """What ``train.json`` records as the final measure: the last epoch's ``test_acc``, or a
    language model's ``test_ppl`` of its best.pt (last.pt when no epoch had a finite
    validation loss)."""
    if not plan.text:
        return {"test_acc": history[-1]["test_acc"]}
    run = Path(tconfig.out)
    chosen = run / BEST if (run / BEST).is_file() else run / LAST
    return {"test_ppl": evaluate_text_checkpoint(chosen, tconfig.data_dir,
                                                 tconfig.device)["test_ppl"],
            "checkpoint": chosen.name}


def _recorded(path: Path, config: dict[str, Any], older: dict[str, Any] | None = None,
              ) -> dict[str, Any] | None:
    """The record of a finished stage, None if there is none; an error if it was run with
    another configuration. ``older``: the values of keys a record of an older nasp lacks (a
    train record without ``val_fraction`` was trained without a validation split)."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        saved = {**(older or {}), **record["config"]}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"{path} is unreadable or damaged ({err}); delete it to run that "
                          f"stage again") from None
    differ = [f"{k} {config.get(k)!r} (recorded: {saved.get(k)!r})"
              for k in sorted(set(config) | set(saved))
              if k not in MAY_DIFFER and config.get(k) != saved.get(k)]
    if differ:
        raise ConfigError(
            f"{path.parent} was run with another configuration ({'; '.join(differ)}); a "
            f"comparison mixes no settings: choose another --out, or delete {path.parent} to "
            f"run it again")
    return record


def _benchmark_scorer(plan: ComparePlan) -> Callable[[Genotype], float | None]:
    return open_benchmark(plan.search_config(plan.strategies[0], plan.seeds[0]))


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


# -- the report ---------------------------------------------------------------------------------

def write_report(plan: ComparePlan, rows: Sequence[dict[str, Any]],
                 log: Callable[[str], None] = print, plot: bool = True) -> Path:
    """Write ``report.md``, ``results.json``, ``results.csv`` and, with ``plot``,
    ``accuracy_vs_time.png`` (skipped with a note in the report without matplotlib) into
    ``plan.out``; all atomically. Without ``plot`` (reports written while runs remain) the
    report says the plot comes at the end."""
    picture = plan.out / "accuracy_vs_time.png"
    if not plot:
        picture.unlink(missing_ok=True)
        shown = "The plot is drawn when all runs have finished."
    else:
        try:
            shown = plot_accuracy_vs_time(rows, picture, plan.measure).name
        except MissingExtraError as err:
            shown = f"No plot: {err}"
            log(f"no plot: {err}")
    atomic_write_text(plan.out / "report.md", report_markdown(plan, rows, shown))
    _write_json(plan.out / "results.json", {
        "command": plan.command, plan.measure.key: plan.final_metric,
        "search_config": plan.search.to_dict(),
        "primitives": {strategy: plan.primitives(strategy) for strategy in plan.strategies},
        "train_config": None if plan.benchmark else plan.train.to_dict(),
        "benchmark": plan.benchmark, "runs": list(rows),
        "summary": summarise(rows, plan.measure)})
    text = io.StringIO()
    columns = ["strategy", "primitives", "seed", plan.measure.key, "parameters", "search_seconds",
               "search_cpu_seconds", "train_seconds", "total_seconds", "genotype"]
    writer = csv.DictWriter(text, columns, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({**{k: r[k] for k in columns[:-1]},
                         "genotype": str(genotype_from_dict(r["genotype"]))})
    atomic_write_text(plan.out / "results.csv", text.getvalue())
    return plan.out / "report.md"
