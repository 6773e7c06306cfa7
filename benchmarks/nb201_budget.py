"""Hard parameter budgets on NAS-Bench-201: NASP, DARTS and random search against the true
accuracy-versus-parameters Pareto front of the table.

1. Parameters of all 15,625 cells as ``nasp info`` counts them (the benchmark's network, N 5,
   C 16, CIFAR-10's 3x32x32 images and 10 classes), from the space's cost table (exactly
   additive; a few cells are checked against ``nasp.model_info``), and the table's CIFAR-10
   accuracy of each: the true front ``F(B) = max accuracy over cells with at most B
   parameters``.
2. A sweep of ``--max-params`` budgets from the cheapest cell to the unconstrained, several seeds
   each, for ``nasp`` (the constrained projection), ``darts`` (the budget-constrained
   derivation) and ``random-ws`` (random search with weight sharing, its candidates drawn within
   the budget; it never reads the table). Each found cell is scored by the table; its gap to
   the front is ``F(B) - accuracy``.

Writes ``results.json``, ``report.md`` and ``front.png`` to ``--out``. Every search runs as its
own ``nasp search`` process with one thread; finished runs in ``--work`` are reused.

    python benchmarks/nb201_budget.py --data-dir ../shared/data \\
        --benchmark ../shared/data/nas-bench-201/nb201-cifar10.csv --jobs 2

The search budget (``SEARCH``, small so that the sweep runs on a CPU): a 1,000-image
class-stratified CIFAR-10 subset, the benchmark's network at N 3 and C 8, 4 epochs.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SEARCH = ["--space", "nb201", "--dataset", "cifar10", "--subset", "1000", "--layers", "3",
          "--channels", "8", "--batch-size", "64", "--epochs", "4", "--device", "cpu"]
STRATEGIES = {"nasp": ["--strategy", "nasp"], "darts": ["--strategy", "darts"],
              "random-ws": ["--strategy", "random-ws"]}
#: the budgets, as fractions of the way from the cheapest cell to the largest
FRACTIONS = (0.0, 0.15, 0.3, 0.5, 0.75, 1.0)


def all_cells() -> list[tuple[str, int]]:
    """``(arch string, parameters)`` of every NAS-Bench-201 cell, as ``nasp info`` counts
    them."""
    from nasp import model_info
    from nasp.spaces import build_space

    space = build_space("nb201")
    table = space.cost_table("params", (3, 32, 32), 10)
    names = space.primitives["cell"]
    cells = []
    for ops in itertools.product(range(len(names)), repeat=6):
        arch = space.genotype_of({"cell": ops}).to_string()
        cells.append((arch, int(table.cost({"cell": ops}))))
    for arch, params in cells[:: 15625 // 3]:  # a few checked against nasp info
        assert model_info(arch, dataset="cifar10")["parameters"] == params, arch
    return cells


def read_table(path: str) -> dict[str, float]:
    with open(path, newline="") as f:
        return {row["arch"]: float(row["cifar10"]) for row in csv.DictReader(f)}


def front(cells: list[tuple[str, int]], acc: dict[str, float]) -> list[tuple[int, float]]:
    """The Pareto front: ``(parameters, best accuracy with at most that many)`` at each count
    where the best improves."""
    out: list[tuple[int, float]] = []
    for arch, params in sorted(cells, key=lambda c: (c[1], -acc.get(c[0], 0.0))):
        a = acc.get(arch)
        if a is not None and (not out or a > out[-1][1]):
            out.append((params, a))
    return out


def front_at(points: list[tuple[int, float]], budget: float) -> float:
    return max(a for p, a in points if p <= budget)


def run_one(strategy: str, budget: int, seed: int, args: argparse.Namespace) -> Path:
    out = Path(args.work) / f"{strategy}-b{budget}-s{seed}"
    if (out / "genotype.json").is_file():
        return out
    command = [sys.executable, "-m", "nasp", "search", *SEARCH, *STRATEGIES[strategy],
               "--max-params", str(budget), "--data-dir", args.data_dir, "--benchmark",
               args.benchmark, "--seed", str(seed), "--out", str(out), "--overwrite",
               "--no-progress", "--no-plots"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with open(out.with_suffix(".log"), "w") as log:
        done = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    print(f"{strategy} budget {budget} seed {seed}: exit {done.returncode} after "
          f"{time.time() - started:.0f} s", flush=True)
    return out


def summarise(args, budgets, points, params_of, acc) -> dict:
    rows = []
    for budget in budgets:
        best = front_at(points, budget)
        for strategy in args.strategies:
            runs = []
            for seed in args.seeds:
                path = Path(args.work) / f"{strategy}-b{budget}-s{seed}"
                if not (path / "genotype.json").is_file():
                    continue
                arch = json.loads((path / "genotype.json").read_text())["arch"]
                last = json.loads((path / "metrics.jsonl").read_text().splitlines()[-1])
                runs.append({"seed": seed, "arch": arch, "params": params_of[arch],
                             "accuracy": acc[arch], "gap": best - acc[arch],
                             "reported_cost": last["budget"]["cost"],
                             "cpu_seconds": sum(json.loads(x)["cpu_seconds"] for x in
                                                (path / "metrics.jsonl").read_text()
                                                .splitlines())})
                assert runs[-1]["params"] <= budget == last["budget"]["limit"], path
            rows.append({"budget": budget, "strategy": strategy, "front": best, "runs": runs,
                         "accuracy": statistics.mean(r["accuracy"] for r in runs) if runs
                         else None,
                         "gap": statistics.mean(r["gap"] for r in runs) if runs else None,
                         "params": statistics.mean(r["params"] for r in runs) if runs
                         else None})
    return {"search": SEARCH, "seeds": args.seeds, "budgets": budgets, "rows": rows,
            "front": points}


def report(results: dict, out: Path) -> str:
    lines = ["# Hard parameter budgets on NAS-Bench-201 (CIFAR-10)", "",
             "Search: `nasp search " + " ".join(results["search"]) + " --max-params B`, one "
             "thread each, seeds " + ", ".join(map(str, results["seeds"])) + ". Parameters: "
             "the found cell's benchmark network (N 5, C 16, CIFAR-10) as `nasp info` counts "
             "it. Front: the best table accuracy of any cell within the budget. Gap: front "
             "minus the found cell's accuracy (percentage points), mean over the seeds.", "",
             "| budget (params) | front (%) | strategy | runs | params (mean) | accuracy (%) | "
             "gap (pp) |", "|---|---|---|---|---|---|---|"]
    for row in results["rows"]:
        if not row["runs"]:
            continue
        lines.append(f"| {row['budget']:,} | {row['front']:.2f} | {row['strategy']} | "
                     f"{len(row['runs'])} | {row['params']:,.0f} | {row['accuracy']:.2f} | "
                     f"{row['gap']:.2f} |")
    lines += ["", "![accuracy against parameters: the table's cells, its front and the found "
              "cells](front.png)", ""]
    text = "\n".join(lines)
    (out / "report.md").write_text(text)
    return text


def plot(results: dict, cells, acc, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    xs = [p / 1e6 for a, p in cells if a in acc]
    ys = [acc[a] for a, p in cells if a in acc]
    ax.scatter(xs, ys, s=2, color="lightgrey", label="all 15,625 cells")
    pts = [*results["front"], (max(p for _, p in cells), results["front"][-1][1])]
    ax.step([p / 1e6 for p, _ in pts], [a for _, a in pts], where="post", color="black",
            linewidth=1, label="Pareto front")
    for strategy, marker in zip(STRATEGIES, "o^s"):
        runs = [r for row in results["rows"] if row["strategy"] == strategy for r in row["runs"]]
        if runs:
            ax.scatter([r["params"] / 1e6 for r in runs], [r["accuracy"] for r in runs],
                       marker=marker, s=25, label=strategy, alpha=0.8)
    for budget in results["budgets"]:
        ax.axvline(budget / 1e6, color="grey", linestyle=":", linewidth=0.8)
    ax.set_xlabel("parameters of the benchmark network (M); dotted: the budgets")
    ax.set_ylabel("CIFAR-10 accuracy in the table (%)")
    found = [r["accuracy"] for row in results["rows"] for r in row["runs"]]
    ax.set_ylim(bottom=min([80.0, *found]) - 2)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "front.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--benchmark", required=True, help="the NAS-Bench-201 CSV table")
    parser.add_argument("--strategies", nargs="+", choices=list(STRATEGIES),
                        default=list(STRATEGIES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--fractions", nargs="+", type=float, default=list(FRACTIONS))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--work", default="runs/nb201-budget", help="run directories")
    parser.add_argument("--out", default="benchmarks/nb201-budget", help="report folder")
    parser.add_argument("--report-only", action="store_true", help="run nothing")
    args = parser.parse_args()
    cells = all_cells()
    acc = read_table(args.benchmark)
    params_of = dict(cells)
    points = front(cells, acc)
    low, high = min(p for _, p in cells), max(p for _, p in cells)
    budgets = sorted({int(low + f * (high - low)) for f in args.fractions})
    if not args.report_only:
        jobs = [(s, b, seed) for seed in args.seeds for b in budgets for s in args.strategies]
        with ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(lambda job: run_one(*job, args), jobs))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = summarise(args, budgets, points, params_of, acc)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    plot(results, cells, acc, out)
    print(report(results, out))


if __name__ == "__main__":
    main()
