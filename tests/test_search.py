"""The search loop on the built-in digits: it learns, writes its run, and is reproducible."""

import json

import pytest
import torch
import torch.nn.functional as F
import yaml

from nasp import Genotype, RunDirError, load_config, preset, search
from nasp.core.mixed import CellPlan
from nasp.data import load_dataset, search_split
from nasp.spaces import DartsCNNSpace


@pytest.fixture(scope="module")
def nasp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "nasp"
    # 16 steps of a tiny run lower the loss noisily: at some seeds by less than the 0.1 asked
    # below; at seed 0 (with the class-stratified split) by 0.36
    config = preset("tiny", epochs=4, out=str(out), seed=0)
    return config, search(config, progress=False, plots=False, log=lambda s: None)


def test_search_lowers_training_loss_and_returns_valid_genotype(nasp_run):
    _, result = nasp_run
    losses = [r["train_loss"] for r in result.history]
    assert len(losses) == 4
    assert losses[-1] < losses[0] - 0.1, losses
    assert isinstance(result.genotype, Genotype)
    DartsCNNSpace("darts-7").selection_of(result.genotype)  # fits the space: 2 edges per node


def nasp_child_selection(A: torch.Tensor) -> tuple[int, ...]:
    """NASP's child, by hand: per node the 2 inputs with the largest entry of A (ties: lowest
    input), on each the op of that entry (ties: lowest op); -1 for a dropped edge."""
    selection, start = [], 0
    for node in range(4):
        rows = A[start:start + node + 2]
        kept = sorted(range(node + 2), key=lambda j: (-rows[j].max().item(), j))[:2]
        selection += [int(rows[j].argmax()) if j in kept else -1 for j in range(node + 2)]
        start += node + 2
    return tuple(selection)


def test_last_child_evaluation_equals_a_plain_loop(nasp_run):
    """The last epoch's child_val_loss/acc, recomputed image by image: NASP's discrete child at
    the final A (its projection, not the softmax-derived genotype), in eval mode, on the
    normalised validation half (unaugmented)."""
    config, result = nasp_run
    net = result.strategy.net
    _, val_half = search_split(load_dataset(config.dataset), config.subset, config.seed)
    mean = torch.tensor(val_half.mean).view(1, -1, 1, 1)
    std = torch.tensor(val_half.std).view(1, -1, 1, 1)
    x = (val_half.images.float() / 255 - mean) / std
    arch = torch.load(result.run_dir / "arch.pt")
    plans = {t: CellPlan("discrete", selection=nasp_child_selection(a)) for t, a in arch.items()}
    net.eval()
    try:
        with torch.no_grad():
            logits = torch.cat([net(x[i:i + 1], plans) for i in range(len(x))])
    finally:
        net.train()
    last = result.history[-1]
    correct = sum(int(row.argmax()) == int(y) for row, y in zip(logits, val_half.labels))
    assert last["child_val_acc"] == pytest.approx(correct / len(x), abs=1e-9)
    assert last["child_val_loss"] == pytest.approx(
        F.cross_entropy(logits, val_half.labels).item(), rel=1e-5)


def test_run_directory_contents(nasp_run):
    config, result = nasp_run
    run = result.run_dir
    assert load_config(run / "config.yaml") == config
    assert yaml.safe_load((run / "config.yaml").read_text())["strategy"] == "nasp"
    lines = (run / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert Genotype.load(run / "genotype.json") == result.genotype
    assert Genotype.from_dict(records[-1]["genotype"]) == result.genotype
    arch = torch.load(run / "arch.pt")
    assert arch["normal"].shape == (14, 7)
    assert ((arch["normal"] >= 0) & (arch["normal"] <= 1)).all()
    assert torch.equal(arch["normal"], result.strategy.arch["normal"].detach())
    checkpoint = torch.load(run / "checkpoint.pt")
    assert checkpoint["epoch"] == 4


def test_same_seed_same_genotype(nasp_run, tmp_path):
    config, result = nasp_run
    again = search(config.replace(out=str(tmp_path / "again")), progress=False, plots=False,
                   log=lambda s: None)
    assert again.genotype == result.genotype
    for t in result.strategy.arch:
        assert torch.equal(again.strategy.arch[t], result.strategy.arch[t])


def test_refuses_to_overwrite_a_run(nasp_run):
    config, result = nasp_run
    before = (result.run_dir / "metrics.jsonl").read_text()
    with pytest.raises(RunDirError, match="already holds a run"):
        search(config, progress=False, plots=False, log=lambda s: None)
    assert (result.run_dir / "metrics.jsonl").read_text() == before


@pytest.mark.parametrize("strategy", ["darts", "darts2"])
def test_darts_baselines_search(strategy, tmp_path):
    config = preset("tiny", strategy=strategy, epochs=1, subset=64, out=str(tmp_path / "r"))
    result = search(config, progress=False, plots=False, log=lambda s: None)
    # the genotype is the softmax-argmax derivation of the saved alphas: per node, the two
    # inputs whose best op is strongest, and that op (darts-7 has no none op)
    arch = torch.load(tmp_path / "r" / "arch.pt")
    space = DartsCNNSpace("darts-7")
    assert "none" not in space.primitives["normal"]
    for t, pairs in (("normal", result.genotype.normal), ("reduce", result.genotype.reduce)):
        w = torch.softmax(arch[t], dim=-1)
        expected, start = [], 0
        for node in range(4):
            rows = range(start, start + node + 2)
            strength = {j: w[e].max().item() for j, e in enumerate(rows)}
            for j in sorted(sorted(strength, key=strength.get, reverse=True)[:2]):
                e = start + j
                expected.append((space.primitives[t][int(w[e].argmax())], j))
            start += node + 2
        assert sorted(pairs) == sorted(expected), t
    assert Genotype.load(tmp_path / "r" / "genotype.json") == result.genotype
    assert not torch.equal(arch["normal"], torch.zeros_like(arch["normal"]))
