"""nasp compare: runs strategies x seeds, reuses finished runs, reports mean +- std and best."""

import csv
import json
import statistics
from pathlib import Path

import pytest
from lm_fakes import write_corpus

import nasp.apps.compare as compare_module
import nasp.apps.compare_report as compare_report_module
from nasp import ConfigError, preset, train_preset
from nasp.apps.cli import main
from nasp.apps.compare import ComparePlan, write_report
from nasp.apps.compare_report import PERPLEXITY, report_markdown, summarise
from nasp.engine.checkpoints import OLDER_DEFAULTS
from nasp.engine.train_text import evaluate_text_checkpoint
from nasp.errors import MissingExtraError
from nasp.spaces import PRIMITIVE_SETS

TINY = ["compare", "--preset", "tiny", "--subset", "64", "--epochs", "1", "--train-preset",
        "tiny", "--train-epochs", "1", "--train-subset", "64", "--no-progress"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A tiny compare of nasp and random search over seeds 0 and 1."""
    out = tmp_path_factory.mktemp("compare") / "cmp"
    args = [*TINY, "--strategies", "nasp", "random", "--seeds", "0", "1", "--out", str(out)]
    assert main(args) == 0
    return out, args


def test_compare_writes_runs_and_report(finished):
    out, args = finished
    results = json.loads((out / "results.json").read_text())
    runs = results["runs"]
    assert [(r["strategy"], r["seed"]) for r in runs] == [
        ("nasp", 0), ("nasp", 1), ("random", 0), ("random", 1)]
    for r in runs:
        run = out / f"{r['strategy']}-seed{r['seed']}"
        train = [json.loads(line) for line in
                 (run / "train/metrics.jsonl").read_text().splitlines()]
        assert r["final_accuracy"] == train[-1]["test_acc"]  # test accuracy after the last epoch
        assert json.loads((run / "search/genotype.json").read_text()) == r["genotype"]
        assert json.loads((run / "train/genotype.json").read_text()) == r["genotype"]
        assert r["parameters"] > 0 and r["search_seconds"] > 0 and r["search_cpu_seconds"] > 0
        assert r["total_seconds"] == pytest.approx(r["search_seconds"] + r["train_seconds"])
        search_config = (run / "search/config.yaml").read_text()
        assert f"strategy: {r['strategy']}" in search_config and f"seed: {r['seed']}" in \
            search_config
    accuracies = [r["final_accuracy"] for r in runs[:2]]
    nasp_summary = results["summary"][0]
    assert nasp_summary["final_accuracy_mean"] == pytest.approx(statistics.mean(accuracies))
    assert nasp_summary["final_accuracy_std"] == pytest.approx(statistics.stdev(accuracies))
    assert nasp_summary["best_final_accuracy"] == max(accuracies)
    report = (out / "report.md").read_text()
    assert "nasp " + " ".join(args) in report  # the exact command
    assert "test top-1 accuracy on digits after 1 epoch of training" in report
    mean, std = 100 * statistics.mean(accuracies), 100 * statistics.stdev(accuracies)
    assert f"| nasp | darts-7 | 2 | {mean:.2f} ± {std:.2f} | {100 * max(accuracies):.2f} |" \
        in report
    assert report.count("Genotype(normal=[") == 4
    assert "subset: 64" in report  # the configuration
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["final_accuracy"]) for r in rows] == [r["final_accuracy"] for r in runs]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "No plot:" in report and not (out / "accuracy_vs_time.png").exists()
    else:
        assert (out / "accuracy_vs_time.png").stat().st_size > 0
        assert "![final accuracy against search time](accuracy_vs_time.png)" in report


def test_finished_runs_are_reused_and_runs_can_be_added(finished, monkeypatch):
    out, args = finished
    before = json.loads((out / "results.json").read_text())["runs"]
    calls = []
    real_search = compare_module.search

    def counting_search(config, **kwargs):
        calls.append((config.strategy, config.seed))
        return real_search(config, **kwargs)

    monkeypatch.setattr(compare_module, "search", counting_search)
    # the training of one run was killed after its last checkpoint: it continues from last.pt
    (out / "random-seed1/train.json").unlink()
    more = [*TINY, "--strategies", "random", "--seeds", "1", "2", "--out", str(out)]
    assert main(more) == 0
    assert calls == [("random", 2)]
    after = json.loads((out / "results.json").read_text())["runs"]
    assert [(r["strategy"], r["seed"]) for r in after] == [("random", 1), ("random", 2)]
    assert (out / "random-seed1/train.json").is_file()
    old = {(r["strategy"], r["seed"]): r for r in before}
    for r in after:
        if (r["strategy"], r["seed"]) in old:
            assert r["final_accuracy"] == old[(r["strategy"], r["seed"])]["final_accuracy"]


def test_other_configuration_is_refused(finished, capsys):
    out, args = finished
    changed = [*args, "--layers", "4"]
    assert main(changed) == 2
    err = capsys.readouterr().err
    assert "nasp-seed0 was run with another configuration (layers 4 (recorded: 3))" in err


def test_a_train_record_of_an_older_nasp_means_no_validation_split(tmp_path):
    config = train_preset("tiny", val_fraction=0).to_dict()
    old = {k: v for k, v in config.items() if k != "val_fraction"}  # before the option existed
    (tmp_path / "train.json").write_text(json.dumps({"test_acc": 0.5, "config": old}))
    record = compare_module._recorded(tmp_path / "train.json", config, OLDER_DEFAULTS)
    assert record["test_acc"] == 0.5
    with pytest.raises(ConfigError, match=r"val_fraction 0.1 \(recorded: 0.0\)"):
        compare_module._recorded(tmp_path / "train.json", train_preset("tiny").to_dict(),
                                 OLDER_DEFAULTS)


def test_plan_checks():
    search = preset("tiny")
    with pytest.raises(ConfigError, match="lists a value twice"):
        ComparePlan(("nasp",), (0, 0), search, Path("x"), train_preset("tiny"))
    with pytest.raises(ConfigError, match="train-from-scratch configuration or a benchmark"):
        ComparePlan(("nasp",), (0,), search, Path("x"))


ROWS = [
    {"strategy": "a", "primitives": "darts-7", "seed": 0, "final_accuracy": 0.5, "parameters": 1000,
     "search_seconds": 10.0, "search_cpu_seconds": 20.0, "train_seconds": 0.0,
     "total_seconds": 10.0},
    {"strategy": "a", "primitives": "darts-7", "seed": 1, "final_accuracy": 0.7, "parameters": 3000,
     "search_seconds": 14.0, "search_cpu_seconds": 30.0, "train_seconds": 0.0,
     "total_seconds": 14.0},
    {"strategy": "b", "primitives": "darts", "seed": 0, "final_accuracy": None, "parameters": None,
     "search_seconds": 5.0, "search_cpu_seconds": 5.0, "train_seconds": 0.0,
     "total_seconds": 5.0},
    {"strategy": "b", "primitives": "darts", "seed": 1, "final_accuracy": 0.6, "parameters": None,
     "search_seconds": 7.0, "search_cpu_seconds": 6.0, "train_seconds": 0.0,
     "total_seconds": 7.0},
]


def test_summarise():
    a, b = summarise(ROWS)
    assert a["runs"] == 2 and a["final_accuracy_mean"] == pytest.approx(0.6)
    assert a["final_accuracy_std"] == pytest.approx(0.02 ** 0.5)  # sample std (n - 1)
    assert a["search_seconds_mean"] == 12.0 and a["parameters_mean"] == 2000
    assert (a["best_seed"], a["best_final_accuracy"]) == (1, 0.7)
    # a run missing from the benchmark table counts as a run, not in the accuracy
    assert b["runs"] == 2 and b["scored"] == 1
    assert b["final_accuracy_mean"] == 0.6 and b["final_accuracy_std"] is None
    assert b["search_seconds_std"] == pytest.approx(2 ** 0.5)


def test_report_without_matplotlib(tmp_path, monkeypatch):
    from nasp import BUILTIN_GENOTYPES

    genotype = BUILTIN_GENOTYPES["DARTS_V2"].to_dict()
    rows = [{**r, "genotype": genotype} for r in ROWS]
    plan = ComparePlan(("a", "b"), (0, 1), preset("tiny"), tmp_path, benchmark="table.pth",
                       command="nasp compare ...")

    def missing(*args):
        raise MissingExtraError("no matplotlib here")

    monkeypatch.setattr(compare_report_module, "require", missing)
    write_report(plan, rows, log=lambda s: None)
    report = (tmp_path / "report.md").read_text()
    assert "No plot: no matplotlib here" in report
    assert not (tmp_path / "accuracy_vs_time.png").exists()
    assert "benchmark table table.pth" in report
    assert "| b | darts | 2 | 60.00 | 60.00 | 1 |" in report
    assert "| b | 0 | n/a | n/a |" in report
    assert report == report_markdown(plan, rows, "No plot: no matplotlib here")


def test_strategies_search_on_their_own_op_sets(tmp_path, monkeypatch):
    """--strategy-primitives: DARTS on its 8 ops (with none) beside NASP on darts-7, named in the
    report and results; the finished runs are reused, and another set for them is refused."""
    out = tmp_path / "cmp"
    args = [*TINY, "--strategies", "nasp", "darts", "--seeds", "0", "--out", str(out),
            "--strategy-primitives", "darts=darts"]
    assert main(args) == 0
    sets = {"nasp": "darts-7", "darts": "darts"}
    results = json.loads((out / "results.json").read_text())
    assert results["primitives"] == sets
    assert {r["strategy"]: r["primitives"] for r in results["runs"]} == sets
    assert {s["strategy"]: s["primitives"] for s in results["summary"]} == sets
    for strategy, name in sets.items():
        run = out / f"{strategy}-seed0"
        assert f"primitives: {name}\n" in (run / "search/config.yaml").read_text()
        assert json.loads((run / "search.json").read_text())["config"]["primitives"] == name
        first = json.loads((run / "search/metrics.jsonl").read_text().splitlines()[0])
        ops = PRIMITIVE_SETS[name]["normal"]
        assert len(first["arch"]["normal"][0]) == len(ops)  # ops per edge
    report = (out / "report.md").read_text()
    assert "| nasp | darts-7 | 1 |" in report and "| darts | darts | 1 |" in report
    assert "candidate op sets (primitives): nasp on darts-7, darts on darts" in report
    with open(out / "results.csv") as f:
        assert {r["strategy"]: r["primitives"] for r in csv.DictReader(f)} == sets

    calls = []
    monkeypatch.setattr(compare_module, "search", lambda config, **kw: calls.append(config))
    assert main(args) == 0  # rerun: both runs reused
    assert calls == []
    assert main([*args[:-1], "darts=darts-7"]) == 2  # darts's finished run used another set
    assert calls == []


@pytest.mark.parametrize("extra, message", [
    (["--strategy-primitives", "dart=darts"], "the unknown strategy 'dart'; the strategies are"),
    (["--strategy-primitives", "darts2=darts"],
     "for darts2, which is not among --strategies (nasp darts)"),
    (["--strategy-primitives", "darts=dartz"],
     "darts=dartz does not fit the search configuration: --primitives must be one of"),
    (["--strategy-primitives", "darts"], "takes STRATEGY=SET pairs such as darts=darts"),
    (["--strategy-primitives", "darts=darts", "darts=darts-7"], "gives darts two op sets"),
    (["--space", "nb201", "--strategy-primitives", "darts=darts"],
     "darts=darts does not fit the search configuration: --space nb201 has the benchmark's "
     "fixed op set"),
])
def test_bad_strategy_primitives_are_clear_errors(tmp_path, capsys, extra, message):
    out = tmp_path / "cmp"
    code = main([*TINY, "--strategies", "nasp", "darts", "--seeds", "0", "--out", str(out),
                 *extra])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.startswith("nasp compare: error: --strategy-primitives")
    assert message in " ".join(err.split())
    assert not out.exists()


def test_summarise_a_perplexity_keeps_the_lowest_as_best():
    rows = [{**r, "final_ppl": r["final_accuracy"] and 100 * r["final_accuracy"]} for r in ROWS]
    a, b = summarise(rows, PERPLEXITY)
    assert (a["best_seed"], a["best_final_ppl"]) == (0, 50.0)
    assert a["final_ppl_mean"] == pytest.approx(60.0) and b["best_final_ppl"] == 60.0


def test_compare_on_a_text_corpus_reports_test_perplexities(tmp_path):
    """The tiny DARTS recurrent space on a written corpus: each run's final measure is the test
    perplexity of its language model's best.pt, as nasp test computes it."""
    write_corpus(tmp_path / "penn")
    out = tmp_path / "cmp"
    assert main(["compare", "--space", "darts-rnn", "--dataset", "ptb", "--data-dir",
                 str(tmp_path), "--preset", "tiny", "--channels", "8", "--batch-size", "4",
                 "--epochs", "1", "--train-epochs", "1", "--train-channels", "8",
                 "--train-batch-size", "4", "--strategies", "nasp", "random", "--seeds", "0",
                 "--no-progress", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert "test perplexity" in results["final_ppl"] and results["train_config"]["bptt"]
    for r in results["runs"]:
        best = out / f"{r['strategy']}-seed0" / "train" / "best.pt"
        assert r["final_ppl"] == evaluate_text_checkpoint(best, tmp_path, "cpu")["test_ppl"]
        assert "final_accuracy" not in r
    report = (out / "report.md").read_text()
    assert "| final test perplexity | best | best seed |" in report
    assert f"| nasp | 0 | {results['runs'][0]['final_ppl']:.2f} |" in report
    assert list(csv.DictReader((out / "results.csv").open()))[0]["final_ppl"]
