"""NAS-Bench-201 look-up: CSV tables, the nats_bench adapter, errors, and the search's log."""

import csv
import itertools
import json
import sys
import types

import pytest

from nasp.apps.cli import main
from nasp.config import SearchConfig
from nasp.errors import BenchmarkError
from nasp.spaces.darts_cnn.genotype import BUILTIN_GENOTYPES
from nasp.spaces.nb201.benchmark_table import (
    BenchmarkTable,
    _arch_column,
    open_benchmark,
    open_table,
)
from nasp.spaces.nb201.genotype import NB201_PRIMITIVES, NB201Genotype

pytestmark = pytest.mark.usefixtures("one_thread")

BEST = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+"
        "|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|")
RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


def write(path, text):
    path.write_text(text)
    return path


@pytest.fixture
def table(tmp_path):
    """NATS-Bench-style export: percentages, a cost column, spacing as a human might write it."""
    return write(tmp_path / "nb201.csv", (
        "index,arch,cifar10-valid,cifar10,cifar100,ImageNet16-120,params\n"
        f"9930,{BEST},91.55,94.36,73.51,46.34,1.289\n"
        f'1,"{RESNET.replace("|+|", "| + |")}",90.83,93.97,70.86,43.63,1.073\n'
        f"2,{ALL_NONE},10.0,10.0,1.0,,0.07\n"))


def test_csv_lookup_returns_fractions_per_column(table):
    bench = BenchmarkTable.load(table)
    assert bench.datasets == ("cifar10-valid", "cifar10", "cifar100", "ImageNet16-120")
    assert bench.accuracy(BEST, "cifar10") == pytest.approx(0.9436)
    assert bench.accuracy(NB201Genotype.from_string(BEST), "cifar100") == pytest.approx(0.7351)
    assert bench.accuracy(RESNET, "imagenet16-120") == pytest.approx(0.4363)  # any case
    assert bench.accuracy(RESNET.replace("~", " ~ "), "cifar10-valid") == pytest.approx(0.9083)
    assert bench.accuracy(ALL_NONE, "ImageNet16-120") is None  # empty cell
    unknown = "|avg_pool_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    assert bench.accuracy(unknown, "cifar10") is None


def test_fraction_tables_and_other_delimiters(tmp_path):
    path = write(tmp_path / "t.csv", f"architecture;my acc\n{BEST};0.9436\n{RESNET};0.5\n")
    bench = BenchmarkTable.load(path)
    assert bench.datasets == ("my acc",)
    assert bench.accuracy(BEST, "my acc") == pytest.approx(0.9436)


def test_arch_column_found_by_content_and_equal_duplicates_allowed(tmp_path):
    path = write(tmp_path / "t.csv", f"cell,cifar10\n{BEST},94.36\n{BEST},94.36\n")
    assert BenchmarkTable.load(path).accuracy(BEST, "cifar10") == pytest.approx(0.9436)


@pytest.mark.parametrize("content, message", [
    ("arch,cifar10\n", "is empty"),
    ("name,cifar10\nresnet,93.9\n", "no architecture column"),
    (f"arch,comment\n{BEST},good\n", "no accuracy column"),
    (f"arch,cifar10\n{BEST},94.36\n{BEST.replace('|+|', '| + |')},93.0\n",
     "lines 2 and 3 with different cifar10"),
    (f"arch,cifar10\n{BEST},94.36\n|nor_conv_3x3~0|+|none~0|,50\n", "line 3: .*3 node groups"),
    (f"arch,cifar10,CIFAR10\n{BEST},94.36,94.36\n", "repeats a column name"),
])
def test_bad_tables_are_clear_errors(tmp_path, content, message):
    path = write(tmp_path / "bad.csv", content)
    with pytest.raises(BenchmarkError, match=message) as info:
        BenchmarkTable.load(path)
    assert str(path) in str(info.value)


def test_missing_file_and_unknown_column(tmp_path, table):
    with pytest.raises(BenchmarkError, match="does not exist"):
        BenchmarkTable.load(tmp_path / "nowhere.csv")
    bench = BenchmarkTable.load(table)
    with pytest.raises(BenchmarkError, match="no accuracy column for 'mnist'.*--benchmark-column"):
        bench.accuracy(BEST, "mnist")
    with pytest.raises(BenchmarkError, match="'params' is not an accuracy column"):
        bench.accuracy(BEST, "params")
    with pytest.raises(BenchmarkError, match="--space nb201"):
        bench.accuracy(BUILTIN_GENOTYPES["DARTS_V2"], "cifar10")


def test_a_column_with_text_is_not_an_accuracy_column(tmp_path):
    path = write(tmp_path / "t.csv", f"arch,cifar10,cifar100\n{BEST},94.36,n/a\n")
    bench = BenchmarkTable.load(path)
    assert bench.datasets == ("cifar10",)
    with pytest.raises(BenchmarkError, match="line 2 holds 'n/a'"):
        bench.accuracy(BEST, "cifar100")


def test_open_benchmark_maps_the_data_set_or_needs_a_column(table):
    config = SearchConfig(space="nb201", dataset="cifar10", benchmark=str(table))
    assert open_benchmark(config).column == "cifar10"
    assert open_benchmark(config.replace(benchmark_column="cifar10-valid")).column == \
        "cifar10-valid"
    with pytest.raises(BenchmarkError, match="data set 'digits'.*--benchmark-column"):
        open_benchmark(config.replace(dataset="digits"))
    assert open_benchmark(SearchConfig(space="nb201")) is None


def test_nats_bench_long_column_names_need_no_column_option(tmp_path):
    """NATS-Bench's long export names: the arch column and each data set's 200-epoch test
    accuracy are found by name (a 12-epoch and a validation column beside them are not taken)."""
    path = write(tmp_path / "nats.csv", (
        "Index,ArchitectureString,CIFAR10ValidAccuracy200Epochs,CIFAR10TestAccuracy12Epochs,"
        "CIFAR10TestAccuracy200Epochs,CIFAR100TestAccuracy200Epochs,"
        "ImageNetTestAccuracy200Epochs,Params\n"
        f"9930,{BEST},91.55,88.0,94.36,73.51,46.34,1.289\n"
        f"1,{RESNET},90.83,87.0,93.97,70.86,43.63,1.073\n"))
    config = SearchConfig(space="nb201", dataset="cifar10", benchmark=str(path))
    assert open_benchmark(config).column == "CIFAR10TestAccuracy200Epochs"
    assert open_benchmark(config)(BEST) == pytest.approx(0.9436)
    assert open_benchmark(config.replace(dataset="cifar100")).column == \
        "CIFAR100TestAccuracy200Epochs"
    for name in ("imagenet16-120", "ImageNet16-120", "imagenet"):
        lookup = open_benchmark(config.replace(benchmark_column=name))
        assert lookup.column == "ImageNetTestAccuracy200Epochs"
        assert lookup(RESNET) == pytest.approx(0.4363)
    assert open_benchmark(config.replace(benchmark_column="cifar10-valid")).column == \
        "CIFAR10ValidAccuracy200Epochs"
    bench = BenchmarkTable.load(path)
    assert bench.accuracy(BEST, "CIFAR10TestAccuracy12Epochs") == pytest.approx(0.88)  # by name
    with pytest.raises(BenchmarkError, match="no accuracy column for 'mnist'"):
        bench.accuracy(BEST, "mnist")


@pytest.mark.parametrize("header, row, column", [
    ("cifar10_test_acc,arch_str", f"94.36,{BEST}", "cifar10_test_acc"),
    ("Arch,cifar10,CIFAR10TestAccuracy200Epochs", f"{BEST},94.36,90", "cifar10"),  # exact first
    ("architecture string,CIFAR-10 test accuracy", f"{BEST},94.36", "CIFAR-10 test accuracy"),
    ("ARCH-STRING,Cifar10_Test_Acc", f"{BEST},94.36", "Cifar10_Test_Acc"),
    ("arch,CIFAR10Rank,CIFAR10TestAccuracy", f"{BEST},3,94.36", "CIFAR10TestAccuracy"),
])
def test_spellings_of_the_long_names(tmp_path, header, row, column):
    path = write(tmp_path / "t.csv", f"{header}\n{row}\n")
    assert open_table(path, None, "cifar10").column == column


@pytest.mark.parametrize("name", ["ArchitectureString", "architecture_string", "Arch Str",
                                  "ARCH-STRING", "Genotype"])
def test_the_arch_column_is_found_by_its_name(tmp_path, name):
    """By name alone: the column's first cell is no arch string here."""
    header = ["CIFAR10TestAccuracy200Epochs", name]
    assert _arch_column(tmp_path / "t.csv", header, [(2, ["94.36", "resnet"])]) == 1


def test_two_columns_for_one_data_set_need_the_column_option(tmp_path):
    path = write(tmp_path / "t.csv", "arch,CIFAR10TestAccuracy,cifar10_test_acc\n"
                                     f"{BEST},94.36,94.0\n")
    with pytest.raises(BenchmarkError, match="several accuracy columns for 'cifar10'.*"
                                             "--benchmark-column"):
        open_table(path, None, "cifar10")
    assert open_table(path, "cifar10_test_acc", "cifar10")(BEST) == pytest.approx(0.94)


# ---------------------------------------------------------------------------- nats_bench


class FakeNatsAPI:
    """What the adapter uses of nats_bench's topology API, with NATS-Bench's record of BEST."""

    def __init__(self):
        self.calls = []

    def query_index_by_arch(self, arch):
        return 9930 if arch == BEST else -1

    def get_more_info(self, index, dataset, iepoch=None, hp="12", is_random=True):
        self.calls.append((index, dataset, hp, is_random))
        assert index == 9930
        return {"cifar10-valid": {"valid-accuracy": 91.55, "test-accuracy": 93.0},
                "cifar10": {"test-accuracy": 94.36},
                "cifar100": {"valid-accuracy": 73.49, "test-accuracy": 73.51}}[dataset]


@pytest.fixture
def fake_nats(monkeypatch):
    api = FakeNatsAPI()
    created = []
    module = types.ModuleType("nats_bench")

    def create(path, space, fast_mode=False, verbose=True):
        created.append((path, space, fast_mode, verbose))
        if space != "tss":
            raise ValueError("only tss here")
        return api

    module.create = create
    monkeypatch.setitem(sys.modules, "nats_bench", module)
    return api, created


def test_nats_bench_adapter(tmp_path, fake_nats):
    api, created = fake_nats
    folder = tmp_path / "NATS-tss-v1_0-3ffb9-simple"
    folder.mkdir()
    bench = BenchmarkTable.load(folder)
    assert created == [(str(folder), "tss", True, False)]
    assert "ImageNet16-120" in bench.datasets
    assert bench.accuracy(BEST, "cifar10") == pytest.approx(0.9436)
    assert bench.accuracy(BEST, "cifar10-valid") == pytest.approx(0.9155)  # its valid split
    assert bench.accuracy(BEST, "CIFAR100") == pytest.approx(0.7351)
    assert bench.accuracy(BEST.replace("|+|", "| + |"), "cifar10") == pytest.approx(0.9436)
    assert bench.accuracy(RESNET, "cifar10") is None
    # 200-epoch results averaged over seeds, each asked once
    assert api.calls == [(9930, "cifar10", "200", False), (9930, "cifar10-valid", "200", False),
                         (9930, "cifar100", "200", False)]
    single_file = write(tmp_path / "NATS-tss-v1_0-3ffb9-simple.pickle.pbz2", "")
    BenchmarkTable.load(single_file)
    assert created[-1][2] is False  # fast mode reads a directory only


def test_nats_bench_failures_are_benchmark_errors(tmp_path, fake_nats, monkeypatch):
    api, _ = fake_nats
    monkeypatch.setattr(api, "get_more_info", lambda *a, **k: {})
    bench = BenchmarkTable.load(tmp_path)
    with pytest.raises(BenchmarkError, match="no test-accuracy for architecture 9930"):
        bench.accuracy(BEST, "cifar10")
    monkeypatch.setitem(sys.modules, "nats_bench", None)  # not installed
    with pytest.raises(BenchmarkError, match="pip install nats_bench"):
        BenchmarkTable.load(tmp_path)


# ------------------------------------------------------------------------------ the search


def _full_table(path):
    """Every cell of the space with a distinct made-up accuracy, so any genotype is found."""
    rows = ["arch,cifar10"]
    accuracy = {}
    for n, ops in enumerate(itertools.product(NB201_PRIMITIVES, repeat=6)):
        arch = str(NB201Genotype(ops))
        accuracy[arch] = round(n / 15625 * 100, 4)
        rows.append(f"{arch},{accuracy[arch]}")
    path.write_text("\n".join(rows) + "\n")
    return accuracy


SEARCH = ["search", "--space", "nb201", "--preset", "tiny", "--subset", "64", "--no-progress",
          "--no-plots"]


def test_search_logs_the_benchmark_accuracy_every_epoch(tmp_path, capsys):
    accuracy = _full_table(tmp_path / "all.csv")
    out = tmp_path / "run"
    assert main([*SEARCH, "--epochs", "2", "--benchmark", str(tmp_path / "all.csv"),
                 "--benchmark-column", "cifar10", "--out", str(out)]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2
    ranked = sorted(accuracy.values())
    for record in records:
        arch = record["genotype"]["arch"]
        assert record["benchmark_acc"] == pytest.approx(accuracy[arch] / 100)
        # the share of the table's cells at or below it, counted here
        at_or_below = sum(a <= accuracy[arch] for a in ranked)
        assert record["benchmark_percentile"] == pytest.approx(100 * at_or_below / 15625)
    printed = capsys.readouterr().out
    final = NB201Genotype.load(out / "genotype.json")
    lines = printed.splitlines()
    for record, line in zip(records, [line for line in lines if line.startswith("epoch ")]):
        assert f"  bench {accuracy[record['genotype']['arch']]:.2f}%  " in line
    final_pct = 100 * sum(a <= accuracy[str(final)] for a in ranked) / 15625
    row = next(line for line in lines if line.startswith("  benchmark cifar10 "))
    assert row.split()[2:4] == [f"{accuracy[str(final)]:.2f}%", "(percentile"]
    assert row.split()[4] == f"{final_pct:.1f})"


def test_percentile_counts_ties_and_the_best_is_100(tmp_path):
    path = write(tmp_path / "t.csv", f"arch,cifar10\n{BEST},94.37\n{RESNET},90\n{ALL_NONE},90\n")
    table = BenchmarkTable.load(path)
    assert table.percentile(table.accuracy(BEST, "cifar10"), "cifar10") == pytest.approx(100)
    tied = table.accuracy(RESNET, "cifar10")
    assert table.percentile(tied, "cifar10") == pytest.approx(200 / 3)  # two cells at 90
    assert table.percentile(0.5, "cifar10") == 0


def test_search_with_a_bad_benchmark_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*SEARCH, "--epochs", "1", "--benchmark", str(tmp_path / "none.csv"),
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "none.csv does not exist" in err and "Traceback" not in err
    assert not out.exists()
    write(tmp_path / "t.csv", f"arch,cifar10\n{BEST},94.36\n")
    assert main([*SEARCH, "--epochs", "1", "--benchmark", str(tmp_path / "t.csv"),
                 "--out", str(out)]) == 2  # digits has no column of its own
    assert "--benchmark-column" in capsys.readouterr().err
    assert not out.exists()


def test_compare_on_nb201_scores_every_run_by_look_up(tmp_path):
    """`nasp compare` on the NAS-Bench-201 space with a table: every run's final accuracy is its
    genotype's table value, and random search returns the best of the cells it sampled."""
    accuracy = _full_table(tmp_path / "all.csv")
    out = tmp_path / "cmp"
    assert main(["compare", "--space", "nb201", "--preset", "tiny", "--subset", "64",
                 "--epochs", "2", "--random-samples", "5", "--benchmark",
                 str(tmp_path / "all.csv"), "--benchmark-column", "cifar10", "--strategies",
                 "nasp", "random", "--seeds", "0", "--out", str(out), "--no-progress"]) == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [r["strategy"] for r in runs] == ["nasp", "random"]
    for r in runs:
        arch = r["genotype"]["arch"]
        assert r["final_accuracy"] == pytest.approx(accuracy[arch] / 100)
    records = [json.loads(line) for line in
               (out / "random-seed0" / "search" / "metrics.jsonl").read_text().splitlines()]
    scores = [s for record in records for s in record["random"]["scores"]]
    assert len(scores) == 5  # all K samples scored by look-up, none trained
    assert all(record["train_loss"] is None for record in records)
    assert runs[1]["final_accuracy"] == pytest.approx(max(scores))
    assert "| random | nb201 | 1 |" in (out / "report.md").read_text()


def test_full_table_look_ups_equal_the_rows_read_with_the_csv_module(tmp_path):
    """Every 97th row of a table of the whole space, read back with the csv module: the look-up
    of its arch string (as a string and as a genotype) is its value as a fraction."""
    _full_table(tmp_path / "all.csv")
    bench = BenchmarkTable.load(tmp_path / "all.csv")
    with open(tmp_path / "all.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 ** 6
    for row in rows[::97]:
        expected = float(row["cifar10"]) / 100
        assert bench.accuracy(row["arch"], "cifar10") == pytest.approx(expected, abs=1e-12)
        genotype = NB201Genotype.from_string(row["arch"])
        assert bench.accuracy(genotype, "cifar10") == pytest.approx(expected, abs=1e-12)
