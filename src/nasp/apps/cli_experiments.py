"""The experiment commands of ``nasp``: ``bench`` (one search iteration of each strategy, timed)
and ``compare`` (strategies x seeds on one budget, then a report). :mod:`nasp.apps.cli` adds
them to its parser; their errors are handled there."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from nasp.apps.arguments import (
    DEVICE_OPTIONS,
    add_options,
    add_strategy_options,
    given,
    preset_help,
)
from nasp.config import (
    PRESETS,
    TRAIN_PRESETS,
    SearchConfig,
    TrainConfig,
    load_config,
    preset,
    train_preset,
)
from nasp.data import is_text_dataset
from nasp.errors import ConfigError
from nasp.registry import STRATEGIES
from nasp.spaces import DEFAULT_SPACE, SPACES, primitive_sets_help, primitives_help

__all__ = ["add_bench_parser", "add_compare_parser"]


def add_bench_parser(sub) -> None:
    """``nasp bench``: time one search iteration of each strategy."""
    from nasp.apps.step_timing import VARIANTS

    p = sub.add_parser(
        "bench", help="time and measure one search iteration: NASP vs DARTS",
        description="Per-iteration time (median of interleaved rounds after warm-up) and peak "
                    "memory of the child network alone, NASP (sparse and reference architecture "
                    "steps) and DARTS (first and second order), on one supernet and random data "
                    "(images, or on a text space windows of random tokens). Sizes left out take "
                    "the space's paper search setting (--preset paper).")
    p.add_argument("--space", choices=sorted(SPACES), default=DEFAULT_SPACE)
    p.add_argument("--layers", type=int, help="default: the space's paper search setting")
    p.add_argument("--channels", type=int, help="default: the space's paper search setting")
    p.add_argument("--batch-size", type=int, help="default: the space's paper search setting")
    p.add_argument("--image-size", type=int, default=32, help="image spaces: the images' side")
    p.add_argument("--bptt", type=int, default=35, help="text spaces: time steps per window")
    p.add_argument("--vocab", type=int, default=10_000,
                   help="text spaces: the vocabulary of the random tokens (Penn Treebank's)")
    p.add_argument("--primitives", choices=sorted({n for cls in SPACES.values()
                                                   for n in cls.primitive_sets}),
                   help="candidate op set (default: darts-7 on the default space, otherwise "
                        "the space's own)")
    add_options(p, SearchConfig, DEVICE_OPTIONS, default="auto")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), metavar="NAME",
                   help=f"which to run (default all: {', '.join(VARIANTS)})")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    p.set_defaults(func=_cmd_bench)


def _or(value, default):
    return default if value is None else value


def _cmd_bench(args: argparse.Namespace) -> int:
    from nasp.apps.step_timing import BenchSetup, format_table, run_bench
    from nasp.runtime.atomic import atomic_write_text

    if args.repeats < 1 or args.warmup < 0:
        raise ConfigError("--repeats must be at least 1 and --warmup at least 0")
    paper = preset("paper", space=args.space)
    primitives = args.primitives or (
        BenchSetup.primitives if args.space == DEFAULT_SPACE else None)
    setup = BenchSetup(layers=_or(args.layers, paper.layers),
                       channels=_or(args.channels, paper.channels),
                       batch_size=_or(args.batch_size, paper.batch_size),
                       image_size=args.image_size, device=args.device, primitives=primitives,
                       memory_format=args.memory_format, precision=args.precision,
                       seed=args.seed, space=args.space, bptt=args.bptt, vocab=args.vocab)
    report = run_bench(setup, args.variants, args.repeats, args.warmup, not args.no_memory,
                       log=lambda s: print(s, file=sys.stderr))
    print(format_table(report))
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
        print(f"figures written to {args.json}")
    return 0


#: The search options nasp compare takes (the same for every strategy), with the help texts that
#: differ from nasp search's; the strategy options it takes (each given to the strategies that
#: take it); the train options it takes (as --train-NAME).
_COMPARE_SEARCH_OPTIONS = {
    "space": None, "dataset": "data set of the searches and of the training", "data_dir": None,
    "subset": "search on N training images only, a class-stratified sample drawn with each seed",
    "primitives": primitives_help("candidate op set of every strategy without its own in "
                                  "--strategy-primitives"),
    "epochs": "search epochs (the budget of every strategy)", "layers": None,
    "channels": "initial channels of the supernet", "batch_size": None, "cutout": None,
    "benchmark": "final accuracy = the derived genotype's accuracy in this benchmark table (no "
                 "training; random search is scored by it too; default: the search "
                 "configuration's benchmark)",
    "benchmark_column": "the benchmark's accuracy column (default: the one of --dataset)",
    **dict.fromkeys(DEVICE_OPTIONS)}
_COMPARE_STRATEGY_OPTIONS = ("random_samples",)
_COMPARE_TRAIN_OPTIONS = {
    "epochs": None, "layers": None, "channels": None, "batch_size": None,
    "subset": "use N training images only, a class-stratified sample drawn with each seed "
              "(--train-val-fraction of them held out for validation)",
    "lr": None, "cutout": None, "drop_path": None, "auxiliary_weight": None,
    "val_fraction": None}


def add_compare_parser(sub) -> None:
    """``nasp compare``: strategies x seeds, then a report."""
    p = sub.add_parser(
        "compare", help="compare search strategies over seeds: table, plot, genotypes",
        description="Search with every strategy and seed on one space, data set and budget, "
                    "measure each derived genotype (test accuracy after a train-from-scratch, "
                    "or its accuracy in a --benchmark table), and write DIR/report.md (mean +- "
                    "std and best per strategy, every run, the genotypes), results.json, "
                    "results.csv and accuracy_vs_time.png. Runs already finished in DIR are "
                    "reused, so an interrupted compare continues where it stopped and runs can "
                    "be added. Search options left out take the preset's value.")
    p.add_argument("--out", metavar="DIR", required=True, help="the comparison's directory")
    p.add_argument("--strategies", nargs="+", choices=sorted(STRATEGIES), metavar="NAME",
                   default=["nasp", "darts", "random"],
                   help=f"strategies to compare ({', '.join(sorted(STRATEGIES))}; default nasp "
                        f"darts random)")
    p.add_argument("--seeds", nargs="+", type=int, metavar="K", default=[0, 1, 2],
                   help="seeds of every strategy, for search and training (default 0 1 2)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu",
                   help="search " + preset_help("cpu"))
    p.add_argument("--config", metavar="FILE",
                   help="start the search configuration from a config.yaml instead")
    p.set_defaults(search_options=add_options(
        p, SearchConfig, _COMPARE_SEARCH_OPTIONS,
        help={k: v for k, v in _COMPARE_SEARCH_OPTIONS.items() if v}))
    p.add_argument("--strategy-primitives", nargs="+", metavar="STRATEGY=SET",
                   help="a strategy's own candidate op set, e.g. darts=darts darts2=darts to "
                        "run DARTS on its 8 ops (with none) beside NASP on darts-7 "
                        f"(sets: {primitive_sets_help()})")
    p.set_defaults(strategy_options=add_strategy_options(p, _COMPARE_STRATEGY_OPTIONS))
    p.add_argument("--train-preset", choices=sorted(TRAIN_PRESETS),
                   help="train-from-scratch configuration to start from (default quick; on a "
                        "text corpus ptb-cpu)")
    p.set_defaults(train_options=add_options(
        p, TrainConfig, _COMPARE_TRAIN_OPTIONS, prefix="train_",
        help={k: v for k, v in _COMPARE_TRAIN_OPTIONS.items() if v}))
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_compare)


def _cmd_compare(args: argparse.Namespace) -> int:

    from nasp.apps.compare import ComparePlan, run_comparison

    overrides = given(args, args.search_options)
    if args.config:
        search_config = load_config(args.config).replace(**overrides)
    else:
        search_config = preset(args.preset, **overrides)
    benchmark = search_config.benchmark
    train_config = None
    if not benchmark:
        default = "ptb-cpu" if is_text_dataset(search_config.dataset) else "quick"
        train_config = train_preset(
            args.train_preset or default, dataset=search_config.dataset,
            data_dir=search_config.data_dir,
            device=args.device, memory_format=args.memory_format, precision=args.precision,
            **given(args, args.train_options, "train_"))
    plan = ComparePlan(strategies=tuple(args.strategies), seeds=tuple(args.seeds),
                       search=dataclasses.replace(search_config, out=None), out=Path(args.out),
                       train=train_config, benchmark=benchmark,
                       command=shlex.join(["nasp", *args.argv]),
                       strategy_primitives=_strategy_primitives(args.strategy_primitives),
                       strategy_options=given(args, args.strategy_options))
    run_comparison(plan, progress=not args.no_progress)
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def _strategy_primitives(pairs: Sequence[str] | None) -> dict[str, str]:
    """--strategy-primitives' STRATEGY=SET pairs as a mapping (ComparePlan checks the names)."""
    sets: dict[str, str] = {}
    for pair in pairs or ():
        strategy, equals, name = pair.partition("=")
        if not (equals and strategy and name):
            raise ConfigError(f"--strategy-primitives takes STRATEGY=SET pairs such as "
                              f"darts=darts, got {pair!r}")
        if strategy in sets:
            raise ConfigError(f"--strategy-primitives gives {strategy} two op sets "
                              f"({sets[strategy]} and {name}); give one")
        sets[strategy] = name
    return sets
