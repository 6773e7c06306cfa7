"""nasp bench on a tiny supernet: every variant runs, and the report is complete."""

import json

from nasp.apps.cli import main
from nasp.apps.step_timing import VARIANTS, BenchSetup, build_variant, format_table, run_bench

TINY = BenchSetup(layers=3, channels=4, batch_size=4, image_size=8)


def test_every_variant_runs_one_iteration():
    for name in VARIANTS:
        build_variant(name, TINY)()


def test_report_and_table():
    report = run_bench(TINY, ["child", "nasp"], repeats=2, warmup=1, memory=True)
    names = [r["name"] for r in report["variants"]]
    assert names == ["child", "nasp"]
    for r in report["variants"]:
        assert len(r["times_s"]) == 2 and r["median_s"] > 0
        assert isinstance(r["peak_memory_bytes"], int) and r["peak_memory_bytes"] >= 0
    assert "peak RSS" in report["memory_method"]
    table = format_table(report)
    assert "child" in table and "nasp" in table and "1.00" in table


def test_cli_writes_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    code = main(["bench", "--layers", "3", "--channels", "4", "--batch-size", "4",
                 "--image-size", "8", "--repeats", "1", "--warmup", "0", "--no-memory",
                 "--variants", "nasp", "darts", "--json", str(path)])
    assert code == 0
    report = json.loads(path.read_text())
    assert [r["name"] for r in report["variants"]] == ["nasp", "darts"]
    assert report["setup"]["layers"] == 3
    assert "darts" in capsys.readouterr().out


def test_cli_rejects_bad_size(capsys):
    assert main(["bench", "--channels", "5", "--no-memory"]) == 2
    assert "--channels" in capsys.readouterr().err
