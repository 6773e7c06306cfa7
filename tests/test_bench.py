"""nasp bench on a tiny supernet: every variant runs, and the report is complete."""

import json

import torch

from nasp.apps.cli import main
from nasp.apps.step_timing import (
    VARIANTS,
    BenchSetup,
    build_variant,
    format_table,
    random_batch,
    run_bench,
)
from nasp.spaces import SPACES
from nasp.tasks.windows import TokenWindow

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


# a text space (a recurrent cell in a language model), found by its data kind
TEXT_SPACE = next(n for n, cls in SPACES.items() if getattr(cls, "data_kind", "") == "text")
TINY_TEXT = BenchSetup(space=TEXT_SPACE, layers=1, channels=6, batch_size=3, bptt=4, vocab=40,
                       primitives=None)


def test_text_batches_are_token_windows_and_their_next_words():
    g = torch.Generator().manual_seed(0)
    window, targets = random_batch(TINY_TEXT, g, torch.device("cpu"))
    assert isinstance(window, TokenWindow) and window.state is None
    assert window.tokens.shape == (4, 3) and targets.shape == (12,)
    assert 0 <= int(window.tokens.min()) and int(window.tokens.max()) < 40
    # time-major targets: the word after tokens[t, b] is targets[t * B + b]
    assert torch.equal(targets.view(4, 3)[:-1], window.tokens[1:])


def test_every_variant_runs_on_a_text_space():
    for name in VARIANTS:
        build_variant(name, TINY_TEXT)()
    report = run_bench(TINY_TEXT, ["child"], repeats=1, warmup=0, memory=True)
    assert report["setup"]["space"] == TEXT_SPACE
    assert report["variants"][0]["peak_memory_bytes"] >= 0  # the subprocess rebuilt the setup


def test_cli_on_a_text_space_takes_its_paper_sizes_where_none_given(tmp_path):
    from nasp.config import preset

    path = tmp_path / "bench.json"
    assert main(["bench", "--space", TEXT_SPACE, "--channels", "6", "--bptt", "3", "--vocab", "30",
                 "--batch-size", "2", "--repeats", "1", "--warmup", "0", "--no-memory",
                 "--variants", "nasp", "--json", str(path)]) == 0
    setup = json.loads(path.read_text())["setup"]
    assert setup["layers"] == preset("paper", space=TEXT_SPACE).layers
    assert (setup["space"], setup["channels"], setup["bptt"], setup["vocab"]) == (TEXT_SPACE, 6, 3,
                                                                                  30)
    assert setup["primitives"] is None  # the space's own op set
