"""The ``nasp`` command: parse arguments into a config, call the library, print.

Errors a user can fix (a missing data set, a bad option, a used output directory, a run that
diverged or ran out of memory, a full disk) are printed as one paragraph on stderr with exit code
2, never as a traceback.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

from nasp.apps.arguments import (
    add_options,
    add_strategy_options,
    given,
    preset_help,
)
from nasp.apps.cli_experiments import add_bench_parser, add_compare_parser
from nasp.apps.export import FORMATS
from nasp.apps.profile import add_profile_parser
from nasp.config import (
    PRESETS,
    TRAIN_PRESETS,
    SearchConfig,
    TrainConfig,
    load_config,
    preset,
    train_preset,
)
from nasp.data import DATASETS
from nasp.engine.train_console import count_si
from nasp.errors import (
    BenchmarkError,
    CheckpointError,
    ConfigError,
    DatasetError,
    ExportError,
    GenotypeError,
    MissingExtraError,
    RunDirError,
    RunFailedError,
    RunInterrupted,
)
from nasp.spaces import (
    SPACES,
    builtin_genotypes,
    space_of,
)

USER_ERRORS = (ConfigError, DatasetError, GenotypeError, RunDirError, CheckpointError,
               ExportError, MissingExtraError, BenchmarkError, RunFailedError)


def _genotype_forms() -> str:
    """What GENOTYPE may be, from the spaces' built-in cells and text formats."""
    return (f"a built-in name ({', '.join(builtin_genotypes())}), a genotype.json, a search run "
            f"directory or " + " or ".join(cls.genotype_text_help for cls in SPACES.values()))


def _search_parser(sub) -> None:
    p = sub.add_parser(
        "search", help="search a cell architecture",
        description="Search a cell architecture with NASP (or a DARTS baseline). With no options "
                    "it searches on the built-in 8x8 digits in a minute or two on a CPU. Options "
                    "left out take the preset's value.")
    p.add_argument("--preset", choices=sorted(PRESETS), help=preset_help("cpu"))
    p.add_argument("--config", metavar="FILE",
                   help="start from a config.yaml (e.g. RUN_DIR/config.yaml) instead of a preset")
    p.set_defaults(config_options=add_options(p, SearchConfig) + add_strategy_options(p))
    p.add_argument("--overwrite", action="store_true",
                   help="allow --out to name a directory that already holds a run")
    p.add_argument("--resume", nargs="?", const="", metavar="RUN_DIR",
                   help="continue the search in RUN_DIR (or --out) from its checkpoint.pt, "
                        "exactly, with the configuration saved there")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--quiet", action="store_true",
                   help="print only the summary at the end (and errors): no line per epoch, no "
                        "progress bar")
    p.add_argument("--no-plots", action="store_true", help="draw no pictures at the end")
    p.set_defaults(func=_cmd_search)


def _cmd_search(args: argparse.Namespace) -> int:
    from nasp.engine.search import resume_search, search

    overrides = given(args, args.config_options)
    options = dict(progress=not args.no_progress, plots=not args.no_plots, quiet=args.quiet)
    if args.resume is not None:
        run_dir = args.resume or args.out
        if not run_dir or (args.out and args.resume and args.out != args.resume):
            raise ConfigError("--resume needs the run directory to continue: --resume RUN_DIR "
                              "(or --resume with --out RUN_DIR, not two different directories)")
        if args.preset or args.config or args.overwrite:
            raise ConfigError("--resume continues a run with the configuration saved in it: "
                              "give neither --preset, --config nor --overwrite")
        del overrides["out"]
        resume_search(run_dir, **options, **overrides)
        return 0
    if args.config:
        config = load_config(args.config).replace(**overrides)
    else:
        config = preset(args.preset or "cpu", **overrides)
    search(config, overwrite=args.overwrite, **options)
    return 0


def _train_parser(sub) -> None:
    p = sub.add_parser(
        "train", help="train a cell's network from scratch",
        description="Train the evaluation network of a cell from scratch (DARTS/NASP protocol: "
                    f"drop-path, auxiliary head, cutout, cosine lr). GENOTYPE is "
                    f"{_genotype_forms()}. With no options it trains on the built-in 8x8 "
                    "digits in about a minute on a CPU. Options left out take the preset's "
                    "value.")
    p.add_argument("genotype", nargs="?", metavar="GENOTYPE",
                   help="the cell to train (may be left out with --resume)")
    p.add_argument("--preset", choices=sorted(TRAIN_PRESETS),
                   help="starting configuration: tiny (seconds), quick (default), paper "
                        "(CIFAR-10, 20 cells, C 36, 600 epochs), imagenet (image folder of "
                        "224x224 images, 14 cells, C 48, 250 epochs), ptb-paper (a recurrent "
                        "cell on Penn Treebank as DARTS: 850 units, SGD lr 20 then averaged "
                        "SGD), ptb-cpu (the same with 200 units on 100,000 tokens, 3 epochs)")
    p.set_defaults(config_options=add_options(p, TrainConfig))
    p.add_argument("--overwrite", action="store_true",
                   help="allow --out to name a directory that already holds a run")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last.pt, with its configuration")
    p.add_argument("--tensorboard", action="store_true",
                   help="also log to RUN_DIR/tensorboard (needs the tensorboard extra)")
    p.add_argument("--no-plots", action="store_true", help="draw no pictures at the end")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--quiet", action="store_true",
                   help="print only the result at the end (and errors): no line per epoch, no "
                        "progress bar")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from nasp.engine.train import resume, train

    overrides = given(args, args.config_options)
    options = dict(progress=not args.no_progress, tensorboard=args.tensorboard,
                   plots=not args.no_plots, quiet=args.quiet)
    if args.resume:
        if args.out is None or args.preset or args.overwrite:
            raise ConfigError("--resume continues the run in --out RUN_DIR with the "
                              "configuration saved there: give --out, and neither --preset nor "
                              "--overwrite")
        del overrides["out"]
        resume(args.out, genotype=args.genotype, **options, **overrides)
        return 0
    if args.genotype is None:
        raise ConfigError(f"nasp train needs the GENOTYPE to train: {_genotype_forms()}")
    train(args.genotype, train_preset(args.preset or "quick", **overrides),
          overwrite=args.overwrite, **options)
    return 0


def _test_parser(sub) -> None:
    p = sub.add_parser(
        "test", help="accuracy of a trained checkpoint on a test split",
        description="Top-1 and top-5 accuracy and mean loss of a trained checkpoint (best.pt or "
                    "last.pt of a nasp train run, or the run directory for its last.pt) on the "
                    "test split of a data set (default: the one it was trained on). A language "
                    "model: validation (batch 10) and test (batch 1) perplexity, as DARTS.")
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument("--dataset", choices=sorted(DATASETS))
    p.add_argument("--data-dir", metavar="DIR")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.set_defaults(func=_cmd_test)


def _cmd_test(args: argparse.Namespace) -> int:
    from nasp.engine.train import evaluate_checkpoint

    r = evaluate_checkpoint(args.checkpoint, args.dataset, args.data_dir, args.device,
                        args.batch_size)
    if "test_ppl" in r:  # a language model
        print(f"{r['checkpoint']} (epoch {r['epoch']}) on {r['dataset']}: validation "
              f"perplexity {r['val_ppl']:.2f}  test perplexity {r['test_ppl']:.2f}")
        return 0
    print(f"{r['checkpoint']} (epoch {r['epoch']}) on the {r['images']} test images of "
          f"{r['dataset']}: top-1 {100 * r['top1']:.2f}%  top-5 {100 * r['top5']:.2f}%  "
          f"loss {r['loss']:.4f}")
    return 0


def _info_parser(sub) -> None:
    p = sub.add_parser(
        "info", help="parameters and FLOPs of a cell's network",
        description="Parameter count (auxiliary head excluded, as the papers count) and FLOPs "
                    "of one image (torch.utils.flop_counter; a multiply-add counts 2) of the "
                    "evaluation network of a genotype (default size: its space's paper's, "
                    + "; ".join(f"{name}: {cls.describe_sizes(**cls.evaluation_sizes)}"
                                for name, cls in SPACES.items())
                    + "; CIFAR-10 images) or of a trained checkpoint (its own size). Reads no "
                      "data except for --dataset folder.")
    p.add_argument("spec", metavar="GENOTYPE|CHECKPOINT")
    p.add_argument("--layers", type=int)
    p.add_argument("--channels", type=int)
    p.add_argument("--network", choices=["cifar", "imagenet"])
    p.add_argument("--dataset", choices=sorted(DATASETS),
                   help="take image channels, size and classes from this data set")
    p.add_argument("--data-dir", metavar="DIR", help="only read for --dataset folder")
    p.add_argument("--image-size", type=int, metavar="PIXELS")
    p.add_argument("--in-channels", type=int)
    p.add_argument("--classes", type=int)
    p.set_defaults(func=_cmd_info)


def _cmd_info(args: argparse.Namespace) -> int:
    from nasp.engine.checkpoints import model_info
    from nasp.engine.train_text import language_model_info

    lm = language_model_info(args.spec, layers=args.layers, channels=args.channels,
                             vocab=args.classes)
    if lm is not None:  # a recurrent cell's language model: parameters, no FLOPs per image
        config = lm["config"]
        sizes = space_of(lm["genotype"]).describe_sizes(config.layers, config.channels)
        print(lm["genotype"])
        print(f"language model, {sizes}, {lm['vocab']} words: {lm['parameters']:,} parameters "
              f"({lm['parameters'] / 1e6:.2f}M)")
        return 0
    info = model_info(args.spec, layers=args.layers, channels=args.channels,
                      network=args.network, dataset=args.dataset, data_dir=args.data_dir,
                      in_channels=args.in_channels, image_size=args.image_size,
                      num_classes=args.classes)
    config, shape = info["config"], info["shape"]
    print(info["genotype"])
    sizes = space_of(info["genotype"]).describe_sizes(config.layers, config.channels)
    print(f"{config.network} network, {sizes}, "
          f"{'x'.join(map(str, shape.input_shape))} input, {shape.num_classes} classes: "
          f"{info['parameters'] / 1e6:.2f}M parameters (auxiliary head excluded), "
          f"{count_si(info['flops'])} FLOPs per image ({count_si(info['flops'] / 2)} "
          f"multiply-adds)")
    return 0


def _export_parser(sub) -> None:
    p = sub.add_parser(
        "export", help="export a trained network to ONNX, TorchScript or torch.export",
        description="Write the network of a trained checkpoint (eval mode, no auxiliary head) "
                    "to a file that runs without nasp: onnx (needs the export extra), "
                    "torchscript or pt2 (torch.export). It takes normalised float32 images of "
                    "the trained size, any batch size; FILE.json records the shape, mean/std "
                    "and classes. A language model (nasp train CELL --dataset ptb) takes "
                    "(tokens, hidden) and returns (log_probs, new_hidden): torchscript windows "
                    "of any length, onnx and pt2 one time step per call.")
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument("--format", choices=FORMATS, required=True)
    p.add_argument("--out", metavar="FILE",
                   help="the model file (default: model.onnx / model.ts / model.pt2 next to "
                        "the checkpoint)")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    from nasp.apps.export import export_checkpoint

    path = export_checkpoint(args.checkpoint, args.format, args.out)
    print(f"wrote {path} ({args.format}) and {path.name}.json")
    return 0


def _plot_parser(sub) -> None:
    p = sub.add_parser(
        "plot", help="draw the pictures of a run directory",
        description="(Re)draw the pictures of a search or train run directory: cell diagrams "
                    "(graphviz dot when installed, else matplotlib), learning curves and, for a "
                    "search, the architecture weights. Needs the viz extra (matplotlib).")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--no-dot", action="store_true",
                   help="draw the cells with matplotlib even when graphviz is installed")
    p.set_defaults(func=_cmd_plot)


def _cmd_plot(args: argparse.Namespace) -> int:
    from nasp.engine.pictures import plot_run

    for path in plot_run(args.run_dir, use_dot=False if args.no_dot else None):
        print(path)
    return 0


def _report_parser(sub) -> None:
    p = sub.add_parser(
        "report", help="write the report.html of a run directory",
        description="(Re)write RUN_DIR/report.html, one self-contained page (no network, no "
                    "script) with the command and configuration, the cell, the learning curves, "
                    "for a search the architecture weights, benchmark accuracy and collapse "
                    "diagnostics over time, the timing and the environment; the pictures are "
                    "redrawn first (they need the viz extra, matplotlib). Works for runs of "
                    "older versions too.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    from nasp.engine.report import report_run

    print(report_run(args.run_dir))
    return 0


#: The runnable example every ``--help`` ends with: the command, and the command that makes
#: its input (None: it needs nothing but the built-in digits). Each new command adds one.
_TRAINED = "nasp train DARTS_V2 --preset tiny --out runs/digits"
EXAMPLES = {
    "nasp": ("nasp search --epochs 2 --out runs/first", None),
    "search": ("nasp search --strategy darts --epochs 2 --out runs/darts", None),
    "bench": ("nasp bench --layers 3 --channels 8 --batch-size 16 --image-size 16 --no-memory",
              None),
    "train": (_TRAINED, None),
    "test": ("nasp test runs/digits/last.pt", _TRAINED),
    "info": ("nasp info DARTS_V2 --layers 20 --channels 36", None),
    "export": ("nasp export runs/digits/last.pt --format torchscript --out digits.ts",
               _TRAINED),
    "plot": ("nasp plot runs/digits", _TRAINED),
    "report": ("nasp report runs/digits", _TRAINED),
    "compare": ("nasp compare --seeds 0 1 --preset tiny --train-preset tiny --out runs/cmp",
                None),
    "profile": ("nasp profile --device cpu --repeats 5 --out ops.json", None),
}


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's help, except that text laid out in lines (the example) keeps its lines."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" not in text:
            return super()._fill_text(text, width, indent)
        return "".join(indent + line for line in text.splitlines(keepends=True))


def _with_example(parser: argparse.ArgumentParser, name: str) -> None:
    """End ``parser``'s help with its example of :data:`EXAMPLES` (tests/test_cli.py checks
    that every command has one)."""
    if name not in EXAMPLES:
        return
    command, after = EXAMPLES[name]
    parser.formatter_class = _HelpFormatter
    parser.epilog = f"example (after: {after}):\n  {command}" if after else \
        f"example:\n  {command}"


def build_parser() -> argparse.ArgumentParser:
    from nasp import __version__

    parser = argparse.ArgumentParser(
        prog="nasp",
        description="NASP: neural architecture search by proximal iterations (Yao et al., 2020), "
                    "with DARTS baselines.")
    parser.add_argument("--version", action="version", version=f"nasp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _search_parser(sub)
    add_bench_parser(sub)
    _train_parser(sub)
    _test_parser(sub)
    _info_parser(sub)
    _export_parser(sub)
    _plot_parser(sub)
    _report_parser(sub)
    add_compare_parser(sub)
    add_profile_parser(sub)
    _with_example(parser, "nasp")
    for name, command in sub.choices.items():
        _with_example(command, name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # the exact command, for reports
    try:
        return args.func(args)
    except USER_ERRORS as err:
        print(f"nasp {args.command}: error: {err}", file=sys.stderr)
        return 2
    except RunInterrupted as err:
        if sys.stderr.isatty():
            print(file=sys.stderr)  # below the progress bar and the ^C
        print(f"nasp {args.command}: {err}; {_go_on(args, err)}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"nasp {args.command}: interrupted", file=sys.stderr)
        return 130


def _go_on(args: argparse.Namespace, err: RunInterrupted) -> str:
    """How to go on with a run stopped by Ctrl-C: the command that continues it."""
    resume = {"search": ["--resume", err.run_dir], "train": ["--resume", "--out", err.run_dir]}
    if args.command not in resume:
        return "run the same command again to go on (finished runs are reused)"
    if err.checkpoint is None:
        again = ["nasp", *args.argv]
        if getattr(args, "out", None) and not args.overwrite:
            again.append("--overwrite")
        return f"start it again with: {shlex.join(again)}"
    kept = [a for a in args.argv if a in ("--no-progress", "--no-plots", "--tensorboard")]
    return f"continue with: {shlex.join(['nasp', args.command, *resume[args.command], *kept])}"

if __name__ == "__main__":
    sys.exit(main())
