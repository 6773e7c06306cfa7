"""The NAS-Bench-201 space: arch strings, projection, derivation, supernet modes, child network,
and NASP / DARTS searches on it."""

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from nasp import preset, search
from nasp.config import SearchConfig
from nasp.core.measure import parameter_count
from nasp.core.mixed import CellPlan
from nasp.core.prox import selection_indices
from nasp.errors import ArchStringError, ConfigError, GenotypeError
from nasp.spaces import NB201Space, build_space, load_genotype, resolve_genotype
from nasp.spaces.darts_cnn.genotype import BUILTIN_GENOTYPES
from nasp.spaces.nb201.genotype import EDGES, NB201_PRIMITIVES, NB201Genotype
from nasp.strategies import build_strategy

pytestmark = pytest.mark.usefixtures("one_thread")

# the best CIFAR-10 cell of NATS-Bench's topology space (index 9930)
BEST = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+"
        "|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|")
OPS = NB201_PRIMITIVES
NONE, SKIP, CONV1, CONV3, POOL = range(5)


# ---------------------------------------------------------------------------- arch strings


def test_arch_string_parses_into_edges_in_benchmark_order():
    g = NB201Genotype.from_string(BEST)
    assert g.ops == ("nor_conv_3x3", "nor_conv_3x3", "nor_conv_3x3", "skip_connect",
                     "nor_conv_3x3", "nor_conv_3x3")
    assert EDGES == ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
    assert g.nodes[2] == (("skip_connect", 0), ("nor_conv_3x3", 1), ("nor_conv_3x3", 2))
    assert str(g) == BEST
    assert g.compact() == "1<-conv3x3(0) 2<-conv3x3(0),conv3x3(1) 3<-skip(0),conv3x3(1),conv3x3(2)"


def test_arch_string_spacing_is_normalised():
    spaced = " | nor_conv_3x3~0 |\n+| nor_conv_3x3~0|nor_conv_3x3~1 | + |skip_connect~0|" \
             "nor_conv_3x3~1|\tnor_conv_3x3~2| "
    assert str(NB201Genotype.from_string(spaced)) == BEST


@given(st.lists(st.sampled_from(OPS), min_size=6, max_size=6))
def test_arch_string_and_dict_round_trip(ops):
    g = NB201Genotype(ops)
    assert NB201Genotype.from_string(str(g)) == g
    assert NB201Genotype.from_dict(json.loads(g.to_json())) == g
    assert hash(NB201Genotype(tuple(ops))) == hash(g)


@pytest.mark.parametrize("text, message", [
    ("|nor_conv_3x3~0|+|none~0|none~1|", "3 node groups"),
    ("|nor_conv_3x3~0|+|none~0|+|none~0|none~1|none~2|", "node 2 must have 2 input"),
    ("|nor_conv_3x3~0|+|none~1|none~0|+|none~0|none~1|none~2|", "must end in ~0"),
    ("|conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown op 'conv_3x3'"),
    ("|nor_conv_3x3|+|none~0|none~1|+|none~0|none~1|none~2|", "op~input"),
    ("nor_conv_3x3~0+|none~0|none~1|+|none~0|none~1|none~2|", "start and end with '|'"),
    ("", "3 node groups"),
])
def test_bad_arch_strings_are_clear_genotype_errors(text, message):
    with pytest.raises(ArchStringError, match=message) as info:
        NB201Genotype.from_string(text)
    assert isinstance(info.value, GenotypeError)  # so the CLI reports it as a user error


def test_bad_genotype_data_is_rejected():
    with pytest.raises(ArchStringError, match="6 edges"):
        NB201Genotype(("none",) * 5)
    with pytest.raises(ArchStringError, match="edge 3<-2: unknown op"):
        NB201Genotype(("none",) * 5 + ("sep_conv_3x3",))
    with pytest.raises(ArchStringError, match="unexpected"):
        NB201Genotype.from_dict({"arch": BEST, "normal": []})
    with pytest.raises(ArchStringError, match="not a NAS-Bench-201"):
        NB201Genotype.from_dict({"space": "darts", "arch": BEST})


def test_genotype_files_load_and_resolve(tmp_path):
    g = NB201Genotype.from_string(BEST)
    g.save(tmp_path / "genotype.json")
    assert json.loads((tmp_path / "genotype.json").read_text()) == {"space": "nb201",
                                                                    "arch": BEST}
    assert NB201Genotype.load(tmp_path / "genotype.json") == g
    assert load_genotype(tmp_path / "genotype.json") == g
    assert resolve_genotype(tmp_path) == g  # a run directory
    assert resolve_genotype(BEST.replace("|+|", "| + |")) == g  # an arch string
    BUILTIN_GENOTYPES["DARTS_V2"].save(tmp_path / "darts.json")
    assert load_genotype(tmp_path / "darts.json") == BUILTIN_GENOTYPES["DARTS_V2"]
    (tmp_path / "bad.json").write_text('{"arch": "|none~0|"}')
    with pytest.raises(ArchStringError, match="bad.json"):
        load_genotype(tmp_path / "bad.json")


# ------------------------------------------------------------------ projection and derivation


def test_project_keeps_every_edge_one_hot_on_its_largest_op():
    space = NB201Space()
    g = torch.Generator().manual_seed(0)
    A = torch.rand(6, 5, generator=g, dtype=torch.float64)
    A_bar = space.project({"cell": A})["cell"]
    assert torch.equal(A_bar.sum(1), torch.ones(6, dtype=torch.float64))  # all 6 edges kept
    assert torch.equal(A_bar.argmax(1), A.argmax(1))
    assert set(A_bar.unique().tolist()) == {0.0, 1.0}


def test_none_loses_ties_but_wins_when_strictly_largest():
    space = NB201Space()
    A = torch.full((6, 5), 0.5)  # NASP's initial point
    assert selection_indices(space.project({"cell": A})["cell"]).tolist() == [SKIP] * 6
    assert space.derive({"cell": A}).ops == ("skip_connect",) * 6
    A[2, NONE] = 0.6
    A[4, CONV3] = A[4, POOL] = 0.7  # a tie without none: lowest index
    assert selection_indices(space.project({"cell": A})["cell"]).tolist() == [
        SKIP, SKIP, NONE, SKIP, CONV3, SKIP]


def test_derive_is_argmax_of_softmax_over_all_ops_including_none():
    space = NB201Space()
    alpha = torch.zeros(6, 5)
    for e, k in enumerate([NONE, POOL, CONV1, CONV3, NONE, SKIP]):
        alpha[e, k] = 1.0 + e / 10
    assert space.derive({"cell": alpha}).ops == (
        "none", "avg_pool_3x3", "nor_conv_1x1", "nor_conv_3x3", "none", "skip_connect")


def test_selection_round_trip_and_errors():
    space = NB201Space()
    g = NB201Genotype.from_string(BEST)
    selection = space.selection_of(g)
    assert selection == {"cell": (CONV3, CONV3, CONV3, SKIP, CONV3, CONV3)}
    assert space.genotype_of(selection) == g
    with pytest.raises(ValueError, match="one op index"):
        space.genotype_of({"cell": (0, 1, 2, -1, 0, 0)})
    with pytest.raises(GenotypeError, match="--space darts"):
        space.selection_of(BUILTIN_GENOTYPES["DARTS_V2"])


def test_random_selection_is_seeded_valid_and_uniform_on_every_edge():
    space = NB201Space()
    first = space.random_selection(torch.Generator().manual_seed(5))
    assert first == space.random_selection(torch.Generator().manual_seed(5))
    gen = torch.Generator().manual_seed(0)
    draws = [space.random_selection(gen)["cell"] for _ in range(300)]
    for e in range(6):
        assert {d[e] for d in draws} == set(range(5))
    assert all(isinstance(space.genotype_of({"cell": d}), NB201Genotype) for d in draws)
    # uniform: each op's count per edge is binomial(300, 1/5) (sd 6.9): within 5 sd, and the
    # chi-square of the 6 x 5 table below the 99.9% point of 24 degrees of freedom (51.2;
    # this seed gives 16); and edges drawn independently: of 5^6 cells, 300 draws repeat about
    # 300^2 / 2 / 15625 = 3 of them
    counts = torch.tensor([[sum(d[e] == k for d in draws) for k in range(5)] for e in range(6)])
    assert (counts - 60).abs().max() < 5 * (300 * 0.2 * 0.8) ** 0.5
    assert ((counts - 60.0) ** 2 / 60).sum() < 51.2
    assert len(set(draws)) > 290


def test_op_costs_follow_parameter_counts():
    costs = NB201Space().op_costs("cell")
    assert costs.sum().item() == pytest.approx(1.0)
    assert costs[NONE] == costs[SKIP] == costs[POOL] == 0
    assert costs[CONV3] == pytest.approx(9 * costs[CONV1].item())  # 3x3 vs 1x1 kernels


# ------------------------------------------------------------------------- networks and modes


@pytest.fixture
def supernet():
    torch.manual_seed(0)
    space = NB201Space()
    net = space.build_supernet(3, 5, layers=1, channels=4).double()
    g = torch.Generator().manual_seed(1)
    batch = (torch.randn(6, 3, 8, 8, generator=g, dtype=torch.float64),
             torch.randint(0, 5, (6,), generator=g))
    return space, net, batch


def _point(space, ops):
    selection = {"cell": tuple(ops)}
    A_bar = {"cell": F.one_hot(torch.tensor(ops), 5).double()}
    return A_bar, selection


def _run(net, mode, A_bar, selection, batch):
    net.zero_grad(set_to_none=True)
    leaves = {t: a.clone().requires_grad_(True) for t, a in A_bar.items()}
    logits = net(batch[0], {t: CellPlan(mode, leaves[t], selection[t]) for t in leaves})
    F.cross_entropy(logits, batch[1]).backward()
    weights = {n: p.grad.clone() if p.grad is not None else torch.zeros_like(p)
               for n, p in net.named_parameters()}
    return logits.detach(), leaves["cell"].grad, weights


# a cell with every op, none included (edge 3<-1 is none)
MIXED = [CONV3, SKIP, POOL, CONV1, NONE, CONV3]


def test_supernet_shape_follows_the_benchmark_macro(supernet):
    _, net, _ = supernet
    kinds = [type(c).__name__ for c in net.cells]
    assert kinds == ["NB201SearchCell", "ResNetBasicBlock", "NB201SearchCell",
                     "ResNetBasicBlock", "NB201SearchCell"]
    assert net.classifier.in_features == 16  # 4C
    # search ops: non-affine BatchNorm and no BatchNorm after the pool
    conv = net.cells[0].edges[0].ops[CONV3]
    assert not conv[2].affine
    assert isinstance(net.cells[0].edges[0].ops[POOL], torch.nn.AvgPool2d)


def test_sparse_equals_reference_in_output_and_gradients(supernet):
    space, net, batch = supernet
    A_bar, selection = _point(space, MIXED)
    ref_logits, ref_arch, ref_w = _run(net, "reference", A_bar, selection, batch)
    sp_logits, sp_arch, sp_w = _run(net, "sparse", A_bar, selection, batch)
    torch.testing.assert_close(sp_logits, ref_logits, rtol=0, atol=1e-12)
    assert ref_arch.abs().sum() > 0
    assert ref_arch[:, NONE].abs().sum() == 0  # the zero op's output is 0
    torch.testing.assert_close(sp_arch, ref_arch, rtol=1e-10, atol=1e-12)
    assert any(g.abs().sum() > 0 for g in ref_w.values())
    for name in ref_w:
        torch.testing.assert_close(sp_w[name], ref_w[name], rtol=1e-10, atol=1e-12)


def test_discrete_and_dense_agree_with_reference_at_a_one_hot_point(supernet):
    space, net, batch = supernet
    A_bar, selection = _point(space, MIXED)
    ref, _, _ = _run(net, "reference", A_bar, selection, batch)
    dense, _, _ = _run(net, "dense", A_bar, selection, batch)
    discrete = net(batch[0], {"cell": CellPlan("discrete", selection=selection["cell"])})
    torch.testing.assert_close(dense, ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(discrete, ref, rtol=1e-12, atol=1e-12)


def test_discrete_mode_does_not_run_none_or_unselected_ops(supernet):
    _, net, batch = supernet
    calls = []
    for e, edge in enumerate(net.cells[0].edges):
        for k, op in enumerate(edge.ops):
            op.register_forward_hook(lambda m, a, o, e=e, k=k: calls.append((e, k)))
    net(batch[0], {"cell": CellPlan("discrete", selection=tuple(MIXED))})
    assert sorted(calls) == [(e, k) for e, k in enumerate(MIXED) if k != NONE]


def test_extracted_child_equals_the_supernet_discrete_pass(supernet):
    space, net, batch = supernet
    with torch.no_grad():  # non-trivial BatchNorm statistics and weights everywhere
        for _ in range(2):
            net(batch[0], {"cell": CellPlan("dense", torch.full((6, 5), 0.2,
                                                                dtype=torch.float64))})
    genotype = space.genotype_of({"cell": tuple(MIXED)})
    child = space.extract_child(net, genotype)
    assert sum(p.numel() for p in child.parameters()) < sum(p.numel() for p in net.parameters())
    plans = {"cell": CellPlan("discrete", selection=tuple(MIXED))}
    for mode in (True, False):
        net.train(mode)
        child.train(mode)
        torch.testing.assert_close(child(batch[0]), net(batch[0], plans), rtol=0, atol=1e-12)


def test_all_none_cell_outputs_zeros_and_the_network_still_runs(supernet):
    _, net, batch = supernet
    plans = {"cell": CellPlan("discrete", selection=(NONE,) * 6)}
    assert torch.equal(net.cells[0](torch.randn(2, 4, 8, 8, dtype=torch.float64),
                                    plans["cell"]), torch.zeros(2, 4, 8, 8, dtype=torch.float64))
    # the first cell's zeros make the rest of the network blind to the input: one row of
    # logits for every image
    logits = net(batch[0], plans)
    assert logits.shape == (6, 5)
    torch.testing.assert_close(logits, logits[:1].expand(6, 5), rtol=0, atol=1e-12)


def test_child_parameter_count_matches_nats_bench():
    """NATS-Bench's record of the best CIFAR cell (index 9930) at N 5, C 16: Params = 1.289 MB
    on cifar10 (10 classes), 1.294 MB on cifar100 (100 classes)."""
    space = NB201Space()
    for classes, published in ((10, 1.289), (100, 1.294)):
        net = space.build_child(BEST, 3, classes, layers=5, channels=16)
        assert round(parameter_count(net) / 1e6, 3) == published
    net = space.build_child(BEST, 3, 10, layers=5, channels=16)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert net.cells[0].ops[0][2].affine  # the child's BatchNorm is affine


def test_odd_image_sizes_are_a_clear_error():
    net = NB201Space().build_child(BEST, 1, 10, layers=1, channels=4)
    with pytest.raises(ValueError, match="multiple of 4"):
        net(torch.randn(2, 1, 6, 6))


# ------------------------------------------------------------------------ config and searches


def test_config_picks_the_nb201_op_set_and_checks_the_benchmark_options():
    assert SearchConfig(space="nb201").primitives == "nb201"
    assert build_space("nb201", "nb201").name == "nb201"
    with pytest.raises(ConfigError, match="--primitives must be nb201"):
        SearchConfig(space="nb201", primitives="darts")
    with pytest.raises(ConfigError, match="needs --space nb201"):
        SearchConfig(benchmark="table.csv")
    with pytest.raises(ConfigError, match="give --benchmark"):
        SearchConfig(space="nb201", benchmark_column="cifar10")


def test_nasp_starts_at_skip_penalises_size_and_takes_an_adam_step(supernet):
    space, net, batch = supernet
    config = SearchConfig(space="nb201", layers=3, channels=4, size_penalty=1.0)
    strategy = build_strategy("nasp", space, net, config)
    assert strategy.selection == {"cell": (SKIP,) * 6}  # not the all-none network
    # a point where convolutions win edges (so the size penalty is not 0) and entries sit on
    # the bounds of [0, 1] (so the clamp matters)
    A = torch.rand(6, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    A[A > 0.75], A[A < 0.25] = 1.0, 0.0
    with torch.no_grad():
        strategy.arch["cell"].copy_(A)
    strategy.project()
    costs = space.op_costs("cell").double()
    A_bar = strategy.A_bar["cell"]
    assert (costs * A_bar).sum() > 0
    plain, _ = copy.deepcopy(strategy).arch_gradient(batch)
    strategy.config = config.replace(size_penalty=0.0)
    without, _ = strategy.arch_gradient(batch)
    torch.testing.assert_close(plain["cell"] - without["cell"], 2 * costs * A_bar)
    strategy.config = config
    strategy.step(batch, batch)
    # Adam's first step by hand: bias correction makes it lr * g / (|g| + eps), g with the L2
    # term; then the clamp to [0, 1]
    g = plain["cell"] + config.a_weight_decay * A
    stepped = A - config.a_lr * g / (g.abs() + 1e-8)
    assert not torch.equal(stepped.clamp(0, 1), stepped)
    torch.testing.assert_close(strategy.arch["cell"].detach(), stepped.clamp(0, 1), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("strategy", ["nasp", "darts", "darts2"])
def test_tiny_search_on_nb201(strategy, tmp_path):
    out = tmp_path / strategy
    config = preset("tiny", space="nb201", strategy=strategy, epochs=1, subset=64, out=str(out))
    result = search(config, progress=False, plots=False, log=lambda s: None)
    assert isinstance(result.genotype, NB201Genotype)
    assert NB201Genotype.load(out / "genotype.json") == result.genotype
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert NB201Genotype.from_dict(record["genotype"]) == result.genotype
    assert "benchmark_acc" not in record
    arch = torch.load(out / "arch.pt")
    assert arch["cell"].shape == (6, 5)
    assert result.genotype == NB201Space().derive(arch)


def test_pictures_of_an_nb201_run(tmp_path):
    pytest.importorskip("matplotlib")
    from nasp.engine.pictures import plot_run

    out = tmp_path / "run"
    search(preset("tiny", space="nb201", epochs=1, subset=64, out=str(out)), progress=False,
           plots=False, log=lambda s: None)
    written = {p.name for p in plot_run(out, use_dot=False)}
    assert {"cell.dot", "cell.png", "curves.png", "genotype_evolution.png", "arch_weights.png",
            "arch_evolution.png"} <= written
    dot = (out / "cell.dot").read_text()
    genotype = NB201Genotype.load(out / "genotype.json")
    assert dot.count("->") == sum(op != "none" for op in genotype.ops)


def test_train_from_scratch_takes_an_arch_string_and_resumes(tmp_path):
    """`nasp train` builds the benchmark's network for an arch string, and its run resumes
    (the NB201 genotype is read back from the checkpoint)."""
    from nasp import resume, train, train_preset

    config = train_preset("tiny", epochs=1, subset=64, layers=3, channels=4, device="cpu",
                          out=str(tmp_path / "run"))
    trained = train(BEST, config, progress=False, plots=False, log=lambda s: None)
    assert NB201Genotype.load(tmp_path / "run" / "genotype.json") == resolve_genotype(BEST)
    resumed = resume(tmp_path / "run", progress=False, plots=False, log=lambda s: None)
    assert resumed.history == trained.history
    assert all(torch.equal(a, b) for a, b in zip(trained.net.state_dict().values(),
                                                 resumed.net.state_dict().values()))
