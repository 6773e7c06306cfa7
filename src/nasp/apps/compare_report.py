"""The report of ``nasp compare``: per-strategy summaries (mean +- std, best), ``report.md`` and
the accuracy-against-time plot, from the rows of its runs and its plan (a
:class:`~nasp.apps.compare.ComparePlan`). What is compared is a :class:`FinalMeasure`: the final
accuracy of image cells (:data:`ACCURACY`, higher is better), or the test perplexity of a
recurrent cell's language model (:data:`PERPLEXITY`, lower is better)."""

from __future__ import annotations

import io
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasp.runtime.atomic import atomic_write_bytes
from nasp.runtime.extras import require
from nasp.spaces import genotype_from_dict

__all__ = ["ACCURACY", "PERPLEXITY", "FinalMeasure", "plot_accuracy_vs_time", "report_markdown",
           "summarise"]


@dataclass(frozen=True)
class FinalMeasure:
    """What a comparison measures per run: the rows' ``key``, its name in the report (``unit``
    appended to column titles), the factor it is shown with, its digits, and its direction."""

    key: str
    name: str
    unit: str
    scale: float
    digits: int
    higher_is_better: bool

    def show(self, value: float | None) -> str:
        return "n/a" if value is None else f"{self.scale * value:.{self.digits}f}"

    def title(self, text: str) -> str:
        """A column title: ``text`` and the unit (``final accuracy (%)``)."""
        return f"{text} ({self.unit})" if self.unit else text


#: image cells: test top-1 accuracy (or a benchmark table's), in %, higher is better
ACCURACY = FinalMeasure("final_accuracy", "final accuracy", "%", 100.0, 2, True)
#: recurrent cells: the language model's test perplexity, lower is better
PERPLEXITY = FinalMeasure("final_ppl", "final test perplexity", "", 1.0, 2, False)


def summarise(rows: Sequence[dict[str, Any]], measure: FinalMeasure = ACCURACY
              ) -> list[dict[str, Any]]:
    """Per strategy (in order of appearance): its op set, runs, mean and sample standard
    deviation (n - 1; None for one run) of the final ``measure`` (``<key>_mean``,
    ``<key>_std``), search time and parameters, and the best run (``best_seed``,
    ``best_<key>``: the highest accuracy, the lowest perplexity).
    Runs without a final value (not in the benchmark table) count in ``runs`` only."""
    out = []
    key, sign = measure.key, 1 if measure.higher_is_better else -1
    for strategy in dict.fromkeys(r["strategy"] for r in rows):
        mine = [r for r in rows if r["strategy"] == strategy]
        scored = [r for r in mine if r.get(key) is not None]
        best = max(scored, key=lambda r: sign * r[key], default=None)
        params = [r["parameters"] for r in mine if r["parameters"] is not None]
        out.append({
            "strategy": strategy, "primitives": mine[0]["primitives"], "runs": len(mine),
            "scored": len(scored),
            **_stats(key, [r[key] for r in scored]),
            **_stats("search_seconds", [r["search_seconds"] for r in mine]),
            **_stats("search_cpu_seconds", [r["search_cpu_seconds"] for r in mine]),
            **_stats("parameters", params),
            "best_seed": None if best is None else best["seed"],
            f"best_{key}": None if best is None else best[key],
        })
    return out


def _stats(name: str, values: Sequence[float]) -> dict[str, float | None]:
    return {f"{name}_mean": statistics.fmean(values) if values else None,
            f"{name}_std": statistics.stdev(values) if len(values) > 1 else None}


def _mean_std(s: dict[str, Any], name: str, scale: float = 1.0, digits: int = 2) -> str:
    mean, std = s[f"{name}_mean"], s[f"{name}_std"]
    if mean is None:
        return "n/a"
    return f"{scale * mean:.{digits}f}" + ("" if std is None else f" ± {scale * std:.{digits}f}")


def _params(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 1e6:.3f}"


def report_markdown(plan: Any, rows: Sequence[dict[str, Any]], plot: str) -> str:
    """The text of ``report.md``; ``plot`` is the picture's file name, or a note why there is
    none."""
    m = getattr(plan, "measure", ACCURACY)
    summary = summarise(rows, m)
    name = m.name[0].upper() + m.name[1:]
    lines = ["# nasp compare", ""]
    if plan.command:
        lines += ["Command:", "", "```", plan.command, "```", ""]
    lines += [f"Strategies {', '.join(plan.strategies)}; seeds "
              f"{', '.join(map(str, plan.seeds))}; {len(rows)} of "
              f"{len(plan.strategies) * len(plan.seeds)} runs finished.", "",
              f"**{name}** = {plan.final_metric}. **Search time** = wall-clock seconds "
              f"of the whole search (data loading, supernet, epochs); **search CPU** = CPU "
              f"seconds of the search process, all threads. **Parameters** = the trained child "
              f"network's, auxiliary head excluded, in millions.", "",
              "## Per strategy", "",
              "mean ± sample standard deviation over the seeds (n - 1; none shown for one "
              f"run), and the best run by {m.name}.", "",
              f"| strategy | primitives | runs | {m.title(m.name)} | {m.title('best')} | best "
              "seed | search time (s) | search CPU (s) | parameters (M) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        lines.append(
            f"| {s['strategy']} | {s['primitives']} | {s['runs']} | "
            f"{_mean_std(s, m.key, m.scale, m.digits)} | "
            f"{m.show(s['best_' + m.key])} | "
            f"{'n/a' if s['best_seed'] is None else s['best_seed']} | "
            f"{_mean_std(s, 'search_seconds', digits=1)} | "
            f"{_mean_std(s, 'search_cpu_seconds', digits=1)} | "
            f"{_mean_std(s, 'parameters', 1e-6, 3)} |")
    lines += ["", "## Runs", "",
              f"| strategy | seed | {m.title(m.name)} | parameters (M) | search time (s) | "
              "search CPU (s) | train time (s) | total time (s) |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['strategy']} | {r['seed']} | {m.show(r.get(m.key))} | "
            f"{_params(r['parameters'])} | {r['search_seconds']:.1f} | "
            f"{r['search_cpu_seconds']:.1f} | {r['train_seconds']:.1f} | "
            f"{r['total_seconds']:.1f} |")
    lines += ["", f"## {name} against search time", ""]
    lines.append(f"![{m.name} against search time]({plot})" if plot.endswith(".png")
                 else plot)
    lines += ["", "## Genotypes", ""]
    for r in rows:
        lines += [f"{r['strategy']}, seed {r['seed']}:", "", "```",
                  str(genotype_from_dict(r["genotype"])), "```", ""]
    sets = ", ".join(f"{strategy} on {plan.primitives(strategy)}"
                     for strategy in plan.strategies)
    lines += ["## Configuration", "",
              f"Search (strategy, seed and out set per run; candidate op sets (primitives): "
              f"{sets}{_given_options(plan)}):", "", "```yaml", plan.search.to_yaml().rstrip(),
              "```", ""]
    if plan.benchmark:
        lines += [f"Benchmark table: `{plan.benchmark}`", ""]
    else:
        lines += ["Train from scratch (data set from the search; seed and out set per run):",
                  "", "```yaml", plan.train.to_yaml().rstrip(), "```", ""]
    return "\n".join(lines)


def _given_options(plan: Any) -> str:
    """``; random_samples 4 for the strategies that take it``: the plan's strategy options."""
    given = [f"{k} {v}" for k, v in plan.strategy_options.items() if v is not None]
    return f"; {', '.join(given)} for the strategies that take it" if given else ""


def plot_accuracy_vs_time(rows: Sequence[dict[str, Any]], path: Path,
                          measure: FinalMeasure = ACCURACY) -> Path:
    """Final accuracy (%) (or another ``measure``: a test perplexity) against search time (s):
    one point per run labelled with its seed, and per strategy its mean with standard-deviation
    bars. Needs the ``viz`` extra."""
    require("matplotlib", "viz", "The accuracy-against-time plot of nasp compare")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4.2), layout="constrained")
    ax = fig.add_subplot()
    colours = ["C0", "C1", "C2", "C3", "C4", "C5", "C6", "C7"]
    key, scale = measure.key, measure.scale
    for i, s in enumerate(summarise(rows, measure)):
        colour = colours[i % len(colours)]
        mine = [r for r in rows if r["strategy"] == s["strategy"] and r.get(key) is not None]
        ax.scatter([r["search_seconds"] for r in mine],
                   [scale * r[key] for r in mine], color=colour, alpha=0.6, s=25)
        for r in mine:
            ax.annotate(f"s{r['seed']}", (r["search_seconds"], scale * r[key]),
                        textcoords="offset points", xytext=(4, 3), fontsize=7, color=colour)
        if s[f"{key}_mean"] is not None:
            ax.errorbar(s["search_seconds_mean"], scale * s[f"{key}_mean"],
                        xerr=s["search_seconds_std"] or 0.0,
                        yerr=scale * (s[f"{key}_std"] or 0.0), color=colour, marker="D",
                        markersize=7, capsize=3, label=f"{s['strategy']} (mean ± std)")
    ax.set_xlabel("search time (s, wall clock)")
    ax.set_ylabel(measure.title(measure.name))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    atomic_write_bytes(path, buffer.getvalue())
    return path
