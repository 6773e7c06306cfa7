"""The run report: ``report.html``, one self-contained page per search or training run.

At the end of a run (when pictures are drawn, i.e. without ``--no-plots``) the engine writes
``RUN_DIR/report.html`` after the pictures; ``nasp report RUN_DIR`` redraws the pictures and
writes it again, also for a run made by an older version. Its sections:

- the command (``environment.json``: the start and every resume) and ``config.yaml``;
- the cell, drawn by its space (the pictures of :meth:`SearchSpace.picture_cells
  <nasp.spaces.base.SearchSpace.picture_cells>`), with its text and the other readings of a
  search's cell (``genotypes.json``); a space with no cell to draw (a user's model) gets a table
  of what the architecture keeps per cell type (per label), with the options;
- the learning curves and the last epoch's values;
- search runs: the architecture weights over time, the benchmark accuracy of every epoch's cell
  (where ``--benchmark`` gave a table) and the collapse diagnostics over time;
- the time per epoch and in total; the environment of every session.

The page is built with the standard library: pictures embedded as ``data:`` URIs of the PNG
files :func:`~nasp.engine.pictures.plot_run` wrote, CSS inline, no script, nothing fetched from
a network, so it can be mailed or archived alone. A picture older than the run's
``metrics.jsonl`` (left by an earlier run in the directory) is not shown. Without matplotlib
the report holds the text parts and says that the pictures need the ``viz`` extra.
``metrics.jsonl`` is read defensively: a key an older run lacks leaves its cell empty.
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import os
import shlex
import statistics
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from nasp.engine.pictures import plot_run, read_records, run_genotype, search_space
from nasp.engine.plotting import format_duration, number
from nasp.engine.search_pictures import diagnostic_panels, weight_label
from nasp.errors import GenotypeError, MissingExtraError, RunDirError
from nasp.runtime.atomic import atomic_write_text
from nasp.spaces import space_of

__all__ = ["REPORT", "SECTIONS", "build_report", "report_run", "write_report"]

REPORT = "report.html"
#: ``(id, title)`` of the report's sections, in order; the search-only ones are left out of a
#: training run's report.
SECTIONS = (
    ("command", "Command and configuration"),
    ("cell", "The cell"),
    ("curves", "Learning curves"),
    ("weights", "Architecture weights over time"),
    ("benchmark", "Benchmark accuracy over time"),
    ("diagnostics", "Collapse diagnostics over time"),
    ("timing", "Timing"),
    ("environment", "Environment"),
)
SEARCH_ONLY = {"weights", "benchmark", "diagnostics"}
VIZ_NOTE = ('pictures need the viz extra (matplotlib): pip install "torch-nasp[viz]", then '
            'nasp report RUN_DIR draws them into this report')

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       color: #1d232b; background: #f4f6f8; margin: 0; }
main { max-width: 1220px; margin: 0 auto; padding: 18px 28px 40px; background: #fff; }
h1 { font-size: 25px; margin: 6px 0 4px; }
h1 code { font-size: 23px; }
h2 { font-size: 20px; margin: 34px 0 10px; padding-top: 10px; border-top: 2px solid #dde3ea; }
h3 { font-size: 16px; margin: 20px 0 6px; }
p.lead { color: #4a5561; margin: 0 0 12px; }
nav { margin: 10px 0 6px; font-size: 14px; }
nav a { margin-right: 14px; color: #1f5fae; text-decoration: none; }
table { border-collapse: collapse; font-size: 13.5px; margin: 6px 0 10px; }
th, td { border: 1px solid #d5dbe1; padding: 3px 9px; text-align: left; vertical-align: top; }
th { background: #eef2f6; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.facts th { width: 210px; }
pre, code { font: 13px/1.4 ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; }
pre { background: #f3f5f7; border: 1px solid #e0e5ea; padding: 8px 10px; overflow-x: auto;
      max-height: 420px; white-space: pre-wrap; word-break: break-word; }
pre.config { column-width: 250px; column-rule: 1px solid #e0e5ea; max-height: none; }
figure { margin: 12px 0 18px; }
figure img { max-width: 100%; height: auto; border: 1px solid #e3e7eb; }
figcaption { font-size: 13.5px; color: #4a5561; margin-top: 4px; max-width: 900px; }
.note { background: #fff7e0; border: 1px solid #f0d68a; padding: 8px 12px; margin: 10px 0; }
.muted { color: #6b7580; }
.scroll { overflow-x: auto; }
details summary { cursor: pointer; color: #1f5fae; margin: 6px 0; }
"""


def write_report(run_dir: str | os.PathLike, log: Callable[[str], None] = print) -> Path:
    """Write ``RUN_DIR/report.html`` from the run's files and pictures; log its path."""
    path = Path(run_dir) / REPORT
    atomic_write_text(path, build_report(run_dir))
    log(f"report: {path}")
    return path


def report_run(run_dir: str | os.PathLike, use_dot: bool | None = None) -> Path:
    """``nasp report``: redraw the run's pictures (when matplotlib is installed) and write its
    report; :class:`~nasp.errors.RunDirError` for a directory that holds no run."""
    run = Path(run_dir)
    if not run.is_dir():
        raise RunDirError(f"run directory {run} does not exist; pass the --out folder of a "
                          f"nasp search or nasp train run")
    if not any((run / name).is_file() for name in ("metrics.jsonl", "genotype.json",
                                                   "config.yaml")):
        raise RunDirError(f"{run} holds no run (no config.yaml, metrics.jsonl or "
                          f"genotype.json); pass the --out folder of a nasp search or nasp "
                          f"train run")
    drawable = (run / "metrics.jsonl").is_file() or (run / "genotype.json").is_file()
    with contextlib.suppress(MissingExtraError):  # the report says what to install
        if drawable:
            plot_run(run, use_dot)
    return write_report(run, log=lambda line: None)


def build_report(run_dir: str | os.PathLike) -> str:
    """The report of a run directory as HTML text (see the module doc)."""
    return _Report(Path(run_dir)).html()


# -- reading the run --------------------------------------------------------------------------


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


class _Report:
    """The report of one run directory: reads its files once, then writes the sections."""

    def __init__(self, run: Path):
        self.run = run
        self.records = read_records(run)
        self.config_text = _text(run / "config.yaml")
        self.config = _read_yaml(run / "config.yaml")
        # what a search whose space config.yaml cannot name searched (nasp.search on a model)
        searched = _read_json(run / "searched.json")
        self.searched = searched if isinstance(searched, Mapping) else {}
        events = _read_json(run / "environment.json")
        self.events = [e for e in (events if isinstance(events, list) else [events])
                       if isinstance(e, Mapping)]
        self.search = ("strategy" in self.config
                       or any("genotype" in r for r in self.records))
        self.genotype, self.genotype_error = None, ""
        try:
            self.genotype = run_genotype(run, self.records)
        except GenotypeError as err:
            self.genotype_error = str(err)
        metrics = run / "metrics.jsonl"
        reference = metrics if metrics.is_file() else run / "config.yaml"
        self.since = reference.stat().st_mtime if reference.is_file() else 0.0
        self.viz = _has_matplotlib()

    # -- the page ---------------------------------------------------------------------------

    def html(self) -> str:
        kind = "search" if self.search else "training"
        sections = [(key, title) for key, title in SECTIONS
                    if self.search or key not in SEARCH_ONLY]
        if not self.search:
            sections = [(k, "The trained cell" if k == "cell" else t) for k, t in sections]
        body = [f"<h1>nasp {kind} run <code>{_e(self.run.name)}</code></h1>",
                f'<p class="lead">{_e(self._lead())}</p>', self._facts()]
        if not self.viz:
            body.append(f'<p class="note">No pictures: {_e(VIZ_NOTE)}.</p>')
        body.append("<nav>" + "".join(f'<a href="#{k}">{_e(t)}</a>' for k, t in sections)
                    + "</nav>")
        for key, title in sections:
            content = getattr(self, f"_{key}")()
            body.append(f'<section id="{key}">\n<h2>{_e(title)}</h2>\n{content}\n</section>')
        written = datetime.now(timezone.utc).isoformat(timespec="seconds")
        body.append(f'<p class="muted">Written {written} from the files of {_e(self.run)}; '
                    f"<code>nasp report {_e(shlex.quote(str(self.run)))}</code> writes it "
                    f"again.</p>")
        return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                f"<title>nasp {kind} report: {_e(self.run.name)}</title>\n"
                f"<style>{CSS}</style>\n</head>\n<body>\n<main>\n" + "\n".join(body)
                + "\n</main>\n</body>\n</html>\n")

    def _lead(self) -> str:
        c = self.config
        done = len(self.records)
        planned = c.get("epochs")
        epochs = f"{done} of {planned} epochs" if planned is not None else f"{done} epochs"
        if self.search and self.searched:
            what = (f"Search with {c.get('strategy', '?')} in the "
                    f"{self.searched.get('space', '?')} space on "
                    f"{self.searched.get('train_samples', '?')} training and "
                    f"{self.searched.get('val_samples', '?')} validation samples")
        elif self.search:
            what = (f"Search with {c.get('strategy', '?')} in the {c.get('space', 'darts')} "
                    f"space ({c.get('primitives', '?')}) on {c.get('dataset', '?')}")
        else:
            what = f"Training from scratch on {c.get('dataset', '?')}"
        finished = isinstance(planned, int) and done >= planned and (
            not self.search or (self.run / "arch.pt").is_file())
        return f"{what}: {epochs}, {'finished' if finished else 'not finished'}."

    def _facts(self) -> str:
        rows: list[tuple[str, str]] = []
        last = self.records[-1] if self.records else {}
        if self.genotype is not None:
            rows.append(("cell", _compact(self.genotype)))
        if self.search:
            if last.get("val_measure") == "supernet":  # DARTS: what its paper reports
                rows += [self._measured("supernet validation", "", "supernet", last),
                         self._measured("child", ", BatchNorm recomputed", "child_bn", last)]
            else:
                rows += [self._measured("child", "", "child", last)]
            if any(isinstance(r.get("benchmark_acc"), (int, float)) for r in self.records):
                rows.append(("benchmark accuracy (last epoch)", _pct(last.get("benchmark_acc"))))
        else:
            rows += [("test accuracy (last epoch)", _pct(last.get("test_acc")))]
            # the model is chosen on the validation split only (never on the test split)
            best = _best(self.records, "val_acc")
            if best:
                key, record = best
                rows.append(("best validation accuracy (best.pt)",
                             f"{_pct(record.get(key))} at epoch "
                             f"{_e(record.get('epoch', '?'))} (test accuracy there "
                             f"{_pct(record.get('test_acc'))})"))
        seconds = [number(r.get("seconds")) for r in self.records]
        total = sum(s for s in seconds if s == s)
        if self.records:
            rows.append(("time", f"{format_duration(total)} over {len(self.records)} epochs"))
        if self.events:
            rows.append(("started", _e(self.events[0].get("time", "?"))))
        return _table(rows, header=False, css="facts")

    def _measured(self, what: str, note: str, prefix: str, last: Mapping[str, Any]
                  ) -> tuple[str, str]:
        """The last epoch's validation accuracy of ``prefix``, or its validation loss where
        the task measured no accuracy (a user's regression loss)."""
        if not any(r.get(f"{prefix}_val_acc") is not None for r in self.records) and any(
                r.get(f"{prefix}_val_loss") is not None for r in self.records):
            return f"{what} loss{note} (last epoch)", _num(last.get(f"{prefix}_val_loss"))
        return f"{what} accuracy{note} (last epoch)", _pct(last.get(f"{prefix}_val_acc"))

    # -- sections ---------------------------------------------------------------------------

    def _command(self) -> str:
        parts = []
        for event in self.events or [{}]:
            command = event.get("command")
            label = f"{event.get('event', 'start')} at {event.get('time', '?')}"
            text = _command_line(command) if command else "(not recorded)"
            parts.append(f"<h3>{_e(label)}</h3><pre>{_e(text)}</pre>")
        if self.searched:
            parts.append("<h3>searched.json: what was searched</h3>"
                         f"<pre>{_e(json.dumps(self.searched, indent=2))}</pre>")
        elif self.search and self.config_text:
            parts.append(f'<p>The same search again: <code>nasp search --config '
                         f'{_e(shlex.quote(str(self.run / "config.yaml")))} --out '
                         f'NEW_DIR</code></p>')
        config = (f'<pre class="config">{_e(self.config_text)}</pre>' if self.config_text
                  else '<p class="muted">No config.yaml.</p>')
        return "\n".join(parts) + "\n<h3>config.yaml</h3>\n" + config

    def _cell(self) -> str:
        if self.genotype is None:
            why = self.genotype_error or "the run holds no genotype.json and no epoch yet"
            return f'<p class="muted">No cell: {_e(why)}.</p>'
        space = space_of(self.genotype)
        parts = [f"<p>Space <code>{_e(space.name)}</code>:</p>",
                 f"<pre>{_e(str(self.genotype))}</pre>"]
        shown = False
        for cell, stem in space.picture_cells(self.genotype).items():
            image = self._picture(f"{stem}.png", f"the {cell} cell")
            shown = shown or image.startswith("<figure")
            parts.append(image)
        if not space.picture_cells(self.genotype):
            parts.append(self._choices())
        elif not shown:
            sources = "".join(f"<pre>{_e(space.cell_dot(self.genotype, cell))}</pre>"
                              for cell in space.picture_cells(self.genotype))
            parts.append(f"<details><summary>graphviz source of the cell</summary>{sources}"
                         f"</details>")
        alternatives = _read_json(self.run / "genotypes.json")
        if isinstance(alternatives, Mapping) and alternatives:
            rows = []
            for name, entry in alternatives.items():
                data = entry.get("genotype") if isinstance(entry, Mapping) else None
                try:
                    text = _compact(type(self.genotype).from_dict(data)) if data else "?"
                except GenotypeError:
                    text = "?"
                rows.append((name, text))
            parts.append("<h3>The cell read in other ways (genotypes.json)</h3>"
                         + _table(rows, header=False))
        return "\n".join(parts)

    def _choices(self) -> str:
        """What the architecture keeps per cell type (a model's label), for a space with no
        cell to draw: the space of the run (``searched.json``) names the options."""
        searched = search_space(self.run)
        space = searched[0] if searched is not None else space_of(self.genotype)
        rows = []
        for cell, (labels, kept) in space.genotype_edges(self.genotype).items():
            if len(labels) == 1:
                chosen = ", ".join(kept.values()) or "(none)"
                options = ", ".join(space.primitives.get(cell, ()))
            else:
                chosen = "; ".join(f"{labels[e]}: {op}" for e, op in sorted(kept.items()))
                options = f"{len(kept)} of {len(labels)}: {', '.join(labels)}"
            rows.append([_e(cell), f"<code>{_e(chosen)}</code>", _e(options)])
        return _table(rows, head=["label", "chosen", "options"], numbers=False)

    def _curves(self) -> str:
        if not self.records:
            return '<p class="muted">No epoch has finished yet (metrics.jsonl is empty).</p>'
        last = self.records[-1]
        rows = [(key.replace("_", " "), _pct(v) if key.endswith(("_acc", "_top5"))
                 else _num(v))
                for key, v in last.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)
                and key not in ("epoch", "seconds", "cpu_seconds")]
        return (self._picture("curves.png", "losses, accuracies and the learning rate per "
                              "epoch")
                + f"<h3>Epoch {_e(last.get('epoch', len(self.records)))}</h3>"
                + _table(rows, header=False))

    def _weights(self) -> str:
        nasp = self.config.get("strategy") == "nasp"
        label = weight_label(softmax=not nasp)
        with_arch = sum(isinstance(r.get("arch"), Mapping) for r in self.records)
        parts = [f"<p>Drawn as <b>{_e(label)}</b> on every edge: how far each op's weight "
                 f"is above or below the edge's average, on axes scaled to the values "
                 f"(a short search moves the weights by hundredths).</p>"]
        if with_arch:
            parts.append(self._picture("arch_evolution.png", "every op's weight on every edge "
                                       "over the epochs; thick: the op the final cell keeps"))
        else:
            parts.append('<p class="muted">The metrics hold no per-epoch weights.</p>')
        parts.append(self._picture("arch_weights.png", "the final weights; a ring marks the "
                                   "op the cell keeps on each edge"))
        parts.append(self._picture("genotype_evolution.png", "the op each edge of the derived "
                                   "cell holds after every epoch"))
        return "\n".join(parts)

    def _benchmark(self) -> str:
        looked_up = [r for r in self.records if "benchmark_acc" in r]
        if not looked_up:
            return ('<p class="muted">No benchmark table was given: <code>nasp search '
                    '--benchmark PATH</code> looks every epoch\'s cell up in a table of its '
                    'space (NAS-Bench-201).</p>')
        column = self.config.get("benchmark_column") or "the data set's column"
        epochs = _pick(looked_up)
        rows = [[_e(r.get("epoch", "?")), _pct(r.get("benchmark_acc")),
                 _num(r.get("benchmark_percentile"))] for r in epochs]
        best = _best(looked_up, "benchmark_acc")
        parts = [f"<p>Table {_e(self.config.get('benchmark', '?'))}, column {_e(column)}.</p>",
                 self._picture("benchmark.png", "the table's accuracy of every epoch's cell "
                               "and its percentile among the table's cells")]
        if best:
            parts.append(f"<p>Best: {_pct(best[1].get('benchmark_acc'))} at epoch "
                         f"{_e(best[1].get('epoch', '?'))}.</p>")
        parts.append(_table(rows, head=["epoch", "accuracy", "percentile"]))
        return "\n".join(parts)

    def _diagnostics(self) -> str:
        searched = [r for r in self.records if "genotype" in r]
        panels = diagnostic_panels(searched)
        if not panels:
            return '<p class="muted">The metrics hold no diagnostics.</p>'
        picked = _pick(list(range(len(searched))))
        head = ["measurement"] + [f"epoch {searched[i].get('epoch', i + 1)}" for i in picked]
        rows = [[_e(title if len(series) == 1 else f"{title}: {key.replace('_', ' ')}")]
                + [_num(values[i]) for i in picked]
                for title, series in panels for key, values in series.items()]
        return (self._picture("diagnostics.png", "collapse diagnostics per epoch "
                              "(nasp.engine.diagnostics) and the strategy's own numbers")
                + '<div class="scroll">' + _table(rows, head=head) + "</div>")

    def _timing(self) -> str:
        timed = [(number(r.get("seconds")), r.get("epoch", i + 1))
                 for i, r in enumerate(self.records) if number(r.get("seconds")) >= 0]
        if not timed:
            return '<p class="muted">No epoch times recorded.</p>'
        seconds = [s for s, _ in timed]
        slowest, slowest_epoch = max(timed, key=lambda pair: pair[0])
        rows = [("total", format_duration(sum(seconds))),
                ("epochs timed", str(len(seconds))),
                ("per epoch, median", format_duration(statistics.median(seconds))),
                ("first epoch", format_duration(seconds[0])),
                ("slowest epoch", f"{format_duration(slowest)} (epoch {_e(slowest_epoch)})")]
        cpu = [s for s in (number(r.get("cpu_seconds")) for r in self.records) if s == s]
        if cpu:
            rows.append(("CPU time of the process", format_duration(sum(cpu))))
        rows.append(("sessions", f"{max(len(self.events), 1)} (start and resumes)"))
        return (self._picture("timing.png", "seconds per epoch") + _table(rows, header=False))

    def _environment(self) -> str:
        if not self.events:
            return '<p class="muted">No environment.json.</p>'
        parts = []
        for event in self.events:
            rows = [(key, _e(_command_line(v) if key == "command" else _plain(v)))
                    for key, v in event.items()]
            parts.append(f"<h3>{_e(event.get('event', '?'))} at {_e(event.get('time', '?'))}"
                         f"</h3>" + _table(rows, header=False))
        return "\n".join(parts)

    # -- pictures ---------------------------------------------------------------------------

    def _picture(self, name: str, caption: str) -> str:
        """``name`` as an embedded image, or a line saying why it is missing."""
        path = self.run / name
        if path.is_file() and path.stat().st_mtime >= self.since:
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            return (f'<figure><img src="data:image/png;base64,{data}" alt="{_e(caption)}">'
                    f"<figcaption>{_e(name)}: {_e(caption)}</figcaption></figure>")
        why = VIZ_NOTE if not self.viz else "not drawn; nasp report RUN_DIR draws it"
        return f'<p class="muted">({_e(name)}: {_e(why)})</p>'


# -- formatting -------------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape(str(value))


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _compact(genotype: Any) -> str:
    """The one-line form of a genotype, a line per cell type (``|`` separates them)."""
    return "<br>".join(f"<code>{_e(part.strip())}</code>"
                       for part in genotype.compact().split(" | "))


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _command_line(command: Any) -> str:
    """A recorded ``sys.argv`` as a shell line; ``nasp ...`` for the ``nasp`` command."""
    if not isinstance(command, Sequence) or isinstance(command, str):
        return str(command)
    argv = [str(a) for a in command]
    if argv and argv[0].endswith(("nasp/__main__.py", "nasp")):
        return "nasp " + shlex.join(argv[1:])
    return shlex.join(argv)


def _num(value: Any) -> str:
    x = number(value)
    if x != x:
        return '<span class="muted">–</span>'
    if x == int(x) and abs(x) < 1e6:
        return str(int(x))
    return f"{x:.4g}"


def _pct(value: Any) -> str:
    x = number(value)
    return '<span class="muted">–</span>' if x != x else f"{100 * x:.2f}%"


def _best(records: Sequence[Mapping[str, Any]], key: str
          ) -> tuple[str, Mapping[str, Any]] | None:
    """``(key, record)`` of the record with the largest ``key``; None when none has it."""
    scored = [r for r in records if number(r.get(key)) == number(r.get(key))]
    return (key, max(scored, key=lambda r: number(r.get(key)))) if scored else None


def _pick(items: Sequence[Any], most: int = 10) -> list[Any]:
    """At most ``most`` of ``items`` evenly spread, the first and the last among them."""
    if len(items) <= most:
        return list(items)
    step = (len(items) - 1) / (most - 1)
    return [items[round(i * step)] for i in range(most)]


def _table(rows: Sequence[Sequence[str]], head: Sequence[str] | None = None,
           header: bool = True, css: str = "", numbers: bool = True) -> str:
    """An HTML table; ``rows`` hold HTML (escaped by the caller), the first cell of a row is
    its heading when ``header`` is False; with a ``head`` the other cells are numbers
    (right-aligned) unless ``numbers`` is False."""
    out = [f'<table class="{css}">' if css else "<table>"]
    if head:
        out.append("<tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>")
    for row in rows:
        cells = list(row)
        first = f"<th>{_e(cells[0])}</th>" if not header else f"<td>{cells[0]}</td>"
        rest = "".join(f'<td class="num">{c}</td>' if head and numbers else f"<td>{c}</td>"
                       for c in cells[1:])
        out.append(f"<tr>{first}{rest}</tr>")
    out.append("</table>")
    return "\n".join(out)
