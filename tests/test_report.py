"""The run report: report.html at the end of a search and a training, self-contained, every
section there; `nasp report` rebuilds it, also for runs of older versions and without
matplotlib."""

import base64
import itertools
import json
import os
import re
import sys

import pytest
import torch

from nasp.apps.cli import main
from nasp.config import preset, train_preset
from nasp.engine.report import REPORT, SECTIONS, build_report, report_run
from nasp.engine.search import search
from nasp.engine.train import train
from nasp.errors import RunDirError
from nasp.spaces.nb201.genotype import NB201_PRIMITIVES, NB201Genotype

pytestmark = pytest.mark.usefixtures("one_thread")

PNG = b"\x89PNG\r\n\x1a\n"
SEARCH_SECTIONS = [key for key, _ in SECTIONS]
TRAIN_SECTIONS = ["command", "cell", "curves", "timing", "environment"]


@pytest.fixture(scope="module")
def search_run(tmp_path_factory):
    """A tiny DARTS-space NASP search (one epoch), pictures and report written at its end."""
    pytest.importorskip("matplotlib", reason="pictures need the viz extra (matplotlib)")
    out = tmp_path_factory.mktemp("report") / "search"
    lines = []
    search(preset("tiny", epochs=1, subset=64, device="cpu", out=str(out)), progress=False,
           log=lines.append)
    return out, lines


def sections(page: str) -> dict[str, str]:
    """``{section id: its HTML}``."""
    return dict(re.findall(r'<section id="(\w+)">(.*?)</section>', page, re.S))


def images(page: str) -> list[bytes]:
    return [base64.b64decode(data)
            for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def assert_self_contained(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "http:" not in page and "https:" not in page and "<script" not in page
    assert "<link" not in page and "url(" not in page  # no style sheet or font to fetch
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:") for s in sources)
    assert all(image.startswith(PNG) for image in images(page))


def test_a_search_writes_its_report(search_run):
    run, lines = search_run
    assert f"report: {run / REPORT}" in lines
    page = (run / REPORT).read_text()
    assert_self_contained(page)
    found = sections(page)
    assert list(found) == SEARCH_SECTIONS
    for key in ("cell", "curves", "weights", "diagnostics", "timing"):
        assert "data:image/png" in found[key], key
    assert len(images(page)) == 8  # two cells, curves, 3 of weights, diagnostics, timing
    assert "start at" in found["command"] and "strategy: nasp" in found["command"]
    assert "No benchmark table was given" in found["benchmark"]
    assert "parameter-free ops among kept edges: total" in found["diagnostics"]
    genotype = json.loads((run / "genotype.json").read_text())
    assert genotype["normal"][0][0] in found["cell"]
    assert "A − mean of the edge" in found["weights"]
    assert f"<th>torch</th><td>{torch.__version__}</td>" in found["environment"]


def test_a_training_writes_its_report_without_the_search_sections(tmp_path):
    lines = []
    out = tmp_path / "train"
    # no validation split (--val-fraction 0): no epoch is chosen, and never by its test accuracy
    train("DARTS_V2", train_preset("tiny", device="cpu", subset=32, channels=4, epochs=2,
                                   val_fraction=0, out=str(out)), progress=False,
          log=lines.append)
    page = (out / REPORT).read_text()
    assert_self_contained(page)
    found = sections(page)
    assert list(found) == TRAIN_SECTIONS
    assert "test accuracy (last epoch)" in page and "best validation accuracy" not in page
    assert "best test" not in page
    assert len(images(page)) == 4  # two cells, curves, timing
    assert f"report: {out / REPORT}" in lines
    # a training that selects its model on a validation split: the best epoch by val_acc
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for record, val_acc in zip(records, (0.7, 0.6)):
        record["val_acc"] = val_acc
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    page = build_report(out)
    assert ("best validation accuracy (best.pt)</th><td>70.00% at epoch 1 (test accuracy there "
            f"{100 * records[0]['test_acc']:.2f}%)") in page


def test_nasp_report_rebuilds_the_report_with_fresh_pictures(search_run, capsys):
    run, _ = search_run
    (run / REPORT).unlink()
    (run / "diagnostics.png").unlink()
    assert main(["report", str(run)]) == 0
    assert capsys.readouterr().out.strip() == str(run / REPORT)
    page = (run / REPORT).read_text()
    assert_self_contained(page)
    assert list(sections(page)) == SEARCH_SECTIONS
    assert (run / "diagnostics.png").read_bytes().startswith(PNG)  # drawn again
    assert "data:image/png" in sections(page)["diagnostics"]


def old_run(run, path):
    """``run`` as a version from before the diagnostics, the per-epoch weights, CPU times, the
    genotype's "space" key, the environment record and the report wrote it."""
    path.mkdir()
    for name in ("config.yaml", "arch.pt"):
        (path / name).write_bytes((run / name).read_bytes())
    genotype = json.loads((run / "genotype.json").read_text())
    del genotype["space"]
    (path / "genotype.json").write_text(json.dumps(genotype))
    with open(path / "metrics.jsonl", "w") as f:
        for line in (run / "metrics.jsonl").read_text().splitlines():
            record = json.loads(line)
            for key in ("diagnostics", "arch", "cpu_seconds", "cells", "nasp"):
                record.pop(key, None)
            f.write(json.dumps(record) + "\n")
    return path


def test_nasp_report_reads_a_run_of_an_older_version(search_run, tmp_path, capsys):
    run = old_run(search_run[0], tmp_path / "old")
    assert main(["report", str(run)]) == 0
    page = (run / REPORT).read_text()
    assert_self_contained(page)
    found = sections(page)
    assert list(found) == SEARCH_SECTIONS
    assert "The metrics hold no per-epoch weights" in found["weights"]
    assert "The metrics hold no diagnostics" in found["diagnostics"]
    assert "No environment.json" in found["environment"]
    assert "data:image/png" in found["cell"] and "data:image/png" in found["curves"]


def test_without_matplotlib_the_report_has_its_text_and_says_what_to_install(
        search_run, tmp_path, monkeypatch):
    run = old_run(search_run[0], tmp_path / "run")
    (run / "curves.png").write_bytes(PNG)  # a picture of an earlier run in the directory
    os.utime(run / "curves.png", (0, 0))
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    report_run(run)
    page = (run / REPORT).read_text()
    assert "<img" not in page  # the old curves.png is not this run's
    assert 'pip install "torch-nasp[viz]"' in page.replace("&quot;", '"')
    assert list(sections(page)) == SEARCH_SECTIONS
    assert "digraph" in sections(page)["cell"]  # the cell as graphviz source instead


def test_a_picture_older_than_the_metrics_is_left_out(search_run, tmp_path):
    run = old_run(search_run[0], tmp_path / "run")
    report_run(run)
    assert "data:image/png" in sections(build_report(run))["curves"]
    os.utime(run / "curves.png", (0, 0))
    assert "data:image/png" not in sections(build_report(run))["curves"]


def test_nasp_report_errors(tmp_path, capsys):
    with pytest.raises(RunDirError, match="does not exist"):
        report_run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "holds no run" in capsys.readouterr().err


def test_the_benchmark_section_follows_the_table(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [f"{NB201Genotype(ops)},{n / 156.25:.4f}"  # every cell, a made-up accuracy
            for n, ops in enumerate(itertools.product(NB201_PRIMITIVES, repeat=6))]
    (tmp_path / "all.csv").write_text("arch,cifar10\n" + "\n".join(rows) + "\n")
    out = tmp_path / "run"
    assert main(["search", "--space", "nb201", "--preset", "tiny", "--subset", "64",
                 "--epochs", "2", "--no-progress", "--benchmark", str(tmp_path / "all.csv"),
                 "--benchmark-column", "cifar10", "--out", str(out)]) == 0
    found = sections((out / REPORT).read_text())
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert "data:image/png" in found["benchmark"] and "column cifar10" in found["benchmark"]
    for record in records:
        assert f"{100 * record['benchmark_acc']:.2f}%" in found["benchmark"]
    assert list(found) == SEARCH_SECTIONS
