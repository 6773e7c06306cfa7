"""Hard budgets (nasp.core.budget): the constrained projection against brute force, ties included;
prox_c1 when the budget does not bind; infeasible budgets; sampling within a budget; cost tables
against built networks; a budgeted search end to end."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from nasp.core.budget import Budget, CellRule, CostTable, best_within, sample_within
from nasp.core.prox import prox_c1, selection_indices, tie_order
from nasp.errors import ConfigError

# -- brute force --------------------------------------------------------------------------------


def _node_options(edge_node, keep, ops):
    """Per node: every (kept edges, op per kept edge) choice, as {edge: op} dicts."""
    nodes = {}
    for e, n in enumerate(edge_node):
        nodes.setdefault(n, []).append(e)
    out = []
    for edges in nodes.values():
        k = min(keep, len(edges))
        out.append([dict(zip(chosen, choice)) for chosen in itertools.combinations(edges, k)
                    for choice in itertools.product(ops, repeat=k)])
    return out


def brute_force(scores, tables, constant, rules, allowed=None):
    """The best selection within a limit by enumeration: greatest score, then smallest code
    vector. Returns a function of the limit (None: nothing fits)."""
    per_type = []
    for t, rule in rules.items():
        E, K = tables[t].shape
        ops = [k for k in range(K) if allowed is None or allowed[t][k]]
        cells = []
        for combo in itertools.product(*_node_options(rule.edge_node, rule.keep, ops)):
            pick = {e: k for part in combo for e, k in part.items()}
            sel = tuple(pick.get(e, -1) for e in range(E))
            score = sum(float(scores[t][e, k]) for e, k in pick.items())
            cost = sum(float(tables[t][e, k]) for e, k in pick.items())
            code = tuple(rule.order.index(k) if k >= 0 else K for k in sel)
            cells.append((sel, score, cost, code))
        per_type.append((t, cells))
    every = []
    for combo in itertools.product(*(cells for _, cells in per_type)):
        every.append((constant + sum(c[2] for c in combo),
                      (sum(c[1] for c in combo), tuple(-x for c in combo for x in c[3])),
                      {t: c[0] for (t, _), c in zip(per_type, combo)}))

    def best(limit):
        fits = [(key, sel) for cost, key, sel in every if cost <= limit]
        return max(fits, key=lambda f: f[0])[1] if fits else None

    return best


def _eighths(g, shape, top=8):
    return torch.randint(0, top + 1, shape, generator=g).double() / 8


NB201_RULE = CellRule(edge_node=(0, 1, 1, 2, 2, 2), keep=3,
                      order=tuple(tie_order(["none", "skip", "c1", "c3", "pool"]).tolist()))
KEEP2_RULE = CellRule(edge_node=(0, 0, 1, 1, 1), keep=2,
                      order=tuple(tie_order(["none", "a", "b"]).tolist()))


def _budget(tables, rules, constant, limit):
    return Budget(CostTable("params", constant, tables), rules, limit)


# -- the constrained projection -------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(2))
def test_nb201_sized_projection_equals_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    A = {"cell": _eighths(g, (6, 5), top=4)}  # few values: many ties
    table = torch.randint(0, 4, (6, 5), generator=g).double() * 100
    table[:, 0] = 0  # none is free
    rules = {"cell": NB201_RULE}
    lo, hi = 7.0, 7.0 + table.max(dim=1).values.sum().item()
    best = brute_force(A, {"cell": table}, 7.0, rules)
    for limit in torch.linspace(lo, hi, 6).tolist():
        budget = _budget({"cell": table}, rules, 7.0, limit)
        want = best(limit)
        assert best_within(A, budget) == want, limit
        assert budget.costs.cost(want) <= limit


@pytest.mark.parametrize("seed", range(4))
def test_keep2_space_joint_budget_equals_brute_force(seed):
    """Two cell types of a keep-2-of-n space share one budget."""
    g = torch.Generator().manual_seed(10 + seed)
    rules = {"normal": KEEP2_RULE, "reduce": CellRule((0, 0, 0), 1, (1, 0, 2))}
    A = {"normal": _eighths(g, (5, 3), top=3), "reduce": _eighths(g, (3, 3), top=3)}
    tables = {t: torch.randint(0, 5, (a.shape[0], 3), generator=g).double() for t, a in A.items()}
    low = sum(t.min(dim=1).values.sum().item() for t in tables.values())
    best = brute_force(A, tables, 0.0, rules)
    for limit in [low - 1, low, low + 2, low + 4, low + 7, 100.0]:
        budget = _budget(tables, rules, 0.0, limit)
        want = best(limit)
        if want is None:
            with pytest.raises(ConfigError):
                best_within(A, budget)
        else:
            assert best_within(A, budget) == want, limit


def test_derive_excludes_ops():
    """With ``derive``, the ops ``derive_allowed`` leaves out are never chosen."""
    g = torch.Generator().manual_seed(3)
    rule = CellRule((0, 0, 1, 1, 1), 2, (1, 2, 0), derive_allowed=(False, True, True))
    A = {"c": _eighths(g, (5, 3))}
    A["c"][:, 0] = 1.0  # the excluded op is the best everywhere
    table = torch.randint(0, 5, (5, 3), generator=g).double()
    for limit in [4.0, 6.0, 9.0]:
        budget = _budget({"c": table}, {"c": rule}, 0.0, limit)
        want = brute_force(A, {"c": table}, 0.0, {"c": rule},
                           allowed={"c": rule.derive_allowed})(limit)
        got = best_within(A, budget, derive=True) if want is not None else None
        assert got == want


@pytest.mark.parametrize("rule,shape", [(NB201_RULE, (6, 5)), (KEEP2_RULE, (5, 3))])
def test_unbound_budget_is_prox_c1_with_ties(rule, shape):
    """The dynamic programme itself (not the shortcut) reproduces prox_c1's tie-breaks."""
    from nasp.core.budget import _dp

    g = torch.Generator().manual_seed(5)
    for _ in range(20):
        A = {"c": _eighths(g, shape, top=2)}
        budget = _budget({"c": torch.ones(shape, dtype=torch.float64)}, {"c": rule}, 0.0, 1e9)
        want = tuple(selection_indices(prox_c1(A["c"], torch.tensor(rule.edge_node), rule.keep,
                                               torch.tensor(rule.order))).tolist())
        assert _dp(A, budget, False) == {"c": want}
        assert best_within(A, budget) == {"c": want}


def test_infeasible_budget_names_the_cheapest_cost():
    table = torch.tensor([[0.0, 5.0], [3.0, 4.0]])
    budget = _budget({"c": table}, {"c": CellRule((0, 1), 1, (0, 1))}, 10.0, 12.0)
    with pytest.raises(ConfigError, match=r"--max-params 12 parameters.*costs 13 parameters"):
        best_within({"c": torch.zeros(2, 2)}, budget)
    assert budget.cheapest() == 13.0


def test_dp_cost_on_darts_sized_space_is_small():
    """14 edges x 8 ops x 2 cell types, keep 2: exact and feasible (the speed is measured in
    docs/budgets.md, not here)."""
    g = torch.Generator().manual_seed(0)
    edge_node = tuple(i for i in range(4) for _ in range(i + 2))
    rule = CellRule(edge_node, 2, tuple(range(1, 8)) + (0,))
    tables = {t: torch.randint(0, 10_000, (14, 8), generator=g).double() for t in "nr"}
    A = {t: torch.rand(14, 8, generator=g, dtype=torch.float64) for t in "nr"}
    budget = _budget(tables, {"n": rule, "r": rule}, 0.0, 60_000.0)
    sel = best_within(A, budget)
    assert budget.costs.cost(sel) <= 60_000.0
    for t in "nr":
        for n in range(4):
            assert sum(sel[t][e] >= 0 for e in range(14) if edge_node[e] == n) == 2


# -- sampling within a budget -------------------------------------------------------------------


def test_sampling_is_uniform_over_the_fitting_selections():
    """Two cell types under one budget (keep 1 of 2 edges; two nodes of two edges), 3 ops of
    which the derivation excludes one: every fitting selection and only those, with
    frequencies close to uniform (chi-square well below what non-uniform draws give)."""
    table = torch.tensor([[0.0, 0.0, 1.0]] * 4, dtype=torch.float64)
    allowed = (False, True, True)
    rules = {"a": CellRule((0, 0), 1, (1, 2, 0), allowed),
             "b": CellRule((0, 0, 1, 1), 2, (1, 2, 0), allowed)}
    budget = _budget({"a": table[:2], "b": table}, rules, 0.0, 2.0)
    fitting = {(a, b) for a in [(1, -1), (2, -1), (-1, 1), (-1, 2)]
               for b in itertools.product((1, 2), repeat=4)
               if sum(k == 2 for k in (*a, *b)) <= 2}
    assert len(fitting) == 32
    g = torch.Generator().manual_seed(0)
    n = 100 * len(fitting)
    counts = {}
    for _ in range(n):
        s = sample_within(budget, g)
        counts[(s["a"], s["b"])] = counts.get((s["a"], s["b"]), 0) + 1
    assert set(counts) == fitting
    expected = n / len(fitting)
    chi2 = sum((counts[s] - expected) ** 2 / expected for s in fitting)
    assert chi2 < 60  # 31 degrees of freedom: P(chi2 > 60) is about 0.001


def test_sampling_within_a_tight_darts_sized_budget():
    """Where almost nothing fits (1 in ~1e5 cells), every draw fits and the draws differ."""
    edge_node = tuple(i for i in range(4) for _ in range(i + 2))
    rule = CellRule(edge_node, 2, tuple(range(1, 8)) + (0,), tuple(k > 0 for k in range(8)))
    table = torch.tensor([[0.0, 0.0, 0.0, 0.0, 3.0, 5.0, 2.0, 4.0]] * 14, dtype=torch.float64)
    budget = _budget({"n": table, "r": table}, {"n": rule, "r": rule}, 0.0, 4.0)
    g = torch.Generator().manual_seed(0)
    draws = {tuple(sample_within(budget, g)["n"]) for _ in range(50)}
    assert len(draws) > 40
    for _ in range(20):
        assert budget.costs.cost(sample_within(budget, g)) <= 4.0


def test_costs_are_summed_in_float64():
    table = torch.tensor([[0.1, 0.2]], dtype=torch.float64)
    assert CostTable("latency", 1.0, {"c": table}).cost({"c": (1,)}) == 1.0 + 0.2
    assert math.isinf(_budget({"c": table}, {"c": CellRule((0,), 1, (0, 1))}, 0.0, 1.0)
                      .cheapest() * math.inf)


# -- cost tables against built networks ---------------------------------------------------------


@pytest.mark.parametrize("name,primitives", [("nb201", "nb201"), ("darts", "darts"),
                                             ("darts", "nasp-12")])
def test_cost_table_is_the_built_networks_count(name, primitives):
    """The table's prediction equals parameter_count / flop_count of the evaluation network of
    random cells (small sizes, 8x8 images; flops on the meta device)."""
    from nasp.core.measure import flop_count, parameter_count
    from nasp.spaces import build_space

    space = build_space(name, primitives)
    shape, sizes = (1, 8, 8), dict(layers=3, channels=4)
    tables = {m: space.cost_table(m, shape, 10, **sizes) for m in ("params", "flops")}
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        selection = space.random_selection(g)
        with torch.device("meta"):
            net = space.build_evaluation_network(space.genotype_of(selection), 1, 10, **sizes)
        assert tables["params"].cost(selection) == parameter_count(net)
        assert tables["flops"].cost(selection) == flop_count(net, shape)


def test_latency_table_round_trip_and_mismatch(tmp_path):
    """A table written as `nasp profile` writes it is read back; one of another network is a
    clear error."""
    import json

    from nasp.spaces import build_space
    from nasp.spaces.costs import latency_record

    space = build_space("nb201")
    sites = space.edge_sites((1, 8, 8), 10)
    rows = [[0.0, 0.125, 0.5, 1.0, 0.25]] * 6
    path = tmp_path / "ops.json"
    path.write_text(json.dumps(latency_record(sites, {"cell": rows}, 2.0, "nb201", "nb201")))
    table = space.cost_table("latency", (1, 8, 8), 10, latency_table=path)
    assert table.cost({"cell": (3,) * 6}) == 8.0
    with pytest.raises(ConfigError, match="measured for network"):
        space.cost_table("latency", (3, 32, 32), 10, latency_table=path)


# -- budgets in a search --------------------------------------------------------------------------


TINY = ["search", "--space", "nb201", "--preset", "tiny", "--epochs", "2", "--subset", "64",
        "--no-progress", "--no-plots"]


def _limit_between_cheapest_and_free():
    """A --max-params that binds NASP's start cell (all skip_connect, free) only when it asks
    for more than the cheapest: the cheapest plus one 1x1 convolution on 5 cells x 3 stages."""
    from nasp.spaces import build_space

    table = build_space("nb201").cost_table("params", (1, 8, 8), 10)
    return int(table.constant + table.tables["cell"][0, 2].item())


@pytest.mark.parametrize("strategy", ["nasp", "darts", "random"])
def test_search_within_a_parameter_budget(tmp_path, capsys, strategy):
    """Every strategy's found cell, built and counted, fits --max-params; the run reports it."""
    import json

    from nasp.apps.cli import main
    from nasp.core.measure import parameter_count
    from nasp.spaces import build_space, load_genotype

    limit = _limit_between_cheapest_and_free()
    out = tmp_path / strategy
    assert main([*TINY, "--strategy", strategy, "--max-params", str(limit), "--out",
                 str(out)]) == 0
    printed = capsys.readouterr().out
    assert "of at most" in printed and "parameters" in printed
    genotype = load_genotype(out / "genotype.json")
    net = build_space("nb201").build_evaluation_network(genotype, 1, 10, 5, 16)
    assert parameter_count(net) <= limit
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["budget"] == {"metric": "params", "limit": limit,
                                "cost": parameter_count(net)}


def test_nasp_projection_binds_under_a_budget():
    """With A favouring 3x3 convolutions everywhere, NASP's projection under a budget is the
    brute-force best within it (not prox_c1's all-conv cell)."""
    from nasp.config import SearchConfig
    from nasp.spaces import build_space
    from nasp.strategies import build_strategy

    limit = _limit_between_cheapest_and_free() + 20_000
    config = SearchConfig(space="nb201", strategy="nasp", layers=1, channels=4,
                          max_params=limit)
    space = build_space("nb201")
    net = space.build_supernet(1, 10, 1, 4)
    strategy = build_strategy("nasp", space, net, config)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        strategy.arch["cell"].copy_(_eighths(g, (6, 5), top=3))
        strategy.arch["cell"][:, 3] = 1.0
    strategy.project()
    budget = strategy.budget
    want = brute_force({"cell": strategy.arch["cell"].detach().double()}, budget.costs.tables,
                       budget.costs.constant, budget.rules)(limit)
    assert strategy.selection == want
    assert budget.costs.cost(want) <= limit
    assert strategy.A_bar["cell"].sum().item() == 6


def test_infeasible_budget_on_the_command_line(tmp_path, capsys):
    from nasp.apps.cli import main
    from nasp.core.measure import parameter_count
    from nasp.spaces import build_space

    assert main([*TINY, "--max-params", "1000", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "--max-params 1,000 parameters is below the cheapest" in err and "Traceback" not in err
    cheapest = build_space("nb201").build_evaluation_network("|none~0|+|none~0|none~1|+|none~0|"
                                                             "none~1|none~2|", 1, 10, 5, 16)
    assert f"costs {parameter_count(cheapest):,} parameters" in err


def test_profile_writes_a_table_the_search_reads(tmp_path):
    """nasp profile's timing on a tiny network: one entry per edge and op, read back as a
    latency cost table."""
    import json

    from nasp.apps.profile import profile_space
    from nasp.spaces import build_space
    from nasp.spaces.costs import latency_record, read_latency_table

    space = build_space("nb201")
    sites = space.edge_sites((1, 8, 8), 10, layers=1, channels=2)
    ops_ms, constant = profile_space(sites, "cpu", 1, say=lambda line: None)
    assert [len(r) for r in ops_ms["cell"]] == [5] * 6 and constant >= 0
    assert all(v > 0 for row in ops_ms["cell"] for v in row)
    path = tmp_path / "ops.json"
    path.write_text(json.dumps(latency_record(sites, ops_ms, constant, "nb201", "nb201")))
    table = read_latency_table(path, sites, "nb201", "nb201")
    assert table.tables["cell"].tolist() == ops_ms["cell"]


def test_spaces_without_per_op_costs_refuse_a_budget_saying_why():
    """darts-rnn (every cell has the same parameters) and a user's model take no budget: a
    ConfigError naming the option and the reason, not a silent budget of another space."""
    from torch import nn

    import nasp
    from nasp.config import preset
    from nasp.nn import Choice

    with pytest.raises(ConfigError, match=r"--max-params.*--space darts-rnn.*same parameters"):
        preset("tiny", space="darts-rnn", max_params=10**6)
    model = nn.Sequential(Choice([nn.Linear(4, 3), nn.Linear(4, 3)], label="head"))
    data = (torch.randn(8, 4), torch.randint(0, 3, (8,)))
    with pytest.raises(ConfigError, match="max_params.*user's model"):
        nasp.search(model, data, data, max_params=100, epochs=1)
