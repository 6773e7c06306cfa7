"""Does NASP find good cells? NASP, DARTS and random search on NAS-Bench-201, scored by the table.

Every variant searches the NAS-Bench-201 cell on CIFAR-10 on the same budget (below), for several
seeds; the found cell is scored by looking it up in the benchmark table (its 200-epoch CIFAR-10
test accuracy), never by training it. Writes ``results.json``, ``report.md`` and
``convergence.png`` (benchmark accuracy of the current cell against search CPU time) to ``--out``.

The budget (one NASP search takes about 5 minutes on one core): CIFAR-10, a 5,000-image
class-stratified subset (2,500 images train the weights, 2,500 the architecture), the benchmark's
network with N 3 cells per stage and C 8, batch 64, 10 epochs. Each search runs as its own
``nasp search`` process with one thread (``OMP_NUM_THREADS=1``), ``--jobs`` at a time; finished
runs in ``--work`` are reused, so the script can be stopped and run again.

    python benchmarks/nb201_quality.py --data-dir ../shared/data \\
        --benchmark ../shared/data/nas-bench-201/nb201-cifar10.csv --jobs 2

The variants (``--variants`` picks some; ``--seeds`` the seeds):

- ``nasp-faithful``: ``--preset faithful``, the paper's algorithm and hyperparameters.
- ``nasp``: NASP at the library's defaults; on NAS-Bench-201 the same search as ``faithful``
  (the two differ only in the returned cell on the DARTS space), so it is not run by default.
- ``nasp-warmup3``, ``nasp-warmup8``: a warm-up of sampled paths before NASP.
- ``nasp-frozen``, ``nasp-alr3e-3``, ``nasp-pathmix``, ``nasp-pathmix1``, ``nasp-centered``: the
  3-epoch warm-up and one more option each (ablations, run when named).
- ``nasp-plain``: the 3-epoch warm-up with the plain proximal gradient step (Algorithm 1; RQ2).
- ``darts``, ``darts2``: DARTS first and second order (their paper's settings).
- ``random-ws``: random search with weight sharing (supernet trained through sampled paths,
  50 candidates scored by their validation accuracy with the shared weights).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BUDGET = ["--space", "nb201", "--dataset", "cifar10", "--subset", "5000", "--layers", "3",
          "--channels", "8", "--batch-size", "64", "--epochs", "10", "--device", "cpu"]

W3 = ["--warmup-epochs", "3"]  # a warm-up of 30% of the epochs

VARIANTS: dict[str, tuple[str, list[str]]] = {
    "nasp-faithful": ("NASP, faithful (paper and released code)", ["--preset", "faithful"]),
    "nasp": ("NASP, library defaults (on NB201 the same search as faithful)", []),
    "nasp-warmup3": ("NASP, warm-up 3 epochs", W3),
    "nasp-warmup8": ("NASP, warm-up 8 epochs", ["--warmup-epochs", "8"]),
    "nasp-frozen": ("NASP, warm-up 3, unselected weights frozen",
                    [*W3, "--unselected-weights", "frozen"]),
    "nasp-alr3e-3": ("NASP, warm-up 3, architecture lr 3e-3", [*W3, "--a-lr", "3e-3"]),
    "nasp-pathmix": ("NASP, warm-up 3, half the weight steps on drawn paths",
                     [*W3, "--path-mix", "0.5"]),
    "nasp-pathmix1": ("NASP, warm-up 3, every weight step on a drawn path",
                      [*W3, "--path-mix", "1"]),
    "nasp-centered": ("NASP, warm-up 3, centered architecture gradient",
                      [*W3, "--arch-grad", "centered"]),
    "nasp-plain": ("NASP, warm-up 3, plain proximal gradient (Algorithm 1)",
                   [*W3, "--arch-update", "plain"]),
    "darts": ("DARTS first order", ["--strategy", "darts"]),
    "darts2": ("DARTS second order", ["--strategy", "darts2"]),
    "random-ws": ("random search, weight sharing", ["--strategy", "random-ws"]),
}


#: the strategies drawn in convergence.png
PLOTTED = ("nasp-faithful", "nasp", "nasp-warmup3", "nasp-plain", "darts", "darts2", "random-ws")


def run_one(name: str, seed: int, args: argparse.Namespace) -> Path:
    """One search (skipped when its run directory already holds a finished search)."""
    out = Path(args.work) / f"{name}-s{seed}"
    if (out / "genotype.json").is_file():
        return out
    command = [sys.executable, "-m", "nasp", "search", *BUDGET, *VARIANTS[name][1],
               "--data-dir", args.data_dir, "--benchmark", args.benchmark, "--seed", str(seed),
               "--out", str(out), "--overwrite", "--no-progress", "--no-plots"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with open(out.with_suffix(".log"), "w") as log:
        done = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    print(f"{name} seed {seed}: exit {done.returncode} after {time.time() - started:.0f} s",
          flush=True)
    return out


def read_run(path: Path) -> dict | None:
    """The epochs of a finished run, or None."""
    if not (path / "genotype.json").is_file():
        return None
    epochs = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    return {"epochs": epochs, "genotype": json.loads((path / "genotype.json").read_text())}


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else None


def summarise(args: argparse.Namespace) -> dict:
    rows = {}
    for name in args.variants:
        runs = {}
        for seed in args.seeds:
            run = read_run(Path(args.work) / f"{name}-s{seed}")
            if run is None:
                continue
            e = run["epochs"]
            corr = [r["diagnostics"]["op_correlation"]["mean"] for r in e
                    if r["diagnostics"]["op_correlation"]["mean"] is not None]
            # NASP: the cell after the first epoch with architecture steps, and the last
            # epoch's flips and margin (how decided the choice is)
            searched = [r for r in e if "nasp" in r and not r["nasp"]["warmup"]]
            runs[seed] = {
                "benchmark_acc": 100 * e[-1]["benchmark_acc"],
                "percentile": e[-1]["benchmark_percentile"],
                "arch": run["genotype"]["arch"],
                "seconds": sum(r["seconds"] for r in e),
                "cpu_seconds": sum(r["cpu_seconds"] for r in e),
                "op_correlation": statistics.mean(corr) if corr else None,
                "curve": [(sum(r["cpu_seconds"] for r in e[:i + 1]), 100 * r["benchmark_acc"])
                          for i, r in enumerate(e)],
                "cells": e[-1].get("cells"),
                "first_searched_acc": (100 * searched[0]["benchmark_acc"]) if searched else None,
                "last_flips": searched[-1]["nasp"]["flips"] if searched else None,
                "last_margin": searched[-1]["nasp"]["margin"] if searched else None,
                "param_free": e[-1]["diagnostics"]["param_free"]["total"],
            }
        accs = [r["benchmark_acc"] for r in runs.values()]
        rows[name] = {
            "label": VARIANTS[name][0], "options": VARIANTS[name][1], "runs": runs,
            "benchmark_acc": mean_std(accs),
            "percentile": mean_std([r["percentile"] for r in runs.values()]),
            "cpu_seconds": mean_std([r["cpu_seconds"] for r in runs.values()]),
            "seconds": mean_std([r["seconds"] for r in runs.values()]),
            "op_correlation": mean_std([r["op_correlation"] for r in runs.values()
                                        if r["op_correlation"] is not None]),
            "first_searched_acc": mean_std([r["first_searched_acc"] for r in runs.values()
                                            if r["first_searched_acc"] is not None]),
        }
    return {"budget": BUDGET, "seeds": args.seeds, "variants": rows}


def fmt(pair: tuple[float | None, float | None], digits: int = 2) -> str:
    m, s = pair
    if m is None:
        return "-"
    return f"{m:.{digits}f}" + ("" if s is None else f" ± {s:.{digits}f}")


def report(results: dict, out: Path) -> str:
    lines = ["# NASP, DARTS and random search on NAS-Bench-201 (CIFAR-10), scored by the table",
             "", "Budget: `nasp search " + " ".join(results["budget"]) + "`, one thread per "
             "search. Benchmark accuracy: the found cell's 200-epoch CIFAR-10 test accuracy in "
             "the NAS-Bench-201 table; percentile: the share of the table's 15,625 cells at or "
             "below it. Mean ± sample std over the seeds. CPU time: the search process's CPU "
             "seconds over the epochs (wall time is inflated where more searches than cores "
             "ran at once). op corr: the mean correlation of the candidate ops' outputs per "
             "edge over the search (collapse diagnostics). After 1st searched epoch: NASP's "
             "cell at the end of its first epoch with architecture steps.", "",
             "| variant | seeds | benchmark acc (%) | percentile | search CPU (s) | "
             "search wall (s) | op corr | after 1st searched epoch (%) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, row in results["variants"].items():
        if not row["runs"]:
            continue
        lines.append(f"| {row['label']} (`{name}`) | {len(row['runs'])} | "
                     f"{fmt(row['benchmark_acc'])} | {fmt(row['percentile'], 1)} | "
                     f"{fmt(row['cpu_seconds'], 0)} | {fmt(row['seconds'], 0)} | "
                     f"{fmt(row['op_correlation'])} | {fmt(row['first_searched_acc'])} |")
    lines += ["", "## Runs", "",
              "| variant | seed | benchmark acc (%) | percentile | param-free edges | "
              "last epoch: flips, margin | cell |", "|---|---|---|---|---|---|---|"]
    for name, row in results["variants"].items():
        for seed, r in row["runs"].items():
            decided = ("-" if r["last_flips"] is None
                       else f"{r['last_flips']}, {r['last_margin']:.4f}")
            lines.append(f"| `{name}` | {seed} | {r['benchmark_acc']:.2f} | "
                         f"{r['percentile']:.1f} | {r['param_free']}/6 | {decided} | "
                         f"`{r['arch'].replace('|', chr(92) + '|')}` |")
    lines += ["", "![benchmark accuracy of the current cell against search CPU time]"
              "(convergence.png)", ""]
    text = "\n".join(lines)
    (out / "report.md").write_text(text)
    return text


def plot(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for name, row in results["variants"].items():
        if name not in PLOTTED:  # the ablations stay in the tables
            continue
        curves = [r["curve"] for r in row["runs"].values()]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        t = [statistics.mean(c[i][0] for c in curves) for i in range(n)]
        a = [statistics.mean(c[i][1] for c in curves) for i in range(n)]
        ax.plot(t, a, marker="o", markersize=3, label=f"{name} (n={len(curves)})")
    ax.axhline(94.37, color="grey", linestyle=":", linewidth=1, label="optimum 94.37")
    ax.axhline(87.06, color="grey", linestyle="--", linewidth=1, label="mean cell 87.06")
    ax.set_xlabel("search CPU time (s), mean over seeds")
    ax.set_ylabel("benchmark accuracy of the current cell (%)")
    ax.set_ylim(bottom=50)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "convergence.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--benchmark", required=True, help="the NAS-Bench-201 CSV table")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS),
                        default=["nasp-faithful", "nasp-warmup3", "darts", "random-ws",
                                 "nasp-plain", "darts2"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--work", default="runs/nb201-quality", help="run directories")
    parser.add_argument("--out", default="benchmarks/nb201-quality", help="report folder")
    parser.add_argument("--report-only", action="store_true", help="run nothing")
    args = parser.parse_args()
    if not args.report_only:
        jobs = [(name, seed) for seed in args.seeds for name in args.variants]
        with ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(lambda job: run_one(*job, args), jobs))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = summarise(args)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    plot(results, out)
    print(report(results, out))


if __name__ == "__main__":
    main()
