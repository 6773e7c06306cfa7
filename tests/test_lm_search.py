"""The search on a text corpus (a recurrent space on Penn Treebank's layout): perplexities in
the records and on the console (the DARTS recurrent space, tiny); on a tiny fake recurrent space
(a few times faster): the lr of each weight step scaled by its window's length, and an exact
resume from a mid-epoch checkpoint, also after SIGKILL."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lm_fakes import FakeRNNSpace, write_corpus
from test_resume import (
    SRC,
    assert_same_arch,
    interrupt_after_checkpoint,
    kill_after_checkpoint,
    metrics,
)

from nasp.config import SearchConfig, load_config, preset
from nasp.engine.search import CHECKPOINT, resume_search, search
from nasp.errors import ConfigError, RunInterrupted
from nasp.spaces import SPACES, genotype_from_dict
from nasp.strategies import NASP

pytestmark = pytest.mark.usefixtures("one_thread", "fake_rnn")


@pytest.fixture
def fake_rnn(monkeypatch):
    monkeypatch.setitem(SPACES, "fake-rnn", FakeRNNSpace)


def config(tmp_path, name, **changes):
    if not (tmp_path / "penn").exists():
        write_corpus(tmp_path / "penn")
    values = dict(space="fake-rnn", dataset="ptb", data_dir=str(tmp_path), layers=1, channels=6,
                  batch_size=4, bptt=5, epochs=2, device="cpu", w_lr=1.0, w_lr_min=1.0,
                  grad_clip=0.25, out=str(tmp_path / name))
    return SearchConfig(**{**values, **changes})


@pytest.mark.parametrize("strategy", ["nasp", "darts"])
def test_a_text_search_on_darts_rnn_records_and_prints_perplexities(tmp_path, strategy):
    """The DARTS recurrent space itself, tiny: NASP reports its child, DARTS its supernet and
    the child with the search cell's BatchNorm statistics recomputed on training windows."""
    lines = []
    write_corpus(tmp_path / "penn")
    config = preset("tiny", space="darts-rnn", strategy=strategy, data_dir=str(tmp_path),
                    batch_size=4, bptt=5, channels=8, epochs=2, device="cpu",
                    out=str(tmp_path / "run"))
    result = search(config, progress=False, plots=False, log=lines.append)
    records = [json.loads(line) for line in (Path(result.run_dir) / "metrics.jsonl")
               .read_text().splitlines()]
    measure = "child" if strategy == "nasp" else "supernet"
    for r in records:
        for key in ("train", f"{measure}_val", "child_val", *(["child_bn_val"] * (
                strategy == "darts"))):
            assert r[f"{key}_ppl"] == pytest.approx(math.exp(r[f"{key}_loss"])), key
    text = "\n".join(lines)
    ppl = f"{records[-1][f'{measure}_val_ppl']:.1f}"
    assert f"{measure} val {ppl}  " in text and "train ppl " in text
    assert f"{measure} val: perplexity on the" in text and "validation tokens" in text
    assert re.search(rf"\n  {measure} val ppl +{ppl} ", text) and "13 words):" in text
    assert "%  changed" not in text.split("epoch 2/2")[1].split("\n")[0]  # no accuracy there


def test_each_weight_step_lr_is_scaled_by_its_window_length(tmp_path, monkeypatch):
    seen = []
    step = NASP.step

    def spy(self, train, val):
        seen.append((self.w_optim.param_groups[0]["lr"], train[0].steps, val[0].steps))
        return step(self, train, val)

    monkeypatch.setattr(NASP, "step", spy)
    search(config(tmp_path, "run", epochs=1, w_lr=0.5, w_lr_min=0.5, bptt_rule="awd"),
           progress=False, plots=False, log=lambda line: None)
    assert len({n for _, n, _ in seen}) > 1  # windows of several lengths
    for lr, n, val_steps in seen:
        assert lr == pytest.approx(0.5 * n / 5)
        assert val_steps <= 5  # the architecture's windows: fixed bptt


def test_a_text_search_interrupted_mid_epoch_resumes_exactly(tmp_path, monkeypatch):
    quiet = dict(progress=False, plots=False, log=lambda line: None)
    straight = search(config(tmp_path, "straight", checkpoint_every=3), **quiet)
    interrupt_after_checkpoint(monkeypatch, CHECKPOINT,
                               lambda c: c["epoch"] == 1 and c["step"] > 0)
    with pytest.raises(RunInterrupted):
        search(config(tmp_path, "stopped", checkpoint_every=3), **quiet)
    saved = torch.load(tmp_path / "stopped" / CHECKPOINT, weights_only=True)
    assert saved["data"]["train"]["state"] is not None  # the carried hidden state is kept
    monkeypatch.undo()
    monkeypatch.setitem(SPACES, "fake-rnn", FakeRNNSpace)
    resumed = resume_search(tmp_path / "stopped", **quiet)
    assert resumed.genotype == straight.genotype
    assert_same_arch(tmp_path / "straight" / "arch.pt", tmp_path / "stopped" / "arch.pt")
    a = torch.load(tmp_path / "straight" / CHECKPOINT, weights_only=True)["strategy"]["net"]
    b = torch.load(tmp_path / "stopped" / CHECKPOINT, weights_only=True)["strategy"]["net"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert metrics(tmp_path / "straight") == metrics(tmp_path / "stopped")


def test_text_and_image_data_go_with_their_spaces(tmp_path):
    with pytest.raises(ConfigError, match="--space fake-rnn searches a language model on a text "
                                          "corpus; --dataset digits holds images: use "
                                          "--dataset ptb"):
        SearchConfig(space="fake-rnn", dataset="digits")
    with pytest.raises(ConfigError, match="--dataset ptb is a text corpus and --space darts "
                                          "searches image cells: use --space .*fake-rnn"):
        SearchConfig(dataset="ptb")


#: ``nasp`` with the fake space registered (in a process of its own)
NASP_WITH_FAKE = ("import sys; sys.path.insert(0, {tests!r}); from lm_fakes import FakeRNNSpace; "
                  "from nasp.spaces import SPACES; SPACES['fake-rnn'] = FakeRNNSpace; "
                  "from nasp.apps.cli import main; sys.exit(main(sys.argv[1:]))")


def test_a_text_search_killed_mid_epoch_resumes_bit_identical(tmp_path):
    """``nasp search`` in a subprocess, SIGKILL right after a mid-epoch checkpoint (paused
    while it is read, as in test_resume), resumed: as the uninterrupted run."""
    write_corpus(tmp_path / "penn")
    out = tmp_path / "killed"
    args = ["search", "--space", "fake-rnn", "--dataset", "ptb", "--data-dir", str(tmp_path),
            "--layers", "1", "--channels", "6", "--batch-size", "4", "--bptt", "5",
            "--epochs", "2", "--checkpoint-every", "1", "--device", "cpu", "--no-progress",
            "--no-plots"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])]), "OMP_NUM_THREADS": "1"}
    code = NASP_WITH_FAKE.format(tests=str(Path(__file__).parent))
    child = subprocess.Popen([sys.executable, "-c", code, *args, "--out", str(out)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    killed_at = kill_after_checkpoint(child, out / CHECKPOINT, after_step=2)
    lines = []  # resumed here (a process of its own too): saves a second start of torch
    resume_search(out, progress=False, plots=False, log=lines.append)
    assert f"at epoch {killed_at[0] + 1}, step {killed_at[1]}" in lines[0]
    saved = load_config(out / "config.yaml")  # the run's, with the cpu preset's values
    straight = search(saved.replace(out=str(tmp_path / "straight")), progress=False,
                      plots=False, log=lambda line: None)
    genotype = genotype_from_dict(json.loads((out / "genotype.json").read_text()))
    assert genotype == straight.genotype
    assert_same_arch(out / "arch.pt", tmp_path / "straight" / "arch.pt")
    assert metrics(out) == metrics(tmp_path / "straight")
