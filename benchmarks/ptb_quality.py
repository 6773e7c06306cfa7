"""Does NASP find good recurrent cells? NASP, DARTS and random search on Penn Treebank (CPU).

A reduced version of DARTS's recurrent-cell protocol that runs on 2 CPU cores: every strategy
searches the ``darts-rnn`` cell on the same budget for several seeds, then every found cell and
the built-in ``DARTS_V2_RNN`` are trained from scratch the same way, and each trained language
model is scored by ``nasp test`` (validation perplexity, batch 10; test perplexity, batch 1) and
``nasp info`` (parameters at the trained size). Writes ``results.json`` and ``report.md`` to
``--out``.

    python benchmarks/ptb_quality.py --data-dir ../shared/data --jobs 2

The budget (sized so that the whole protocol takes about 35 minutes of wall time with 2 jobs of
one thread each on the shared 2-core machine; see BENCHMARKS.md):

- search (:data:`SEARCH`): the space's ``cpu`` preset (1 cell, 64 units, batch 32, DARTS's search
  optimisers: SGD lr 20, clip 0.25; Adam 3e-3 for the architecture), the first ``SUBSET`` tokens
  of PTB's training split (the weights) and of its validation split (the architecture), a few
  epochs; random search draws one cell per epoch and trains it for one epoch from the same
  initial weights.
- training (:data:`TRAIN`): the ``ptb-cpu`` train preset (200 units, DARTS's training
  protocol: SGD lr 20 then averaged SGD, clip 0.25, its dropouts) on its first 100,000 training
  tokens, fewer epochs; the best epoch by validation perplexity (``best.pt``) is tested on the
  full validation and test splits.

Each step runs as its own ``nasp`` process with one thread (``OMP_NUM_THREADS=1``), ``--jobs`` at
a time; finished searches (``genotype.json``), trainings (``best.pt``) and scores (``score.json``)
in ``--work`` are reused, so the script can be stopped and run again.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SUBSET = 20_000  # tokens of train (weights) and of valid (architecture) the search sees
SEARCH = ["--space", "darts-rnn", "--dataset", "ptb", "--preset", "cpu",
          "--subset", str(SUBSET), "--epochs", "3", "--device", "cpu"]
TRAIN = ["--preset", "ptb-cpu", "--epochs", "1", "--device", "cpu"]

STRATEGIES = {"nasp": "NASP", "darts": "DARTS (1st order)", "random": "random search"}
BUILTIN = "DARTS_V2_RNN"  # trained with every seed, as a reference cell

_PPL = re.compile(r"validation perplexity ([0-9.]+|nan|inf)\s+test perplexity ([0-9.]+|nan|inf)")
_PARAMS = re.compile(r"([0-9,]+) parameters")


def _nasp(command: list[str], log: Path) -> tuple[int, float, str]:
    """Run ``nasp COMMAND`` with one thread; (exit code, wall seconds, output)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    started = time.time()
    done = subprocess.run([sys.executable, "-m", "nasp", *command], env=env,
                          capture_output=True, text=True)
    seconds = time.time() - started
    log.write_text(done.stdout + done.stderr)
    return done.returncode, seconds, done.stdout


def search(strategy: str, seed: int, args: argparse.Namespace) -> Path:
    """One search (skipped when its run directory already holds a finished search)."""
    out = Path(args.work) / f"search-{strategy}-s{seed}"
    if not (out / "genotype.json").is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        code, seconds, _ = _nasp(
            ["search", *SEARCH, "--strategy", strategy, "--data-dir", args.data_dir, "--seed",
             str(seed), "--out", str(out), "--overwrite", "--no-progress", "--no-plots"],
            out.with_suffix(".log"))
        print(f"search {strategy} seed {seed}: exit {code} after {seconds:.0f} s", flush=True)
    return out


def train_and_score(name: str, cell: str, seed: int, args: argparse.Namespace) -> None:
    """Train ``cell`` (a search run directory or a built-in name) from scratch, then score it
    with ``nasp test`` and ``nasp info``; each part skipped when already done."""
    out = Path(args.work) / f"train-{name}-s{seed}"
    score = out / "score.json"
    if score.is_file():
        return
    if not (out / "best.pt").is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        code, seconds, _ = _nasp(
            ["train", cell, *TRAIN, "--data-dir", args.data_dir, "--seed", str(seed), "--out",
             str(out), "--overwrite", "--no-progress", "--no-plots"], out.with_suffix(".log"))
        print(f"train {name} seed {seed}: exit {code} after {seconds:.0f} s", flush=True)
        if code:
            return
        (out / "train_seconds.json").write_text(json.dumps({"seconds": seconds}))
    code, seconds, text = _nasp(["test", str(out / "best.pt"), "--data-dir", args.data_dir],
                                out.with_suffix(".test.log"))
    ppl = _PPL.search(text)
    code_i, _, info = _nasp(["info", str(out / "best.pt")], out.with_suffix(".info.log"))
    params = _PARAMS.search(info)
    if code or code_i or ppl is None or params is None:
        print(f"score {name} seed {seed}: failed (see {out}.test.log, {out}.info.log)",
              flush=True)
        return
    score.write_text(json.dumps({"val_ppl": float(ppl.group(1)), "test_ppl": float(ppl.group(2)),
                                 "parameters": int(params.group(1).replace(",", "")),
                                 "test_seconds": seconds}) + "\n")
    print(f"score {name} seed {seed}: val {ppl.group(1)} test {ppl.group(2)} "
          f"({seconds:.0f} s)", flush=True)


def pipeline(strategy: str, seed: int, args: argparse.Namespace) -> None:
    run = search(strategy, seed, args)
    if (run / "genotype.json").is_file():
        train_and_score(strategy, str(run), seed, args)


def read_search(path: Path) -> dict | None:
    if not (path / "genotype.json").is_file():
        return None
    epochs = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    genotype = json.loads((path / "genotype.json").read_text())
    return {"seconds": sum(e["seconds"] for e in epochs),
            "cpu_seconds": sum(e["cpu_seconds"] for e in epochs),
            "genotype": genotype.get("recurrent", genotype)}


def read_score(path: Path) -> dict | None:
    score = path / "score.json"
    if not score.is_file():
        return None
    result = json.loads(score.read_text())
    seconds = path / "train_seconds.json"
    if seconds.is_file():
        result["train_seconds"] = json.loads(seconds.read_text())["seconds"]
    return result


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else None


def unigram_perplexities(data_dir: str) -> dict[str, float]:
    """Validation and test perplexity of a unigram model (word counts of PTB's training split):
    the level a language model reaches by learning word frequencies alone."""
    import collections
    import math

    def words(split: str) -> list[str]:
        lines = (Path(data_dir) / "penn" / f"{split}.txt").read_text().splitlines()
        return [w for line in lines for w in [*line.split(), "<eos>"]]

    counts = collections.Counter(words("train"))
    total = sum(counts.values())
    return {name: math.exp(-statistics.fmean(math.log(counts[w] / total) for w in words(split)))
            for name, split in (("val_ppl", "valid"), ("test_ppl", "test"))}


def summarise(args: argparse.Namespace) -> dict:
    work = Path(args.work)
    rows = {}
    for name in [*args.strategies, BUILTIN]:
        runs = {}
        for seed in args.seeds:
            found = None if name == BUILTIN else read_search(work / f"search-{name}-s{seed}")
            score = read_score(work / f"train-{name}-s{seed}")
            if score is None and found is None:
                continue
            runs[seed] = {**(score or {}), **({"search": found} if found else {})}
        scored = [r for r in runs.values() if "test_ppl" in r]
        searched = [r["search"] for r in runs.values() if "search" in r]
        rows[name] = {
            "label": STRATEGIES.get(name, f"{BUILTIN} (built-in, not searched)"), "runs": runs,
            "val_ppl": mean_std([r["val_ppl"] for r in scored]),
            "test_ppl": mean_std([r["test_ppl"] for r in scored]),
            "parameters": mean_std([r["parameters"] for r in scored]),
            "search_seconds": mean_std([s["seconds"] for s in searched]),
            "search_cpu_seconds": mean_std([s["cpu_seconds"] for s in searched]),
        }
    ratio = None
    if all(rows.get(k, {}).get("search_cpu_seconds", (None,))[0] for k in ("nasp", "darts")):
        ratio = rows["nasp"]["search_cpu_seconds"][0] / rows["darts"]["search_cpu_seconds"][0]
    return {"search": SEARCH, "train": TRAIN, "seeds": args.seeds, "rows": rows,
            "nasp_over_darts_search_cpu": ratio, "unigram": unigram_perplexities(args.data_dir)}


def fmt(pair: tuple[float | None, float | None], digits: int = 1, scale: float = 1.0) -> str:
    m, s = pair
    if m is None:
        return "-"
    return f"{m / scale:.{digits}f}" + ("" if s is None else f" ± {s / scale:.{digits}f}")


def report(results: dict, out: Path) -> str:
    lines = ["# NASP, DARTS and random search on Penn Treebank (recurrent cell, CPU budget)", "",
             "Search: `nasp search " + " ".join(results["search"]) + " --strategy S --seed N`; "
             "training: `nasp train CELL " + " ".join(results["train"]) + " --seed N`; then "
             "`nasp test RUN/best.pt` (validation perplexity at batch 10, test perplexity at "
             "batch 1, full splits) and `nasp info RUN/best.pt`. One thread per process. Mean ± "
             "sample std over the seeds " + ", ".join(map(str, results["seeds"])) + ". Search "
             "CPU time: the search process's CPU seconds over its epochs (wall time is "
             "inflated by other jobs on the shared machine).", "",
             "| cell | runs | val ppl | test ppl | parameters (M) | search CPU (s) | "
             "search wall (s) |", "|---|---|---|---|---|---|---|"]
    for row in results["rows"].values():
        n = sum("test_ppl" in r for r in row["runs"].values())
        lines.append(f"| {row['label']} | {n} | {fmt(row['val_ppl'])} | {fmt(row['test_ppl'])} "
                     f"| {fmt(row['parameters'], 3, 1e6)} | {fmt(row['search_cpu_seconds'], 0)} "
                     f"| {fmt(row['search_seconds'], 0)} |")
    ratio = results["nasp_over_darts_search_cpu"]
    if ratio is not None:
        lines += ["", f"NASP's search CPU time over DARTS's: {ratio:.2f} "
                      f"({1 / ratio:.1f}x less)."]
    u = results["unigram"]
    lines += ["", f"For scale: a unigram model (the word counts of the training split) has "
                  f"validation perplexity {u['val_ppl']:.1f} and test perplexity "
                  f"{u['test_ppl']:.1f}."]
    lines += ["", "## Runs", "", "| cell | seed | val ppl | test ppl | search CPU (s) | "
              "found cell (node <- op(input)) |", "|---|---|---|---|---|---|"]
    for name, row in results["rows"].items():
        for seed, r in row["runs"].items():
            s = r.get("search")
            cell = (" ".join(f"{i + 1}<-{op}({j})" for i, (op, j) in enumerate(s["genotype"]))
                    if s else "built-in")
            lines.append(f"| `{name}` | {seed} | {r.get('val_ppl', '-')} | "
                         f"{r.get('test_ppl', '-')} | "
                         f"{'-' if not s else round(s['cpu_seconds'])} | {cell} |")
    text = "\n".join(lines) + "\n"
    (out / "report.md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--strategies", nargs="+", choices=list(STRATEGIES),
                        default=list(STRATEGIES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--work", default="runs/ptb-quality", help="run directories")
    parser.add_argument("--out", default="benchmarks/ptb-quality", help="report folder")
    parser.add_argument("--report-only", action="store_true", help="run nothing")
    args = parser.parse_args()
    if not args.report_only:
        # the slowest searches first, so that the two job slots finish together
        jobs = [(s, seed) for s in ("darts", "nasp", "random") if s in args.strategies
                for seed in args.seeds]
        with ThreadPoolExecutor(args.jobs) as pool:
            futures = [pool.submit(pipeline, s, seed, args) for s, seed in jobs]
            futures += [pool.submit(train_and_score, BUILTIN, BUILTIN, seed, args)
                        for seed in args.seeds]
            for f in futures:
                f.result()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = summarise(args)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(report(results, out))


if __name__ == "__main__":
    main()
