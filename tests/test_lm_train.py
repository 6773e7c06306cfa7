"""Training a recurrent cell's language model from scratch (DARTS's rnn/train.py protocol) on a
tiny fake recurrent space: the switch to averaged SGD, the lr of each step, the averaged weights
kept in best.pt, nasp test's perplexities against a direct computation, exact resume."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from lm_fakes import FakeRNNGenotype, FakeRNNSpace, write_corpus
from test_resume import interrupt_after_checkpoint, metrics

from nasp.apps.cli import main
from nasp.config import train_preset
from nasp.data import TokenStream, load_corpus
from nasp.engine.checkpoints import BEST, LAST
from nasp.engine.train import resume, train
from nasp.engine.train_text import TextTrainSession, build_language_model
from nasp.errors import ConfigError, RunInterrupted
from nasp.spaces import SPACES
from nasp.tasks import TokenWindow

pytestmark = pytest.mark.usefixtures("one_thread", "fake_rnn")

QUIET = dict(progress=False, plots=False, log=lambda line: None)
CELL = FakeRNNGenotype.from_string("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+"
                                   "|skip_connect~0|nor_conv_3x3~1|avg_pool_3x3~2|")


@pytest.fixture
def fake_rnn(monkeypatch):
    monkeypatch.setitem(SPACES, "fake-rnn", FakeRNNSpace)


def config(tmp_path, name, **changes):
    if not (tmp_path / "penn").exists():
        write_corpus(tmp_path / "penn", lines=(120, 20, 12))
    values = dict(data_dir=str(tmp_path), channels=8, batch_size=4, bptt=6, epochs=8,
                  subset=None, nonmono=2, device="cpu", out=str(tmp_path / name))
    return train_preset("ptb-cpu", **{**values, **changes})


def switch_epoch(val_losses, nonmono):
    """DARTS's rule (rnn/train.py): the epoch after whose evaluation SGD becomes ASGD."""
    seen = []
    for epoch, loss in enumerate(val_losses, start=1):
        if len(seen) > nonmono and loss > min(seen[:-nonmono]):
            return epoch
        seen.append(loss)
    return None


def test_training_switches_to_averaged_sgd_as_darts_and_keeps_the_averaged_weights(
        tmp_path, monkeypatch):
    steps, lengths = [], []
    sgd_step, asgd_step, stream_next = (torch.optim.SGD.step, torch.optim.ASGD.step,
                                        TokenStream.__next__)

    iterates, averaged_steps = [], {}  # the weights after each ASGD step; their count by epoch

    def spy(step):
        def wrapped(self, *args, **kwargs):
            steps.append((type(self).__name__, self.param_groups[0]["lr"]))
            out = step(self, *args, **kwargs)
            if isinstance(self, torch.optim.ASGD):
                iterates.append([p.detach().clone() for p in self.param_groups[0]["params"]])
            return out
        return wrapped

    epoch_done = TextTrainSession.epoch_done

    def count(self, run, record):
        averaged_steps[record["epoch"]] = len(iterates)
        return epoch_done(self, run, record)

    def next_window(self):
        window, targets = stream_next(self)
        lengths.append(window.steps)
        return window, targets

    monkeypatch.setattr(torch.optim.SGD, "step", spy(sgd_step))
    monkeypatch.setattr(torch.optim.ASGD, "step", spy(asgd_step))
    monkeypatch.setattr(TokenStream, "__next__", next_window)
    monkeypatch.setattr(TextTrainSession, "epoch_done", count)
    result = train(CELL, config(tmp_path, "run"), **QUIET)
    history = result.history
    switched = switch_epoch([r["val_loss"] for r in history], 2)
    assert switched is not None and switched < len(history)  # the test sees a switch
    assert [r["optimizer"] for r in history] == ["sgd"] * switched + ["asgd"] * (
        len(history) - switched)
    # every step's lr: 20 times the window's length over bptt 6; SGD until the switch
    assert len(steps) == len(lengths) and len(set(lengths)) > 1
    for (_, lr), n in zip(steps, lengths):
        assert lr == pytest.approx(20.0 * n / 6)
    kinds = [kind for kind, _ in steps]
    assert kinds == sorted(kinds, reverse=True) and "ASGD" in kinds  # SGD..., then ASGD...
    # best.pt: the lowest validation loss, with the weights it was measured with: after the
    # switch, the mean of the iterates since (torch's ASGD with t0 = 0, lambd = 0 averages from
    # its second step on, as DARTS ran it)
    best = min(history, key=lambda r: r["val_loss"])
    assert result.best["epoch"] == best["epoch"] and best["optimizer"] == "asgd"
    saved = torch.load(tmp_path / "run" / BEST, weights_only=True)["model"]
    n = averaged_steps[best["epoch"]]
    for i, name in enumerate(saved):
        mean = torch.stack([weights[i] for weights in iterates[1:n]]).mean(0)
        torch.testing.assert_close(saved[name], mean, rtol=1e-5, atol=1e-6)


@torch.no_grad()
def direct_perplexity(net, ids):
    """One forward over the whole split as one stream (batch 1) from zeros."""
    net.eval()
    log_probs = net(TokenWindow(ids[:-1].reshape(-1, 1)))
    return math.exp(float(F.nll_loss(log_probs.double(), ids[1:])))


def test_nasp_test_reports_validation_and_test_perplexity(tmp_path, capsys):
    train(CELL, config(tmp_path, "run", epochs=2), **QUIET)
    assert main(["test", str(tmp_path / "run" / BEST)]) == 0
    out = capsys.readouterr().out
    checkpoint = torch.load(tmp_path / "run" / BEST, weights_only=True)
    net = build_language_model(CELL, config(tmp_path, "x"), 13)
    net.load_state_dict(checkpoint["model"])
    corpus = load_corpus("ptb", tmp_path)
    test = direct_perplexity(net, corpus.test)
    assert f"test perplexity {test:.2f}" in out and "validation perplexity" in out


def test_training_interrupted_mid_epoch_after_the_switch_resumes_exactly(tmp_path, monkeypatch):
    train(CELL, config(tmp_path, "straight", checkpoint_every=5), **QUIET)
    interrupt_after_checkpoint(monkeypatch, LAST, lambda c: c["step"] > 0
                               and c["optimizer"]["kind"] == "asgd")
    with pytest.raises(RunInterrupted):
        train(CELL, config(tmp_path, "stopped", checkpoint_every=5), **QUIET)
    monkeypatch.undo()
    monkeypatch.setitem(SPACES, "fake-rnn", FakeRNNSpace)
    resume(tmp_path / "stopped", **QUIET)
    a = torch.load(tmp_path / "straight" / LAST, weights_only=True)
    b = torch.load(tmp_path / "stopped" / LAST, weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert metrics(tmp_path / "straight") == metrics(tmp_path / "stopped")


def test_an_image_cell_on_a_text_corpus_is_refused(tmp_path):
    from nasp.spaces import builtin_genotypes

    with pytest.raises(ConfigError, match="is a text corpus, and the cell to train is an "
                                          "image cell"):
        train(builtin_genotypes()["DARTS_V2"], config(tmp_path, "run"), **QUIET)
    with pytest.raises(ConfigError, match="the cell is a recurrent cell .* --dataset digits holds "
                                          "images: .*--preset ptb-cpu"):
        train(CELL, train_preset("tiny", out=str(tmp_path / "img")), **QUIET)


def test_info_counts_a_recurrent_cell_language_model(tmp_path, capsys):
    """DARTS_V2's model at 850 units on 10,000 words, as the reference note counts it: the tied
    embedding, W0 (1700 x 1700), 8 node matrices (850 x 1700) and the decoder's bias."""
    assert main(["info", "DARTS_V2_RNN"]) == 0
    expected = 10_000 * 850 + 1700 * 1700 + 8 * 850 * 1700 + 10_000
    assert f"850 units, 10000 words: {expected:,} parameters (22.96M)" in capsys.readouterr().out
    train(CELL, config(tmp_path, "run", epochs=1), **QUIET)
    assert main(["info", str(tmp_path / "run" / BEST)]) == 0
    net = build_language_model(CELL, config(tmp_path, "x"), 13)
    count = sum(p.numel() for p in net.parameters())
    assert f", 13 words: {count:,} parameters" in capsys.readouterr().out


def test_training_draws_its_curves_with_perplexities(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import nasp.engine.pictures as pictures

    saved, real = {}, pictures.save
    monkeypatch.setattr(pictures, "save", lambda fig, path: saved.setdefault(
        path.name, fig) and real(fig, path))
    monkeypatch.setattr(pictures, "draw_cell", lambda *args, **kwargs: [])  # not drawn: faster
    lines = []
    train(CELL, config(tmp_path, "run", epochs=2), progress=False, log=lines.append)
    assert (tmp_path / "run" / "curves.png").is_file() and "timing.png" in saved
    assert any(line.startswith("pictures:") for line in lines)
    axes = saved["curves.png"].axes
    assert [ax.get_ylabel() for ax in axes] == ["loss", "perplexity", "learning rate"]
    assert axes[1].get_yscale() == "log"
    assert [line.get_label() for line in axes[1].get_lines()] == ["train ppl", "val ppl"]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert list(axes[1].get_lines()[1].get_ydata()) == [r["val_ppl"] for r in records]
