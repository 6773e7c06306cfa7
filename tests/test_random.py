"""Random search: uniform sampling of valid cells, scoring by training or by look-up."""

import json
import math
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config

import nasp.strategies.random as random_module
from nasp import ConfigError, Genotype, preset, search
from nasp.core.mixed import CellPlan
from nasp.spaces import DartsCNNSpace
from nasp.strategies import STRATEGIES, RandomSearch, build_strategy
from nasp.tasks import LanguageModelTask


def sep_conv_share(genotype: Genotype) -> float:
    """A fake benchmark: the share of sep_conv ops in the normal cell."""
    return sum(op.startswith("sep_conv") for op, _ in genotype.normal) / len(genotype.normal)


def test_registered_as_random():
    assert STRATEGIES["random"] is RandomSearch


@pytest.mark.parametrize("primitives", ["darts", "darts-7", "nasp-12"])
def test_random_selection_is_a_valid_cell_without_none(primitives):
    space = DartsCNNSpace(primitives)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        selection = space.random_selection(g)
        genotype = space.genotype_of(selection)  # raises unless every node keeps 2 edges
        assert space.selection_of(genotype) == selection
        for t, pairs in (("normal", genotype.normal), ("reduce", genotype.reduce)):
            assert len(pairs) == 8
            assert all(op != "none" for op, _ in pairs)
            assert all(op in space.primitives[t] for op, _ in pairs)


def test_random_selection_is_seeded():
    space = DartsCNNSpace("darts-7")
    a = [space.random_selection(torch.Generator().manual_seed(5)) for _ in range(2)]
    assert a[0] == a[1]
    b = space.random_selection(torch.Generator().manual_seed(6))
    assert a[0] != b


def test_random_selection_is_uniform():
    """Node 3 (5 inputs): every input is kept with probability 2/5, every pair of inputs is
    equally likely, and every op of darts (none excluded) has probability 1/7 per kept edge."""
    space = DartsCNNSpace("darts")
    g = torch.Generator().manual_seed(0)
    n = 3000
    pairs, ops = Counter(), Counter()
    for _ in range(n):
        sel = space.random_selection(g)["normal"]
        node3 = sel[9:14]
        pairs[tuple(j for j, k in enumerate(node3) if k >= 0)] += 1
        ops.update(k for k in node3 if k >= 0)
    assert len(pairs) == 10  # C(5, 2)
    for count in pairs.values():  # binomial(n, 1/10): sd ~ 16.4
        assert abs(count - n / 10) < 5 * (n * 0.1 * 0.9) ** 0.5
    assert 0 not in ops and len(ops) == 7  # index 0 is none
    for count in ops.values():  # binomial(2n, 1/7)
        assert abs(count - 2 * n / 7) < 5 * (2 * n / 7 * 6 / 7) ** 0.5


def test_lookup_scores_every_candidate_and_keeps_the_best(tiny):
    space, net, _, _ = tiny
    scores = iter([0.3, None, 0.7, 0.7, 0.1])
    strategy = RandomSearch(space, net, tiny_config(strategy="random", epochs=2, random_samples=5),
                            scorer=lambda genotype: next(scores))
    assert not strategy.trains
    assert strategy.genotype() == space.genotype_of(strategy.candidates[0])  # nothing scored
    assert all((a == 0).all() for a in strategy.arch.values())
    handled = []
    for epoch in range(2):
        strategy.begin_epoch(epoch)
        strategy.end_epoch()
        handled.append(strategy.epoch_metrics()["random"]["candidates"])
    assert handled == [[0, 1], [2, 3, 4]]
    assert strategy.scores == [0.3, None, 0.7, 0.7, 0.1]
    assert strategy.best == 2  # ties: the earliest
    best = space.genotype_of(strategy.candidates[2])
    assert strategy.genotype() == best
    # A is the one-hot of the best candidate: derivation and projection both give it back
    assert space.derive(strategy.arch) == best
    for t, a_bar in space.project(strategy.arch).items():
        assert torch.equal(a_bar, strategy.arch[t].detach())
    assert "best #3/5 70.0%" in strategy.epoch_summary()


def test_training_resets_weights_and_schedule_per_candidate(tiny, one_thread):
    space, net, train, val = tiny
    strategy = RandomSearch(space, net, tiny_config(strategy="random", epochs=3, random_samples=2))
    initial = {k: v.clone() for k, v in net.state_dict().items()}
    assert [strategy.owner(e) for e in range(3)] == [0, 0, 1]
    strategy.begin_epoch(0)
    assert strategy.scheduler.T_max == 2  # candidate 0 trains for epochs 0 and 1
    # the first step, reproduced by hand on the candidate's discrete child: gradient of the
    # training loss, norm clipped to grad_clip, then SGD (a fresh momentum buffer is the
    # gradient itself, weight decay added to it); the ops the child does not run get a zero
    # gradient (unselected_weights = decay, the default), so SGD only decays them
    c = strategy.config
    plans = {t: CellPlan("discrete", selection=s) for t, s in strategy.candidates[0].items()}
    params = dict(net.named_parameters())
    loss = F.cross_entropy(net(train[0], plans), train[1])
    grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()), allow_unused=True)))
    norm = torch.cat([g.flatten() for g in grads.values() if g is not None]).norm()
    scale = min(1.0, c.grad_clip / (norm.item() + 1e-6))
    expected = {n: initial[n] - c.w_lr * ((0 if g is None else g * scale)
                                          + c.w_weight_decay * initial[n])
                for n, g in grads.items()}
    assert any(g is None for g in grads.values()) and norm > 0
    net.load_state_dict(initial)  # the forward above updated the BatchNorm statistics
    strategy.step(train, val)
    for n, p in net.named_parameters():
        torch.testing.assert_close(p.detach(), expected[n], rtol=1e-9, atol=1e-12)
    strategy.end_epoch()
    strategy.child_evaluated({"top1": 0.4})
    assert strategy.scores == [None, None]  # candidate 0 is still training
    strategy.begin_epoch(1)
    c = strategy.config  # the schedule goes on: cosine over the block of 2 epochs
    assert strategy.lr == pytest.approx(c.w_lr_min + (c.w_lr - c.w_lr_min) * (1 + math.cos(
        math.pi / 2)) / 2)
    strategy.step(train, val)
    strategy.end_epoch()
    strategy.child_evaluated({"top1": 0.25})
    assert strategy.scores == [0.25, None]
    strategy.begin_epoch(2)  # candidate 1: initial weights, fresh optimiser and schedule
    for k, v in net.state_dict().items():
        assert torch.equal(v, initial[k]), k
    assert strategy.lr == strategy.config.w_lr and strategy.scheduler.T_max == 1
    assert strategy.w_optim.state == {}
    plans = strategy.child_plans()
    assert plans["normal"].selection == strategy.candidates[1]["normal"]
    strategy.step(train, val)
    strategy.end_epoch()
    strategy.child_evaluated({"top1": 0.5})
    assert strategy.scores == [0.25, 0.5] and strategy.best == 1


def test_state_dict_round_trip(tiny):
    space, net, _, _ = tiny
    config = tiny_config(strategy="random", epochs=2, random_samples=3)
    a = RandomSearch(space, net, config, scorer=sep_conv_share)
    a.begin_epoch(0)
    a.end_epoch()
    b = RandomSearch(space, net, config.replace(seed=9), scorer=sep_conv_share)
    b.load_state_dict(a.state_dict())
    assert b.candidates == a.candidates and b.scores == a.scores and b.epoch == a.epoch
    assert b.genotype() == a.genotype()


def test_more_samples_than_epochs_needs_a_table(tiny):
    space, net, _, _ = tiny
    with pytest.raises(ConfigError, match="--random-samples 4 is more than --epochs 2"):
        build_strategy("random", space, net,
                       tiny_config(strategy="random", epochs=2, random_samples=4))
    RandomSearch(space, net, tiny_config(strategy="random", epochs=2, random_samples=4),
                 scorer=sep_conv_share)


def test_search_loop_by_lookup_runs_no_training(tmp_path, monkeypatch, one_thread):
    monkeypatch.setattr(random_module, "benchmark_scorer", lambda config, space: sep_conv_share)
    config = preset("tiny", strategy="random", epochs=2, random_samples=6, subset=64,
                    out=str(tmp_path / "run"), seed=4)
    result = search(config, progress=False, plots=False, log=lambda s: None)
    strategy = result.strategy
    for k, v in strategy.net.state_dict().items():
        assert torch.equal(v, strategy.initial_state[k]), k  # not one step taken
    # the candidates, drawn independently from the same seed, and their fake scores
    space = DartsCNNSpace("darts-7")
    g = torch.Generator().manual_seed(4)
    genotypes = [space.genotype_of(space.random_selection(g)) for _ in range(6)]
    scores = [sep_conv_share(x) for x in genotypes]
    assert result.genotype == genotypes[scores.index(max(scores))]
    records = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text()
               .splitlines()]
    assert [r["random"]["candidates"] for r in records] == [[0, 1, 2], [3, 4, 5]]
    assert records[1]["random"]["scores"] == scores[3:]
    assert all(r["train_loss"] is None and r["child_val_acc"] is None for r in records)
    assert Genotype.from_dict(records[-1]["genotype"]) == result.genotype


def test_search_loop_by_training_scores_each_candidate(tmp_path, one_thread):
    config = preset("tiny", strategy="random", epochs=3, random_samples=2, subset=64,
                    out=str(tmp_path / "run"), seed=1)
    lines = []
    result = search(config, progress=False, plots=False, log=lines.append)
    history = result.history
    assert [r["random"]["candidates"] for r in history] == [[0], [0], [1]]
    # a fresh cosine schedule per candidate: two epochs for the first, one for the second
    assert [r["lr"] for r in history] == pytest.approx([0.025, 0.013, 0.025])
    # each candidate's score is the child validation accuracy after its last epoch
    assert result.strategy.scores == [history[1]["child_val_acc"], history[2]["child_val_acc"]]
    best = result.strategy.best
    assert result.genotype == DartsCNNSpace("darts-7").genotype_of(
        result.strategy.candidates[best])
    assert any("candidate 2/2  best #" in line for line in lines)


def test_random_ws_scores_with_the_shared_weights_and_rescores_the_best(tiny):
    """Random search with weight sharing: the candidates of an epoch and the best so far are
    scored by the loop's evaluation with the current weights; the best is the argmax of those
    fresh scores; no table is read even when one is configured."""
    space, net, train, val = tiny
    strategy = build_strategy("random-ws", space, net,
                              tiny_config(strategy="random-ws", epochs=2, random_samples=4))
    assert strategy.trains and strategy.scorer is None
    calls = []
    table = {0: [0.3], 1: [0.5, 0.2], 2: [0.4], 3: [0.1]}  # candidate -> successive scores

    def evaluator(plans):
        i = next(i for i, c in enumerate(strategy.candidates)
                 if all(plans[t].selection == c[t] for t in c))
        calls.append(i)
        return {"top1": table[i].pop(0)}

    strategy.set_evaluator(evaluator)
    for epoch in range(2):
        strategy.begin_epoch(epoch)
        before = [p.detach().clone() for p in net.parameters()]
        m = strategy.step(train, val)
        assert m["arch_loss"].item() == 0
        assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))
        strategy.end_epoch()
        if epoch == 0:
            assert calls == [0, 1] and strategy.best == 1
    # epoch 2: candidates 2 and 3, then the incumbent 1 again (now 0.2): 2 is best with 0.4
    assert calls == [0, 1, 2, 3, 1]
    assert strategy.scores == [0.3, 0.2, 0.4, 0.1] and strategy.best == 2
    assert strategy.genotype() == space.genotype_of(strategy.candidates[2])
    assert strategy.child_plans()["normal"].selection == strategy.candidates[2]["normal"]


@pytest.mark.parametrize("name", ["random", "random-ws"])
def test_a_language_model_ranks_candidates_by_perplexity(tiny, name):
    """The task's headline decides: a language model's lowest perplexity wins, though its
    next-word accuracy is the lowest; scores are ``-ppl``; the summary shows the perplexity."""
    space, net, _, _ = tiny
    strategy = build_strategy(name, space, net,
                              tiny_config(strategy=name, epochs=2, random_samples=2),
                              task=LanguageModelTask())
    results = [{"loss": math.log(300.0), "ppl": 300.0, "top1": 0.30},
               {"loss": math.log(120.0), "ppl": 120.0, "top1": 0.10}]
    strategy.set_evaluator(lambda plans: results[next(
        i for i, c in enumerate(strategy.candidates)
        if all(plans[t].selection == c[t] for t in c))])
    for epoch in range(2):
        strategy.begin_epoch(epoch)
        strategy.end_epoch()
        strategy.child_evaluated(results[epoch])
    assert strategy.best == 1 and strategy.scores == [-300.0, -120.0]
    assert strategy.epoch_metrics()["random"]["score_of"] == "-ppl"
    assert strategy.epoch_summary().endswith("best #2/2 ppl 120.0")
