"""The ``nasp`` command: parse arguments into a config, call the library, print.

Errors a user can fix (a missing data set, a bad option, a used output directory) are printed as
one paragraph on stderr with exit code 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from nasp.config import PRESETS, ConfigError, load_config, preset
from nasp.data import DATASETS, DatasetError
from nasp.genotype import GenotypeError
from nasp.ops import PRIMITIVE_SETS
from nasp.runs import RunDirError
from nasp.spaces import SPACES
from nasp.strategies import STRATEGIES

USER_ERRORS = (ConfigError, DatasetError, GenotypeError, RunDirError)


def _search_parser(sub) -> None:
    p = sub.add_parser(
        "search", help="search a cell architecture",
        description="Search a cell architecture with NASP (or a DARTS baseline). With no options "
                    "it searches on the built-in 8x8 digits in a minute or two on a CPU. Options "
                    "left out take the preset's value.")
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu",
                   help="starting configuration: tiny (seconds), cpu (default), paper (CIFAR-10, "
                        "8 cells, C 16, 50 epochs)")
    p.add_argument("--config", metavar="FILE",
                   help="start from a config.yaml (e.g. RUN_DIR/config.yaml) instead of a preset")
    p.add_argument("--strategy", choices=sorted(STRATEGIES))
    p.add_argument("--space", choices=sorted(SPACES))
    p.add_argument("--dataset", choices=sorted(DATASETS))
    p.add_argument("--data-dir", metavar="DIR", help="where the data set lives (or goes)")
    p.add_argument("--subset", type=int, metavar="N",
                   help="use only the first N training images (split in two halves)")
    p.add_argument("--primitives", choices=sorted(PRIMITIVE_SETS),
                   help="candidate op set (default darts-7)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--layers", type=int, help="cells in the supernet")
    p.add_argument("--channels", type=int, help="initial channels C")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--cutout", type=int, metavar="PIXELS", help="cutout size (0 = off)")
    p.add_argument("--size-penalty", type=float, metavar="LAMBDA",
                   help="NASP model-size regulariser weight lambda (default 0)")
    p.add_argument("--arch-mode", choices=["sparse", "reference"],
                   help="NASP architecture step: sparse (fast, default) or reference (every op "
                        "with autograd, as the original code)")
    p.add_argument("--init-noise", type=float, metavar="STD",
                   help="NASP: noise added to the initial A = 0.5 to break ties (default 0)")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--out", metavar="RUN_DIR", help="run directory (default runs/search-...)")
    p.add_argument("--overwrite", action="store_true",
                   help="allow --out to name a directory that already holds a run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_search)


def _cmd_search(args: argparse.Namespace) -> int:
    from nasp.loops.search import search

    overrides = {
        name: getattr(args, name)
        for name in ("strategy", "space", "dataset", "data_dir", "subset", "primitives",
                     "epochs", "layers", "channels", "batch_size", "cutout", "size_penalty",
                     "arch_mode", "init_noise", "seed", "device", "out")
    }
    if args.config:
        config = load_config(args.config).replace(**overrides)
    else:
        config = preset(args.preset, **overrides)
    search(config, overwrite=args.overwrite, progress=not args.no_progress)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nasp",
        description="NASP: neural architecture search by proximal iterations (Yao et al., 2020), "
                    "with DARTS baselines.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _search_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as err:
        print(f"nasp {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nasp {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
