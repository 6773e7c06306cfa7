"""Collapse diagnostics: each number against an independent computation on a tiny supernet."""

import json
import math

import numpy as np
import pytest
import torch

from nasp import BUILTIN_GENOTYPES, Genotype, preset, search
from nasp.core.mixed import CellPlan, MixedOp
from nasp.engine.diagnostics import (
    Diagnostics,
    arch_selection,
    changed_edges,
    edge_entropy,
    format_diagnostics,
    op_correlation,
    param_free_count,
)
from nasp.spaces import DartsCNNSpace
from nasp.spaces.darts_cnn.supernet import Supernet

CONCAT = [2, 3, 4, 5]


def test_param_free_count_of_published_cells():
    space = DartsCNNSpace("darts")
    # DARTS_V2: normal has 2 skip_connect among 8 edges; reduce is all max_pool / skip_connect
    assert param_free_count(space, BUILTIN_GENOTYPES["DARTS_V2"]) == {
        "normal": 2, "reduce": 8, "total": 10, "edges": 16}
    all_skip = [("skip_connect", 0), ("skip_connect", 1)] * 4
    genotype = Genotype(normal=all_skip, normal_concat=CONCAT, reduce=all_skip,
                        reduce_concat=CONCAT)
    assert param_free_count(space, genotype)["total"] == 16
    all_sep = [("sep_conv_3x3", 0), ("dil_conv_5x5", 1)] * 4
    genotype = Genotype(normal=all_sep, normal_concat=CONCAT, reduce=all_skip,
                        reduce_concat=CONCAT)
    assert param_free_count(space, genotype) == {"normal": 0, "reduce": 8, "total": 8,
                                                 "edges": 16}


def test_edge_entropy():
    A = torch.randn(14, 7, generator=torch.Generator().manual_seed(0))
    entropy = edge_entropy({"normal": torch.zeros(14, 7), "reduce": A})
    assert entropy["normal"] == pytest.approx([math.log(7)] * 14)
    for row, h in zip(A.tolist(), entropy["reduce"]):
        z = sum(math.exp(a) for a in row)
        assert h == pytest.approx(-sum(math.exp(a) / z * (a - math.log(z)) for a in row))
    peaked = torch.zeros(14, 7)
    peaked[:, 3] = 50.0
    assert max(edge_entropy({"normal": peaked})["normal"]) < 1e-15


def test_changed_edges():
    space = DartsCNNSpace("darts-7")
    A = {t: torch.rand(14, 7, generator=torch.Generator().manual_seed(i))
         for i, t in enumerate(("normal", "reduce"))}
    before = arch_selection(space, A)
    assert changed_edges(before, arch_selection(space, A)) == {"normal": 0, "reduce": 0,
                                                                "total": 0}
    # make edge 0 (node 0 keeps both its edges) pick another op: exactly one edge changes
    B = {t: a.clone() for t, a in A.items()}
    other = (before["normal"][0] + 1) % 7
    B["normal"][0, other] = 2.0
    after = arch_selection(space, B)
    assert after["normal"][0] == other
    assert changed_edges(before, after) == {"normal": 1, "reduce": 0, "total": 1}
    # drop edge 9 from node 3 in favour of an edge that was dropped: two edges change
    dropped = [e for e in range(9, 14) if before["reduce"][e] < 0][0]
    kept = [e for e in range(9, 14) if before["reduce"][e] >= 0][0]
    B["reduce"][dropped] = B["reduce"][kept] + 1.0
    B["reduce"][kept] = 0.0
    assert changed_edges(before, arch_selection(space, B))["reduce"] == 2


def test_identical_ops_correlate_perfectly():
    """Two copies of a parameter-free op on every edge give identical outputs: correlation 1."""
    torch.manual_seed(0)
    net = Supernet(3, 5, 3, 4, {"normal": ("skip_connect", "skip_connect"),
                                "reduce": ("max_pool_3x3", "max_pool_3x3")}).double()
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    r = op_correlation(net, x, {"normal": (14, 2), "reduce": (14, 2)})
    assert r == pytest.approx({"normal": 1.0, "reduce": 1.0, "mean": 1.0})


def _reference_correlation(net, x, shapes):
    """Independently: record every edge's input in a dense uniform forward of a copy of the
    network, rerun each op on it, and correlate with numpy; cell types from the cells."""
    net = __import__("copy").deepcopy(net).train()
    inputs = []
    hooks = [m.register_forward_pre_hook(lambda m, args: inputs.append((m, args[0])))
             for m in net.modules() if isinstance(m, MixedOp)]
    kind = {id(m): ("reduce" if cell.reduction else "normal")
            for cell in net.cells for m in cell.edges}
    plans = {t: CellPlan("dense", torch.full(s, 1.0 / s[1], dtype=torch.float64))
             for t, s in shapes.items()}
    with torch.no_grad():
        net(x, plans)
        per_type = {"normal": [], "reduce": []}
        for m, h in inputs:
            ys = [op(h).flatten().numpy() for name, op in zip(m.primitives, m.ops)
                  if name != "none"]
            ys = [y for y in ys if y.max() > y.min()]
            c = np.corrcoef(np.stack(ys))
            per_type[kind[id(m)]].append(c[np.triu_indices(len(ys), 1)].mean())
    for h in hooks:
        h.remove()
    every = per_type["normal"] + per_type["reduce"]
    return {"normal": np.mean(per_type["normal"]), "reduce": np.mean(per_type["reduce"]),
            "mean": np.mean(every)}


@pytest.mark.parametrize("primitives", ["darts", "darts-7"])
def test_op_correlation_against_numpy(primitives, one_thread):
    torch.manual_seed(0)
    space = DartsCNNSpace(primitives)
    net = space.build_supernet(3, 5, layers=3, channels=4).double()
    x = torch.randn(6, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    buffers = {k: v.clone() for k, v in net.named_buffers()}
    net.eval()
    r = op_correlation(net, x, space.arch_shapes())
    expected = _reference_correlation(net, x, space.arch_shapes())
    assert r == pytest.approx(expected, abs=1e-9)
    assert all(-1 < v < 1 for v in r.values())
    # the measurement leaves the network as it was: BatchNorm statistics and eval mode
    assert not net.training
    for k, v in net.named_buffers():
        assert torch.equal(v, buffers[k]), k


def test_diagnostics_tracks_changes_between_measurements(tiny, one_thread):
    space, net, _, val = tiny
    A = {t: torch.rand(14, 7, generator=torch.Generator().manual_seed(3)) for t in ("normal",
                                                                                  "reduce")}
    d = Diagnostics(space, net, val[0], A)
    first = d.measure(A, space.derive(A))
    assert first["changed_edges"]["total"] == 0
    B = {t: a.flip(1) for t, a in A.items()}  # other ops win, the same rows' entropies
    second = d.measure(B, space.derive(B))
    assert second["changed_edges"] == changed_edges(arch_selection(space, A),
                                                    arch_selection(space, B))
    assert second["changed_edges"]["total"] > 0
    assert d.measure(B, space.derive(B))["changed_edges"]["total"] == 0
    assert second["entropy"]["mean"] == pytest.approx(first["entropy"]["mean"])
    assert second["param_free"] == param_free_count(space, space.derive(B))
    text = format_diagnostics(second)
    assert text.startswith(f"param-free {second['param_free']['total']}/16")


def test_every_search_epoch_logs_diagnostics(tmp_path, one_thread):
    config = preset("tiny", strategy="darts", epochs=2, subset=64, out=str(tmp_path / "run"))
    lines = []
    search(config, progress=False, plots=False, log=lines.append)
    records = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text()
               .splitlines()]
    space = DartsCNNSpace("darts-7")
    for r in records:
        d = r["diagnostics"]
        assert set(d) == {"param_free", "entropy", "changed_edges", "op_correlation"}
        assert d["param_free"] == param_free_count(space, Genotype.from_dict(r["genotype"]))
        arch = {t: torch.tensor(a) for t, a in r["arch"].items()}
        for t, hs in edge_entropy(arch).items():
            assert d["entropy"]["per_edge"][t] == pytest.approx(hs)
        assert r["cpu_seconds"] >= 0
    before, after = ({t: torch.tensor(a) for t, a in r["arch"].items()} for r in records)
    assert records[1]["diagnostics"]["changed_edges"] == changed_edges(
        arch_selection(space, before), arch_selection(space, after))
    # the diagnostics are in metrics.jsonl only: the epoch's line keeps within 120 columns
    epoch_lines = [line for line in lines if line.startswith("epoch ")]
    assert len(epoch_lines) == 2 and not any("param-free" in line for line in epoch_lines)
