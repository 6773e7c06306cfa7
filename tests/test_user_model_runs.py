"""The run directory of ``nasp.search(model, ...)`` as the built-in spaces': pictures and
report.html at the end, ``nasp plot`` / ``nasp report`` on it afterwards, its genotype files read
by the genotype loaders, the size of the fixed network in the summary, the weight diagnostics in
metrics.jsonl; and a user's regression loss written as a loss (no accuracy, no '%')."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

import nasp
from nasp.apps.cli import main
from nasp.engine.checkpoints import model_info
from nasp.errors import GenotypeError
from nasp.nn import Choice, InputChoice
from nasp.spaces import load_genotype, resolve_genotype

PICTURES = {"curves.png", "timing.png", "genotype_evolution.png", "arch_weights.png",
            "arch_evolution.png", "diagnostics.png"}


class Small(nn.Module):
    """One Choice of a hidden layer (two with 8x8 weights, one without parameters), one of the
    activation, and an InputChoice of 1 of 2 inputs."""

    def __init__(self, outputs: int = 3):
        super().__init__()
        self.inp = nn.Linear(4, 8)
        self.hidden = Choice([nn.Linear(8, 8), nn.Identity(), nn.Linear(8, 8, bias=False)],
                             label="hidden")
        self.act = Choice([nn.ReLU(), nn.Tanh()], label="act")
        self.skip = InputChoice(2, keep=1, label="skip")
        self.out = nn.Linear(8, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.inp(x))
        return self.out(self.skip([self.hidden(h), h]))


def _data(n: int = 32):
    x = torch.randn(n, 4, generator=torch.Generator().manual_seed(0))
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long()


def _search(run, strategy="nasp", lines=None, **kwargs):
    torch.manual_seed(0)
    model = Small()
    x, y = kwargs.pop("data", _data())
    arch = nasp.search(model, (x[:16], y[:16]), (x[16:], y[16:]), strategy, epochs=2,
                       batch_size=8, run_dir=run, progress=False, device="cpu",
                       log=(lines.append if lines is not None else lambda line: None), **kwargs)
    return model, arch


def test_a_model_run_has_the_pictures_and_report_and_nasp_plot_and_report_redraw_them(
        tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    run = tmp_path / "run"
    lines: list[str] = []
    model, arch = _search(run, lines=lines)
    assert PICTURES | {"report.html"} <= {p.name for p in run.iterdir()}
    assert any(line.startswith("report: ") for line in lines)
    for name in PICTURES | {"report.html"}:
        (run / name).unlink()
    assert main(["plot", str(run)]) == 0
    assert PICTURES <= {p.name for p in run.iterdir()}
    # nasp report draws as nasp plot just did, then writes the page: the drawing is skipped
    monkeypatch.setattr("nasp.engine.report.plot_run", lambda run, use_dot=None: [])
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text()
    # the chosen option of every label, named as the model's Choice names its options (read
    # here from the model, not from the run's files)
    for label, module in (("hidden", model.hidden), ("act", model.act)):
        chosen = module.option_names()[arch[label]]
        assert f"<td><code>{chosen}</code></td>" in page
    assert f"skip&lt;-{arch['skip'][0]}: input" in page
    assert "data:image/png" in page and "nasp search --config" not in page  # no CLI re-run
    assert "in the darts space" not in page


def test_the_genotype_files_of_a_model_run_load_and_fix_the_model(tmp_path):
    model, arch = _search(tmp_path / "run", plots=False)
    for spec in (tmp_path / "run" / "arch.json", tmp_path / "run" / "genotype.json",
                 tmp_path / "run"):
        genotype = resolve_genotype(spec)
        assert dict(genotype) == {k: tuple(v) if isinstance(v, list) else v
                                  for k, v in arch.items()}
    fixed = nasp.fix(model, load_genotype(tmp_path / "run" / "arch.json"))
    assert fixed(_data()[0]).shape == (32, 3)
    # a model's architecture has no network without the model: a clear error, not a crash
    with pytest.raises(GenotypeError, match="nasp.fix"):
        model_info(tmp_path / "run")
    assert main(["info", str(tmp_path / "run")]) == 2


def test_the_summary_counts_the_fixed_network_and_the_metrics_hold_the_weight_diagnostics(
        tmp_path):
    lines: list[str] = []
    _, arch = _search(tmp_path / "run", "darts", lines=lines, plots=False)
    # by hand: inp 4*8+8, out 8*3+3, the hidden option's own; FLOPs 2 per multiply-add
    hidden = [8 * 8 + 8, 0, 8 * 8][arch["hidden"]]
    params = 40 + 27 + hidden
    flops = 2 * (4 * 8 + (64 if arch["hidden"] != 1 else 0) + 8 * 3)
    size = [line for line in lines if "evaluation network" in line]
    assert size == [f"  evaluation network (nasp.fix(model, arch), inputs of 4): {params} "
                    f"parameters, {flops} FLOPs"]
    for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        entropy = record["diagnostics"]["entropy"]["per_edge"]
        for label, rows in record["arch"].items():
            for row, h in zip(rows, entropy[label]):
                p = [math.exp(a) / sum(math.exp(b) for b in row) for a in row]
                assert h == pytest.approx(-sum(q * math.log(q) for q in p), rel=1e-9)
        assert set(record["diagnostics"]["changed_edges"]) == {"hidden", "act", "skip", "total"}


@pytest.mark.parametrize("strategy", ["random", "darts"])
def test_a_regression_loss_is_written_as_a_loss_without_percent(tmp_path, strategy):
    x = torch.randn(32, 4, generator=torch.Generator().manual_seed(1))
    y = torch.stack([x[:, 0], x[:, 1] * x[:, 2], x[:, 3].abs()], dim=1)
    lines: list[str] = []
    _search(tmp_path / "run", strategy, lines=lines, data=(x, y),
            loss_fn=nn.functional.mse_loss, plots=False)
    records = [json.loads(line)
               for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    measure = records[-1]["val_measure"]
    losses = [r[f"{measure}_val_loss"] for r in records]
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 2 and not any("%" in line for line in epochs)
    for line, loss in zip(epochs, losses):
        assert f"{measure} val loss {loss:.4g}" in line
    if strategy == "random":  # one candidate per epoch, each scored by its validation loss
        assert f"best #1/2 loss {losses[0]:.4g}" in epochs[0]
        best = min(range(2), key=lambda i: (losses[i], i))
        assert f"best #{best + 1}/2 loss {losses[best]:.4g}" in epochs[1]
    row = next(line for line in lines if line.startswith(f"  {measure} val"))
    best = min(range(2), key=lambda i: (losses[i], i))
    assert row.split() == [measure, "val", "loss", f"{losses[-1]:.4g}", f"{losses[best]:.4g}",
                           "(epoch", f"{best + 1})"]
    assert "%" not in row and "acc" not in row
