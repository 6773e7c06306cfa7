"""Pictures of runs: cell diagrams, learning curves, architecture weights; plot CLI."""

import json
import shutil
import sys

import pytest
import torch

from nasp.apps.cli import main
from nasp.config import SearchConfig, train_preset
from nasp.engine.pictures import cell_dot, draw_cell, plot_run
from nasp.engine.train import train
from nasp.errors import MissingExtraError, RunDirError
from nasp.spaces.darts_cnn.genotype import BUILTIN_GENOTYPES

pytestmark = pytest.mark.usefixtures("one_thread")

PNG = b"\x89PNG\r\n\x1a\n"
DARTS_V2 = BUILTIN_GENOTYPES["DARTS_V2"]


@pytest.fixture(autouse=True)
def needs_matplotlib():
    pytest.importorskip("matplotlib", reason="pictures need the viz extra (matplotlib)")


def is_png(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG


def test_cell_dot_has_every_edge_labelled_with_its_op():
    text = cell_dot(DARTS_V2, "normal")
    assert text.startswith('digraph "normal"')
    op_edges = [line for line in text.splitlines() if "-> " in line and "label=" in line]
    assert len(op_edges) == 8
    assert '"c_{k-2}" -> "0" [label="sep_conv_3x3"];' in text
    assert '"0" -> "3" [label="dil_conv_3x3"];' in text  # (dil_conv_3x3, 2): state 2 = node 0
    assert sum('-> "c_{k}"' in line for line in text.splitlines()) == 4


def test_draw_cell_without_graphviz(tmp_path):
    written = draw_cell(DARTS_V2, "reduce", tmp_path / "cell_reduce", use_dot=False)
    assert [p.name for p in written] == ["cell_reduce.dot", "cell_reduce.png"]
    assert is_png(tmp_path / "cell_reduce.png")


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz dot is not installed")
def test_draw_cell_with_graphviz(tmp_path):
    draw_cell(DARTS_V2, "normal", tmp_path / "cell", use_dot=True)
    assert is_png(tmp_path / "cell.png")


def fake_search_run(path, epochs=3, with_arch=True):
    """The files a search run writes: config.yaml, metrics.jsonl (with genotypes), arch.pt."""
    path.mkdir()
    config = SearchConfig(strategy="darts", primitives="darts-7")
    (path / "config.yaml").write_text(config.to_yaml())
    g = torch.Generator().manual_seed(0)
    genotypes = [DARTS_V2, BUILTIN_GENOTYPES["DARTS_V1"], DARTS_V2][:epochs]
    with open(path / "metrics.jsonl", "w") as f:
        for e, genotype in enumerate(genotypes, start=1):
            record = {"epoch": e, "lr": 0.025 / e, "train_loss": 2.0 / e, "train_acc": 0.1 * e,
                      "arch_loss": 2.1 / e, "child_val_loss": 2.2 / e, "child_val_acc": 0.1 * e,
                      "seconds": 1.0, "genotype": genotype.to_dict()}
            if with_arch:
                record["arch"] = {t: torch.randn(14, 7, generator=g).tolist()
                                  for t in ("normal", "reduce")}
            f.write(json.dumps(record) + "\n")
    torch.save({t: torch.randn(14, 7, generator=g) for t in ("normal", "reduce")},
               path / "arch.pt")
    return path


def test_plot_search_run(tmp_path):
    run = fake_search_run(tmp_path / "search")
    names = {p.name for p in plot_run(run, use_dot=False)}
    assert names == {"cell_normal.dot", "cell_normal.png", "cell_reduce.dot", "cell_reduce.png",
                     "curves.png", "genotype_evolution.png", "arch_weights.png",
                     "arch_evolution.png"}
    assert all(is_png(run / name) for name in names if name.endswith(".png"))


def test_plot_search_run_without_per_epoch_weights(tmp_path):
    run = fake_search_run(tmp_path / "search", with_arch=False)
    names = {p.name for p in plot_run(run, use_dot=False)}
    assert "arch_evolution.png" not in names and "arch_weights.png" in names


def test_train_writes_pictures_and_plot_redraws_them(tmp_path, capsys):
    lines = []
    config = train_preset("tiny", device="cpu", subset=32, channels=4, epochs=2,
                          out=str(tmp_path / "train"))
    train("DARTS_V2", config, progress=False, log=lines.append)
    run = tmp_path / "train"
    for name in ("cell_normal.png", "cell_reduce.png", "curves.png"):
        assert is_png(run / name), name
    assert any(line.startswith("pictures:") for line in lines)
    (run / "curves.png").unlink()
    assert main(["plot", str(run), "--no-dot"]) == 0
    assert str(run / "curves.png") in capsys.readouterr().out
    assert is_png(run / "curves.png")


def test_plot_errors(tmp_path, capsys):
    with pytest.raises(RunDirError, match="does not exist"):
        plot_run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    assert main(["plot", str(tmp_path / "empty")]) == 2
    assert "nothing to draw" in capsys.readouterr().err


def test_without_matplotlib_plot_says_how_to_install_and_train_still_works(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    run = fake_search_run(tmp_path / "search")
    with pytest.raises(MissingExtraError):
        plot_run(run)
    assert main(["plot", str(run)]) == 2
    err = capsys.readouterr().err
    assert 'pip install "torch-nasp[viz]"' in err and err.count("\n") == 1
    lines = []
    train("DARTS_V2", train_preset("tiny", device="cpu", subset=32, channels=4, epochs=1,
                                   out=str(tmp_path / "train")), progress=False, log=lines.append)
    assert [line for line in lines if line.startswith("no pictures:")]
    assert (tmp_path / "train" / "best.pt").is_file()
