"""Pictures of runs: cell diagrams, learning curves, architecture weights; plot CLI."""

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from nasp.apps.cli import main
from nasp.config import SearchConfig, train_preset
from nasp.engine.pictures import cell_dot, draw_cell, plot_run
from nasp.engine.search_pictures import relative_weights
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


def fake_search_run(path, epochs=3, with_arch=True, strategy="darts", spread=1.0):
    """The files a search run writes: config.yaml, metrics.jsonl (with genotypes, weights,
    diagnostics, a benchmark look-up the table lacks in epoch 2), arch.pt. The weights are
    ``start + spread * noise``; NASP's start at 0.5."""
    path.mkdir()
    config = SearchConfig(strategy=strategy, primitives="darts-7")
    (path / "config.yaml").write_text(config.to_yaml())
    g = torch.Generator().manual_seed(0)
    start = 0.5 if strategy == "nasp" else 0.0

    def weights():
        return start + spread * torch.randn(14, 7, generator=g, dtype=torch.float64)

    genotypes = [DARTS_V2, BUILTIN_GENOTYPES["DARTS_V1"], DARTS_V2][:epochs]
    with open(path / "metrics.jsonl", "w") as f:
        for e, genotype in enumerate(genotypes, start=1):
            record = {"epoch": e, "lr": 0.025 / e, "train_loss": 2.0 / e, "train_acc": 0.1 * e,
                      "arch_loss": 2.1 / e, "child_val_loss": 2.2 / e, "child_val_acc": 0.1 * e,
                      "seconds": 1.0, "genotype": genotype.to_dict(),
                      "diagnostics": {"param_free": {"normal": e, "reduce": 1, "total": e + 1,
                                                     "edges": 16},
                                      "changed_edges": {"normal": 3 - e, "total": 3 - e}},
                      "benchmark_acc": None if e == 2 else 0.5 + 0.1 * e,
                      "benchmark_percentile": None if e == 2 else 50.0 + e}
            if with_arch:
                record["arch"] = {t: weights().tolist() for t in ("normal", "reduce")}
            f.write(json.dumps(record) + "\n")
    torch.save({t: weights() for t in ("normal", "reduce")}, path / "arch.pt")
    return path


def test_plot_search_run(tmp_path):
    run = fake_search_run(tmp_path / "search")
    names = {p.name for p in plot_run(run, use_dot=False)}
    assert names == {"cell_normal.dot", "cell_normal.png", "cell_reduce.dot", "cell_reduce.png",
                     "curves.png", "timing.png", "genotype_evolution.png", "arch_weights.png",
                     "arch_evolution.png", "diagnostics.png", "benchmark.png"}
    assert all(is_png(run / name) for name in names if name.endswith(".png"))


@pytest.fixture
def figures(monkeypatch):
    """The matplotlib figures of the engine's pictures by file name, as they are saved."""
    import nasp.engine.pictures as pictures
    import nasp.engine.search_pictures as search_pictures

    saved = {}

    def save(fig, path):
        saved[Path(path).name] = fig
        return real(fig, path)

    real = search_pictures.save
    monkeypatch.setattr(pictures, "save", save)
    monkeypatch.setattr(search_pictures, "save", save)
    return saved


def test_small_weight_changes_fill_the_axes(tmp_path, figures):
    """A short NASP search moves A by thousandths around 0.5: the pictures show the weights
    relative to their edge, on axes scaled to them, not flat lines on a 0..1 scale."""
    run = fake_search_run(tmp_path / "search", strategy="nasp", spread=0.002)
    plot_run(run, use_dot=False)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    largest = max((torch.tensor(r["arch"][t]) - torch.tensor(r["arch"][t]).mean(-1, True))
                  .abs().max().item() for r in records for t in ("normal", "reduce"))
    panels = figures["arch_evolution.png"].axes  # those of its blocks (subfigures) too
    assert len(panels) == 28
    for ax in panels:
        low, high = ax.get_ylim()
        assert -high == pytest.approx(low) and largest <= high < 2 * largest  # fits the data
    thick = [line for ax in panels for line in ax.get_lines() if line.get_linewidth() > 2]
    assert len(thick) == 16  # the op the final cell keeps on each of its 2 x 8 edges
    for ax in figures["arch_weights.png"].axes[::2]:  # the heat maps (then their colour bars)
        low, high = ax.get_images()[0].get_clim()
        assert -high == pytest.approx(low) and high < 0.05
        assert len(ax.collections[0].get_offsets()) == 8  # rings on the kept ops


def test_relative_weights_are_centred_per_edge():
    A = torch.rand(14, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(relative_weights(A, softmax=False), A - A.mean(-1, True))
    torch.testing.assert_close(relative_weights(A, softmax=True), A.softmax(-1) - 1 / 7)


def test_every_picture_is_readable_at_its_size(tmp_path, figures):
    """The report shows every picture at its own size: none wider than a page, no text under
    8 points (12 pixels at 110 dpi)."""
    from matplotlib.text import Text

    run = fake_search_run(tmp_path / "search")
    written = [p for p in plot_run(run, use_dot=False) if p.suffix == ".png"]
    assert len(figures) == len(written) - 2  # all but the cells, which their space draws
    for path in written:
        header = path.read_bytes()[16:24]
        width, height = int.from_bytes(header[:4], "big"), int.from_bytes(header[4:], "big")
        assert width <= 1300 and height <= 1700, path.name
    for name, fig in figures.items():
        texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
        assert texts and min(t.get_fontsize() for t in texts) >= 8, name


def test_pictures_of_records_that_lack_keys(tmp_path):
    """An older run's metrics lack keys a newer one writes, a newer one may add keys: a missing
    value is a gap, never an error."""
    run = fake_search_run(tmp_path / "search")
    lines = (run / "metrics.jsonl").read_text().splitlines()
    first, second, third = (json.loads(line) for line in lines)
    del first["child_val_acc"], first["diagnostics"], second["seconds"]
    third["val_acc"] = 0.5
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n"
                                               for r in (first, second, third)))
    names = {p.name for p in plot_run(run, use_dot=False)}
    assert {"curves.png", "timing.png", "diagnostics.png", "benchmark.png"} <= names


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
    report = (tmp_path / "train" / "report.html").read_text()
    assert "No pictures" in report and "torch-nasp[viz]" in report and "<img" not in report


def test_curves_of_a_text_search_show_perplexities_and_of_images_accuracies(tmp_path, figures):
    from nasp.engine.pictures import plot_curves

    text = [{"epoch": e, "lr": 20.0, "train_loss": 6.0 - e, "train_acc": 0.1,
             "train_ppl": 400.0 / e, "supernet_val_loss": 5.5, "supernet_val_acc": 0.1,
             "supernet_val_ppl": 300.0 / e, "child_val_ppl": 999.0, "child_bn_val_ppl": 350.0,
             "val_measure": "supernet"} for e in (1, 2)]
    plot_curves(text, tmp_path / "curves.png")
    axes = figures["curves.png"].axes
    assert [ax.get_ylabel() for ax in axes] == ["loss", "perplexity", "learning rate"]
    ppl = {line.get_label(): list(line.get_ydata()) for line in axes[1].get_lines()}
    # DARTS's child on supernet weights without its own statistics is not shown (as for images)
    assert ppl == {"train ppl": [400.0, 200.0], "supernet val ppl": [300.0, 150.0],
                   "child bn val ppl": [350.0, 350.0]}
    assert axes[1].get_yscale() == "log"
    images = [{k: v for k, v in r.items() if not k.endswith("_ppl")} for r in text]
    plot_curves(images, tmp_path / "image.png")
    axes = figures["image.png"].axes
    assert [ax.get_ylabel() for ax in axes] == ["loss", "accuracy (%)", "learning rate"]
    assert [line.get_ydata()[0] for line in axes[1].get_lines()] == [10.0, 10.0]
