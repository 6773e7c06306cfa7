"""What a search prints: a legend before the first epoch, one line per epoch of at most about
:data:`WIDTH` columns, the cell on a line of its own in the epochs where it changed, and a summary
at the end (best and final accuracies, the size of the found cell's evaluation network, the
files). ``metrics.jsonl`` is the machine-readable log of the same numbers; the line names them:

- ``train loss ... acc ...``: the mean over the epoch's weight steps (``train_loss``,
  ``train_acc``) of what the strategy trains (:attr:`Strategy.trains_what`);
- ``child val`` or ``supernet val``: the validation accuracy the strategy's paper reports
  (``val_measure`` names it; ``child_val_acc`` or ``supernet_val_acc``), on the validation half;
  for a task that measures no accuracy (a user's regression loss), its validation loss
  (``child_val_loss``, as the task writes it; the summary's best is then the lowest);
- ``child(BN)``: for a strategy that reports the supernet (DARTS), the derived child with its
  BatchNorm statistics recomputed on training images (``child_bn_val_acc``);
- ``bench``: the cell's accuracy in the ``--benchmark`` table (``benchmark_acc``);
- the strategy's own note (NASP's ``flips``, random search's candidates);
- ``changed``: edges of the cell whose op changed since the last epoch (``cell_changed_edges``);
- the epoch's time and the time the remaining epochs will take.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from nasp.core.measure import flop_count, parameter_count
from nasp.engine.session import format_duration
from nasp.spaces import Benchmark, Genotype, SearchSpace
from nasp.strategies import Strategy
from nasp.tasks import ClassificationTask, Task

__all__ = ["WIDTH", "budget_text", "cell_line", "check_budget", "count_text", "epoch_line",
           "evaluation_size", "legend", "summary"]

#: The width an epoch's line keeps within (up to 99 epochs and a time left under 100 hours).
WIDTH = 120

#: The label of the BatchNorm-recomputed child's accuracy in the epoch line.
CHILD_BN = "child(BN)"


def _percent(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}%"


def _val_text(record: Mapping[str, Any], prefix: str, task: Task) -> str:
    """``prefix``'s validation value of ``task``'s headline metric (accuracy, perplexity), or
    its loss as ``task`` writes it where the task measured no such value but a loss."""
    value, loss = (record.get(f"{prefix}_val_{task.headline}"),
                   record.get(f"{prefix}_val_loss"))
    if value is None and loss is not None:
        return task.format({"loss": loss})
    return task.show(value)


def legend(strategy: Strategy, bench: Benchmark | None, val_images: int,
           bn_images: int, measured: str | None = None, task: Task | None = None) -> list[str]:
    """What the numbers of the epoch lines are, wrapped at :data:`WIDTH` columns;
    ``measured``: what the validation numbers are (default: ``task``'s headline metric in
    words, accuracy or perplexity); the words of the train part and of the items evaluated
    (images, tokens) are ``task``'s (default: a classification)."""
    task = task or ClassificationTask()
    measured = measured or task.headline_words
    parts = []
    if strategy.trains:
        parts.append(f"train {task.train_words}: {strategy.trains_what} on the epoch's training "
                     f"batches")
        measure = strategy.val_measure
        what = strategy.trains_what if measure == "supernet" else strategy.child_what
        parts.append(f"{measure} val: {measured} on the {val_images} validation "
                     f"{task.items} of {what}")
        if measure == "supernet":
            parts.append(f"{CHILD_BN}: that of {strategy.child_what}, its BatchNorm statistics "
                         f"recomputed on {bn_images} training {task.items}")
    if bench is not None:
        parts.append(f"bench: the cell's {bench.column} accuracy in the benchmark table")
    if strategy.summary_what:
        parts.append(strategy.summary_what)
    parts.append("changed: edges of the cell whose op changed since the last epoch; then the "
                 "epoch's time and the time left")
    return textwrap.wrap("each epoch: " + "; ".join(parts), WIDTH,
                         subsequent_indent="  ", break_on_hyphens=False)


def epoch_line(record: Mapping[str, Any], epochs: int, task: Task, note: str = "",
               time_left: float | None = None) -> str:
    """One epoch's line (see the module docstring); parts not measured are left out."""
    parts = [f"epoch {record['epoch']}/{epochs}"]
    if record.get("train_loss") is not None:
        parts.append("train " + task.format({"loss": record["train_loss"],
                                             "top1": record["train_acc"]}))
    measure, key = record.get("val_measure"), task.headline  # key: acc, ppl
    if measure is not None:
        parts.append(f"{measure} val {_val_text(record, measure, task)}")
    if (record.get(f"child_bn_val_{key}") is not None
            or record.get("child_bn_val_loss") is not None):
        parts.append(f"{CHILD_BN} {_val_text(record, 'child_bn', task)}")
    if "benchmark_acc" in record:
        parts.append(f"bench {_percent(record['benchmark_acc'], 2)}")
    if note:
        parts.append(note)
    if record.get("cell_changed_edges") is not None:
        parts.append(f"changed {record['cell_changed_edges']}")
    parts.append(format_duration(record["seconds"]))
    if time_left:
        parts.append(f"left {format_duration(time_left)}")
    return "  ".join(parts)


def cell_line(genotype: Genotype) -> str:
    """The cell, on its own line after an epoch's line."""
    return f"  cell: {genotype.compact()}"


def evaluation_size(space: SearchSpace, genotype: Genotype,
                    input_shape: Sequence[int], num_classes: int) -> dict[str, Any]:
    """Parameters (auxiliary head excluded) and FLOPs of one image of the evaluation network of
    ``genotype`` at its space's paper's sizes (:attr:`SearchSpace.evaluation_sizes`), for images
    of ``input_shape`` (C, H, W) and ``num_classes`` classes, as ``nasp info`` counts them
    (:mod:`nasp.core.measure`). The network is built on the ``meta`` device: no memory, no
    arithmetic, no random number drawn."""
    key = (space.name, genotype.to_json(), tuple(int(s) for s in input_shape), num_classes)
    if key not in _SIZES:
        sizes = dict(space.evaluation_sizes)
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            net = space.build_evaluation_network(genotype, key[2][0], num_classes,
                                                 sizes["layers"], sizes["channels"])
        _SIZES[key] = {"parameters": parameter_count(net), "flops": flop_count(net, key[2]),
                       "layers": sizes["layers"], "channels": sizes["channels"],
                       "sizes": space.describe_sizes(**sizes)}
        while len(_SIZES) > 32:  # counting takes a second: the last few are kept
            del _SIZES[next(iter(_SIZES))]
    return dict(_SIZES[key])


_SIZES: dict[tuple, dict[str, Any]] = {}


def count_text(n: float) -> str:
    """A parameter or FLOP count as the summary writes it: ``3.35M``, ``0.56M``, ``1.23G``."""
    for low, scale, unit in ((1e9, 1e9, "G"), (1e5, 1e6, "M"), (1e3, 1e3, "k")):
        if n >= low:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


def check_budget(budget: Mapping[str, Any], size: Mapping[str, Any] | None) -> None:
    """The found cell against its hard budget (``budget``: metric, limit and the cost table's
    cost), with its evaluation network built and counted (``size``, :func:`evaluation_size`)
    for parameters and FLOPs: a cell over the budget, or a count that differs from the table's,
    is a bug (``RuntimeError``)."""
    counted = {"params": "parameters", "flops": "flops"}.get(budget["metric"])
    cost = budget["cost"]
    if counted is not None and size:
        if size[counted] != cost:
            raise RuntimeError(f"nasp bug: the cost table says {cost:,.0f} {counted}, the built "
                               f"evaluation network has {size[counted]:,}")
        cost = size[counted]
    if cost > budget["limit"]:
        raise RuntimeError(f"nasp bug: the found cell costs {cost} {budget['metric']}, over "
                           f"its budget {budget['limit']}")


def budget_text(budget: Mapping[str, Any]) -> str:
    """``budget: 0.56M of at most 0.60M parameters`` (or FLOPs, or ms)."""
    metric, cost, limit = budget["metric"], budget["cost"], budget["limit"]
    if metric == "latency":
        return f"budget: {cost:.4g} of at most {limit:.4g} ms (latency table)"
    unit = "parameters" if metric == "params" else "FLOPs"
    return f"budget: {count_text(cost)} of at most {count_text(limit)} {unit}"


def summary(history: Sequence[Mapping[str, Any]], genotype: Genotype,
            bench: Benchmark | None, size: Mapping[str, Any] | None,
            input_shape: Sequence[int], num_classes: int, run_dir: Path,
            files: Sequence[str], task: Task | None = None,
            budget: Mapping[str, Any] | None = None) -> list[str]:
    """The lines printed at the end of a search: a table of the final and best (epoch)
    accuracies (``task``'s headline metric: perplexities of a language model, the lowest
    best; validation losses, lowest best, where the task measured no accuracy), the cell, the
    size of its evaluation network, the run directory's files. An empty ``input_shape`` is a
    language model's: ``num_classes`` is its vocabulary."""
    task = task or ClassificationTask()
    key = task.headline  # acc, ppl
    seconds = sum(r.get("seconds") or 0.0 for r in history)
    lines = [f"search done: {len(history)} epochs in {format_duration(seconds)}"]
    rows = []
    last = history[-1] if history else {}
    measure = last.get("val_measure")
    keys = []

    def measured(label: str, prefix: str) -> tuple[str, str]:
        """The headline metric's row, or the loss's where the epochs measured only a loss."""
        if not any(r.get(f"{prefix}_val_{key}") is not None for r in history) and any(
                r.get(f"{prefix}_val_loss") is not None for r in history):
            return f"{label} val loss", f"{prefix}_val_loss"
        return f"{label} val {key}", f"{prefix}_val_{key}"

    if measure is not None:
        keys.append(measured(measure, measure))
    if any(r.get(f"child_bn_val_{key}") is not None or r.get("child_bn_val_loss") is not None
           for r in history):
        keys.append(measured(CHILD_BN, "child_bn"))
    if bench is not None:
        keys.append((f"benchmark {bench.column}", "benchmark_acc"))
    for label, name in keys:
        values = [(r[name], r["epoch"]) for r in history if r.get(name) is not None]
        if not values:
            rows.append((label, "-", "-"))
            continue
        if name.endswith("_loss"):  # the lowest is the best
            best, epoch = min(values, key=lambda v: (v[0], v[1]))
            final = "-" if last.get(name) is None else f"{last[name]:.4g}"
            rows.append((label, final, f"{best:.4g} (epoch {epoch})"))
            continue
        if name == "benchmark_acc":
            best, epoch = max(values, key=lambda v: (v[0], -v[1]))
            final, best_text = _percent(last.get(name), 2), _percent(best, 2)
            if last.get("benchmark_percentile") is not None:
                final += f" (percentile {last['benchmark_percentile']:.1f})"
        else:
            sign = 1 if task.higher_is_better else -1
            best, epoch = max(values, key=lambda v: (sign * v[0], -v[1]))
            final, best_text = task.show(last.get(name)), task.show(best)
        rows.append((label, final, f"{best_text} (epoch {epoch})"))
    if rows:
        rows.insert(0, ("", "final", "best"))
        w0 = max(len(r[0]) for r in rows)
        w1 = max(len(r[1]) for r in rows)
        lines += [f"  {a:<{w0}}  {b:<{w1}}  {c}".rstrip() for a, b, c in rows]
    lines.append(f"  cell: {genotype.compact()}")
    if size is not None and not input_shape:
        lines.append(f"  evaluation network ({size['sizes']}, {num_classes} words): "
                     f"{count_text(size['parameters'])} parameters")
    elif size is not None:
        shape = "x".join(str(int(s)) for s in input_shape)
        data = f"{shape} images, {num_classes} classes" if num_classes else f"inputs of {shape}"
        lines.append(f"  evaluation network ({size['sizes']}, {data}): "
                     f"{count_text(size['parameters'])} parameters, "
                     f"{count_text(size['flops'])} FLOPs")
    if budget is not None:
        lines.append(f"  {budget_text(budget)}")
    lines += textwrap.wrap(f"files in {run_dir}: {', '.join(files)}", WIDTH,
                           initial_indent="  ", subsequent_indent="    ",
                           break_on_hyphens=False, break_long_words=False)
    if input_shape:
        lines.append(f"  next: nasp train {run_dir}  (trains the cell from scratch)")
    else:  # a recurrent cell: its language model
        lines.append(f"  next: nasp train {run_dir} --preset ptb-cpu  (trains the cell's "
                     f"language model from scratch; ptb-paper: as DARTS)")
    return lines
