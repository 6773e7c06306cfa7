"""Which cell should NASP return on the DARTS space: the trained child at prox_C1(A), or the
reference code's softmax derivation? Searches, then trains both cells from scratch the same way.

On NAS-Bench-201 the two are always the same cell (every edge is kept), so this question only
exists on the DARTS space, where the projection ranks a node's incoming edges by the raw maximum
of A and the derivation by the maximum of softmax(A). For each seed: ``nasp search`` (the
defaults: digits, 5 cells, C 8, 12 epochs), then, when the two cells differ, ``nasp train`` of
each (the ``quick`` preset) and its test accuracy.

    python benchmarks/returned_cell.py --seeds 0 1 2 --out benchmarks/returned-cell
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path


def nasp(*args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "nasp", *args], env=env, check=True,
                   stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--work", default="runs/returned-cell")
    parser.add_argument("--out", default="benchmarks/returned-cell")
    args = parser.parse_args()
    work, out = Path(args.work), Path(args.out)
    rows = []
    for seed in args.seeds:
        run = work / f"search-s{seed}"
        if not (run / "genotypes.json").is_file():
            nasp("search", "--seed", str(seed), "--out", str(run), "--overwrite",
                 "--no-progress", "--no-plots")
        cells = json.loads((run / "genotypes.json").read_text())
        row = {"seed": seed, "cells": {k: v["genotype"] for k, v in cells.items()}}
        row["differ"] = cells["projection"]["genotype"] != cells["softmax"]["genotype"]
        if row["differ"]:
            for name in ("projection", "softmax"):
                cell = work / f"s{seed}-{name}.json"
                cell.write_text(json.dumps(cells[name]["genotype"]))
                trained = work / f"train-s{seed}-{name}"
                metrics = trained / "metrics.jsonl"
                if not (trained / "genotype.json").is_file() or not metrics.is_file():
                    nasp("train", str(cell), "--seed", str(seed), "--out", str(trained),
                         "--overwrite", "--no-progress")
                last = json.loads(metrics.read_text().splitlines()[-1])
                row[f"{name}_test_acc"] = last["test_acc"]  # the last epoch's
        rows.append(row)
        print(json.dumps(row), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
