"""Compare two sets of run directories written by ``run.sh``.

Every tensor of every checkpoint bit for bit, genotypes, metrics (timing fields dropped) and
``config.yaml`` (keys the newer version no longer writes are allowed; for a search, the older file
read by the newer code must equal the newer one). Paths of the two output folders are made
equal before comparing. Prints ``ALL SAME`` or each difference.

usage: python benchmarks/identical_results/compare.py BEFORE_DIR AFTER_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
import yaml

TIMING = ("time", "second", "elapsed", "throughput", "images_per_s", "step_ms")


def same(a: Any, b: Any, where: str, roots: tuple[str, str]) -> bool:
    """Whether ``a`` (before) and ``b`` (after) agree; prints what differs."""
    if isinstance(a, torch.Tensor):
        ok = (isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype
              and torch.equal(a, b))
        if not ok:
            print("DIFF tensor", where)
        return ok
    if isinstance(a, dict):
        ok = isinstance(b, dict)
        for key in a if ok else ():
            if any(t in str(key) for t in TIMING):
                continue
            if key not in b:
                if where.endswith(("config", "config.yaml")):
                    continue  # an option the newer version no longer writes (checked elsewhere)
                print("MISSING", where, key)
                ok = False
                continue
            ok &= same(a[key], b[key], f"{where}.{key}", roots)
        return ok
    if isinstance(a, (list, tuple)):
        if not isinstance(b, (list, tuple)) or len(a) != len(b):
            print("DIFF length", where)
            return False
        return all([same(x, y, f"{where}[{i}]", roots) for i, (x, y) in enumerate(zip(a, b))])
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True  # both NaN
    if isinstance(a, str) and isinstance(b, str):
        a, b = a.replace(roots[0], "ROOT"), b.replace(roots[1], "ROOT")
    if a != b:
        print("DIFF", where, repr(a)[:80], repr(b)[:80])
        return False
    return True


def compare_file(f: Path, g: Path, name: str, roots: tuple[str, str]) -> bool:
    if f.suffix == ".pt":
        return same(torch.load(f, weights_only=False), torch.load(g, weights_only=False), name,
                    roots)
    if f.suffix == ".jsonl":
        return same([json.loads(line) for line in f.read_text().splitlines()],
                    [json.loads(line) for line in g.read_text().splitlines()], name, roots)
    if f.suffix == ".json":
        return same(json.loads(f.read_text()), json.loads(g.read_text()), name, roots)
    if f.name == "config.yaml":
        before, after = yaml.safe_load(f.read_text()), yaml.safe_load(g.read_text())
        ok = same(before, after, name, roots) and set(after) <= set(before)
        if name.startswith("s-"):  # a search's: the older file read by the newer code
            from nasp.config import load_config

            ok = ok and load_config(f).replace(out="x") == load_config(g).replace(out="x")
        return ok
    return f.read_text().replace(roots[0], "ROOT") == g.read_text().replace(roots[1], "ROOT")


def main(before: Path, after: Path) -> bool:
    roots = (str(before), str(after))
    all_same = True
    for run in sorted(p for p in before.iterdir() if p.is_dir()):
        for f in sorted(run.iterdir()):
            if f.name == "environment.json":
                continue
            name = f"{run.name}/{f.name}"
            if f.name == "best.pt" and not (after / run.name / f.name).exists():
                print(f"absent {name} (a training without a validation split keeps none)")
                continue
            ok = compare_file(f, after / run.name / f.name, name, roots)
            print(("same " if ok else "DIFF ") + name)
            all_same &= ok
    print("ALL SAME" if all_same else "DIFFERENCES")
    return all_same


if __name__ == "__main__":
    sys.exit(0 if main(Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()) else 1)
