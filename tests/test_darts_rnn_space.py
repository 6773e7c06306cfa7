"""The DARTS recurrent cell space: its execution modes against each other and against plain
re-computations of DARTS's formulas, DARTS's derivation rule, the evaluation network's size, the
genotype formats.

Tiny float64 networks (vocabulary 20, 6 units, windows of 3 steps, batch 4: BatchNorm over a
batch of 2 would map every unit to about +-1 and hide most mistakes).
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from nasp.core.measure import parameter_count
from nasp.core.mixed import CellPlan
from nasp.core.prox import selection_indices
from nasp.errors import GenotypeError
from nasp.spaces import (
    DartsRNNSpace,
    RecurrentDropouts,
    RecurrentGenotype,
    build_space,
    resolve_genotype,
    space_of,
)
from nasp.spaces.darts_rnn.network import RecurrentMasks
from nasp.tasks.windows import TokenWindow

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB, H, T, B = 20, 6, 3, 4
PRIMS = ("none", "tanh", "relu", "sigmoid", "identity")
ACT = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid,
       "identity": lambda v: v}
V2_TEXT = ("DARTS_V2 = Genotype(recurrent=[('sigmoid', 0), ('relu', 1), ('relu', 1), "
           "('identity', 1), ('tanh', 2), ('sigmoid', 5), ('tanh', 3), ('relu', 5)], "
           "concat=range(1, 9))")
DROPOUTS = RecurrentDropouts(output=0.3, hidden=0.25, input_x=0.4, embedding_input=0.2,
                             embedding_words=0.3)


def _spread(net, seed=0):
    """Weights far from DARTS's tiny init, so every op and mask visibly changes the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.6 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return net


@pytest.fixture
def space():
    return build_space("darts-rnn")


@pytest.fixture
def supernet(space):
    torch.manual_seed(0)
    net = _spread(space.build_supernet(1, VOCAB, 1, H).double())
    net.dropouts = DROPOUTS
    return net


def window(seed=1, state=True):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, VOCAB, (T, B), generator=g)
    targets = torch.randint(0, VOCAB, (T * B,), generator=g)
    h0 = torch.randn(B, H, generator=g, dtype=torch.float64) if state else None
    return TokenWindow(tokens, h0), targets


def arch_point(space, seed=3, none_node=None):
    """A_bar = prox_C1(A) for a random A, its selection; ``none_node``: that node's kept row
    selects ``none``."""
    A = torch.rand(space.arch_shapes()["recurrent"], generator=torch.Generator().manual_seed(seed),
                   dtype=torch.float64)
    if none_node is not None:
        A[space.offsets[none_node], 0] = 2.0
    A_bar = space.project({"recurrent": A})["recurrent"]
    return A, A_bar, tuple(selection_indices(A_bar).tolist())


def run(net, mode, weights, selection, seed=7, state=True):
    """Loss (nll + slowness penalty), log-probs, penalty, final state of one forward pass; the
    masks drawn from ``seed``."""
    x, y = window(state=state)
    torch.manual_seed(seed)
    log_probs, penalty = net(x, {"recurrent": CellPlan(mode, weights, selection)})
    return F.nll_loss(log_probs, y) + penalty, log_probs, penalty, x.final


# ------------------------------------------------------------------------------ execution modes


@pytest.mark.parametrize("none_node", [None, 3])
def test_sparse_gradients_equal_reference_for_every_entry(space, supernet, none_node):
    _, A_bar, selection = arch_point(space, none_node=none_node)
    if none_node is not None:
        assert selection[space.offsets[none_node]] == 0  # node 4 keeps its none
    results = {}
    for mode in ("reference", "sparse"):
        supernet.zero_grad(set_to_none=True)
        leaf = A_bar.clone().requires_grad_(True)
        loss, log_probs, penalty, final = run(supernet, mode, leaf, selection)
        loss.backward()
        grads = {n: torch.zeros_like(p) if p.grad is None else p.grad.clone()
                 for n, p in supernet.named_parameters()}
        results[mode] = (leaf.grad, grads, log_probs.detach(), final.detach())
    (ref_a, ref_w, ref_out, ref_h), (sp_a, sp_w, sp_out, sp_h) = results.values()
    torch.testing.assert_close(sp_out, ref_out, rtol=0, atol=1e-12)
    torch.testing.assert_close(sp_h, ref_h, rtol=0, atol=1e-12)
    live = [k for k, name in enumerate(PRIMS) if name != "none"]
    nonzero = ref_a[:, live] != 0  # the gradients to compare; with node 4 none, its state is
    # 0 and ops other than sigmoid of it give 0 whatever their weight
    assert nonzero.all() if none_node is None else nonzero.float().mean() > 0.85
    assert (ref_a[:, 0] == 0).all()  # none: <g, 0>
    torch.testing.assert_close(sp_a, ref_a, rtol=1e-10, atol=1e-12)
    assert set(sp_w) == set(ref_w)
    for name in ref_w:
        torch.testing.assert_close(sp_w[name], ref_w[name], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("which", ["DARTS_V2_RNN", "random"])
@pytest.mark.parametrize("training", [True, False])
def test_discrete_equals_the_extracted_child_and_reference(space, supernet, which, training):
    genotype = (space.builtin_genotypes[which] if which != "random" else
                space.genotype_of(space.random_selection(torch.Generator().manual_seed(5))))
    selection = space.selection_of(genotype)["recurrent"]
    one_hot = torch.zeros(space.arch_shapes()["recurrent"], dtype=torch.float64)
    for e, k in enumerate(selection):
        if k >= 0:
            one_hot[e, k] = 1.0
    supernet.train()
    run(supernet, "reference", one_hot, selection)  # BatchNorm statistics away from their init
    child = space.extract_child(supernet, genotype)
    assert type(child).__name__ == "RecurrentNetwork" and child.genotype == genotype
    supernet.train(training)
    child.train(training)
    outputs = {}
    for mode, weights in (("discrete", None), ("reference", one_hot), ("sparse", one_hot)):
        x, _ = window()
        torch.manual_seed(11)
        out = supernet(x, {"recurrent": CellPlan(mode, weights, selection)})
        outputs[mode] = (out, x.final)
    x, _ = window()
    torch.manual_seed(11)
    outputs["child"] = (child(x), x.final)
    first, h = outputs.pop("discrete")
    for out, final in outputs.values():
        if training:
            torch.testing.assert_close(out[0], first[0], rtol=0, atol=1e-12)
            torch.testing.assert_close(out[1], first[1], rtol=0, atol=1e-12)
        else:
            torch.testing.assert_close(out, first, rtol=0, atol=1e-12)
        torch.testing.assert_close(final, h, rtol=0, atol=1e-12)


def test_an_evaluated_cell_normalises_with_the_batch_statistics(space, supernet):
    """In eval mode the search cell's BatchNorm uses the batch's statistics, whatever the
    training passes before it saw: so the eval output equals a training-mode pass without
    dropout. (Running statistics shared by all nodes and steps made evaluated children's states
    overflow to NaN.)"""
    _, A_bar, selection = arch_point(space)
    plans = {"recurrent": CellPlan("discrete", A_bar, selection)}
    for seed in range(3):  # training passes that would move running statistics
        supernet(window(seed)[0], plans)
    supernet.eval()
    evaluated = supernet(window()[0], plans)
    supernet.train()
    supernet.dropouts = RecurrentDropouts(0.0, 0.0, 0.0, 0.0, 0.0)
    supernet.slowness = 0.0
    trained = supernet(window()[0], plans)
    assert torch.allclose(evaluated, trained, atol=1e-12, rtol=0)


# ------------------------------------------------------- plain re-computations of DARTS's formulas


def _bn(s):
    """BatchNorm1d(affine=False) in training mode: the batch's mean and biased variance."""
    return (s - s.mean(0)) / torch.sqrt(s.var(0, unbiased=False) + 1e-5)


def _masks(seed=4):
    g = torch.Generator().manual_seed(seed)

    def m(shape, p):
        return torch.bernoulli(torch.full(shape, 1 - p, dtype=torch.float64), generator=g) / (1 - p)
    return RecurrentMasks(embedding_words=m((VOCAB, 1), 0.3), embedding_input=m((1, B, H), 0.2),
                          input_x=m((B, H), 0.4), hidden=m((B, H), 0.25),
                          output=m((1, B, H), 0.3))


def _language_model(net, x, masks, beta, cell_step):
    """DARTS's RNNModel forward, written out: embedded dropout, locked dropouts, the cell step
    by step, the tied decoder; returns (log_probs, TAR penalty, last hidden)."""
    E, bias = net.encoder.weight, net.decoder.bias
    emb = E[x.tokens] * masks.embedding_words[x.tokens] * masks.embedding_input
    h, outs = x.state, []
    for t in range(T):
        h = cell_step(emb[t], h)
        outs.append(h)
    hs = torch.stack(outs)
    logits = (hs * masks.output).reshape(T * B, H) @ E.t() + bias
    return F.log_softmax(logits, dim=-1), beta * ((hs[1:] - hs[:-1]) ** 2).mean(), h


def _init_state(cell, x_t, h, masks):
    """DARTS's _compute_init_state: [x * x_mask, h * h_mask] @ W0, c0 gate, tanh."""
    xh = torch.cat([x_t * masks.input_x, h * masks.hidden], dim=1) @ cell.W0
    c0, h0 = xh[:, :H].sigmoid(), xh[:, H:].tanh()
    return h + c0 * (h0 - h)


def test_dense_equals_darts_search_cell_written_out(space, supernet, monkeypatch):
    """DARTSCellSearch.cell with probs = softmax(alpha), loop by loop (every node, input, op)."""
    alpha = torch.randn(space.arch_shapes()["recurrent"],
                        generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    probs = torch.softmax(alpha, dim=-1)
    masks = _masks()
    monkeypatch.setattr(supernet, "draw_masks", lambda batch: masks)
    cell = supernet.cell

    def step(x_t, h):
        states = [_bn(_init_state(cell, x_t, h, masks))]
        row = 0
        for i in range(8):
            s = torch.zeros_like(h)
            for j in range(i + 1):
                ch = (states[j] * masks.hidden) @ cell.Ws[i]
                c, g = ch[:, :H].sigmoid(), ch[:, H:]
                for k, name in enumerate(PRIMS):
                    if name != "none":
                        s = s + probs[row, k] * (states[j] + c * (ACT[name](g) - states[j]))
                row += 1
            states.append(_bn(s))
        return torch.stack(states[1:]).mean(0)

    x, _ = window()
    expected, penalty, h = _language_model(supernet, x, masks, supernet.slowness, step)
    x, _ = window()
    log_probs, got_penalty = supernet(x, {"recurrent": CellPlan("dense", probs)})
    torch.testing.assert_close(log_probs, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got_penalty, penalty, rtol=1e-10, atol=1e-15)
    torch.testing.assert_close(x.final, h, rtol=1e-10, atol=1e-12)


def test_evaluation_network_equals_darts_cell_written_out(space, monkeypatch):
    """DARTSCell.cell of DARTS_V2 (no BatchNorm) in DARTS's RNNModel."""
    genotype = space.builtin_genotypes["DARTS_V2_RNN"]
    torch.manual_seed(0)
    net = _spread(space.build_evaluation_network(genotype, 1, VOCAB, 1, H).double())
    assert net.dropouts == RecurrentDropouts(0.75, 0.25, 0.75, 0.2, 0.1)  # DARTS's train.py
    assert net.slowness == 1e-3
    masks = _masks(seed=6)
    monkeypatch.setattr(net, "draw_masks", lambda batch: masks)
    cell = net.cell

    def step(x_t, h):
        states = [_init_state(cell, x_t, h, masks)]
        for i, (name, j) in enumerate(genotype.recurrent):
            ch = (states[j] * masks.hidden) @ cell.Ws[i]
            c, g = ch[:, :H].sigmoid(), ch[:, H:]
            states.append(states[j] + c * (ACT[name](g) - states[j]))
        return torch.stack([states[i] for i in genotype.concat]).mean(0)

    x, _ = window()
    expected, penalty, h = _language_model(net, x, masks, 1e-3, step)
    x, _ = window()
    log_probs, got_penalty = net(x)
    torch.testing.assert_close(log_probs, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got_penalty, penalty, rtol=1e-10, atol=1e-15)
    torch.testing.assert_close(x.final, h, rtol=1e-10, atol=1e-12)
    net.eval()  # no dropout, no penalty; zeros when the window brings no state
    x, _ = window(state=False)
    out = net(x)
    assert isinstance(out, torch.Tensor) and out.shape == (T * B, VOCAB)
    torch.testing.assert_close(out.exp().sum(1), torch.ones(T * B, dtype=torch.float64))


def test_masks_are_drawn_per_window_and_scaled(supernet):
    masks = supernet.draw_masks(B)
    for name, p in (("output", 0.3), ("hidden", 0.25), ("input_x", 0.4),
                    ("embedding_input", 0.2), ("embedding_words", 0.3)):
        m = getattr(masks, name)
        assert set(m.unique().tolist()) <= {0.0, 1 / (1 - p)}
    assert masks.embedding_words.shape == (VOCAB, 1) and masks.hidden.shape == (B, H)
    assert masks.output.shape == masks.embedding_input.shape == (1, B, H)
    supernet.eval()
    assert supernet.draw_masks(B) == RecurrentMasks()
    with pytest.raises(ValueError, match="hidden dropout"):
        RecurrentDropouts(0.1, 1.0, 0.1, 0.1, 0.1)


# ------------------------------------------------------------------------------ derivation


def darts_parse(probs):
    """A port of DARTS's rnn/model_search.py ``_parse`` (lists, no tensors)."""
    gene, start, none = [], 0, PRIMS.index("none")
    for i in range(8):
        end = start + i + 1
        W = probs[start:end]
        j = sorted(range(i + 1), key=lambda x: -max(W[x][k] for k in range(len(W[x]))
                                                      if k != none))[0]
        k_best = None
        for k in range(len(W[j])):
            if k != none and (k_best is None or W[j][k] > W[j][k_best]):
                k_best = k
        gene.append((PRIMS[k_best], j))
        start = end
    return gene


@pytest.mark.parametrize("seed", range(12))
def test_derive_is_darts_parse_ties_included(space, seed):
    g = torch.Generator().manual_seed(seed)
    # few distinct values: ties between ops and between inputs are common
    A = torch.randint(0, 3 if seed % 2 else 2, (36, 5), generator=g).double()
    if seed == 0:
        A = torch.zeros(36, 5, dtype=torch.float64)  # every entry ties
    genotype = space.derive({"recurrent": A})
    expected = darts_parse(torch.softmax(A, dim=-1).tolist())
    assert list(genotype.recurrent) == expected
    assert genotype.concat == tuple(range(1, 9))


def test_projection_selection_and_random_cells(space):
    A = torch.full((36, 5), 0.5)
    A_bar = space.project({"recurrent": A})["recurrent"]
    selection = tuple(selection_indices(A_bar).tolist())
    # none loses ties and one row per node is kept (the lowest input on ties)
    assert space.genotype_of({"recurrent": selection}).recurrent == (("tanh", 0),) * 8
    for seed in range(20):
        sel = space.random_selection(torch.Generator().manual_seed(seed))
        genotype = space.genotype_of(sel)
        assert all(op != "none" for op, _ in genotype.recurrent)
        assert space.selection_of(genotype) == sel
        assert sum(k >= 0 for k in sel["recurrent"]) == 8
    a = space.random_selection(torch.Generator().manual_seed(1))
    assert a == space.random_selection(torch.Generator().manual_seed(1))
    assert space.op_costs("recurrent").tolist() == [0.0, 0.25, 0.25, 0.25, 0.25]
    assert space.edge_labels("recurrent")[:4] == ["1<-0", "2<-0", "2<-1", "3<-0"]
    with pytest.raises(ValueError, match="node 2 of the recurrent cell has 2 selected"):
        space.genotype_of({"recurrent": (1, 1, 1) + (-1,) * 33})
    with pytest.raises(ValueError, match="averages every node"):
        space.selection_of(RecurrentGenotype(((("tanh", 0),) * 8), [8]))


# ------------------------------------------------------------------- the evaluation network


def test_darts_v2_has_23m_parameters_at_850_units(space):
    genotype = resolve_genotype("DARTS_V2_RNN")
    V, Hd, steps = 10_000, 850, 8
    formula = (V * Hd            # embedding = decoder weight (tied)
               + V               # decoder bias
               + (2 * Hd) * (2 * Hd)  # W0: (ninp + nhid) x 2 nhid
               + steps * Hd * 2 * Hd)  # Ws
    assert formula == 22_960_000  # DARTS: 23M
    assert space.evaluation_sizes == {"layers": 1, "channels": Hd}
    with torch.device("meta"):
        net = space.build_evaluation_network(genotype, 3, V, **space.evaluation_sizes)
    assert parameter_count(net) == formula
    assert net.decoder.weight is net.encoder.weight
    with pytest.raises(ValueError, match="--layers must be 1"):
        DartsRNNSpace.check_sizes(2, 850)


# ---------------------------------------------------------------------------- genotype formats


def test_genotype_text_and_json_round_trip(tmp_path):
    v2 = resolve_genotype("darts_v2_rnn")
    assert RecurrentGenotype.parse(V2_TEXT) == v2 == resolve_genotype(V2_TEXT)
    assert str(v2) == V2_TEXT.split(" = ")[1]
    assert RecurrentGenotype.parse(str(v2)) == v2
    assert resolve_genotype("DARTS_V1_RNN").recurrent[5] == ("identity", 1)
    data = json.loads(v2.to_json())
    assert data == {"space": "darts-rnn", "recurrent": [list(p) for p in v2.recurrent],
                    "concat": list(range(1, 9))}
    v2.save(tmp_path / "genotype.json")
    assert resolve_genotype(tmp_path) == v2 and space_of(v2).name == "darts-rnn"
    odd = RecurrentGenotype([("tanh", 0), ("none", 1)], [2, 1])
    assert str(odd).endswith("concat=[2, 1])") and RecurrentGenotype.parse(str(odd)) == odd
    assert resolve_genotype("DARTS_V2").space == "darts"  # the CNN cell keeps its name and text
    assert resolve_genotype(str(resolve_genotype("DARTS_V2"))).space == "darts"


@pytest.mark.parametrize("text, message", [
    (V2_TEXT.replace("'tanh', 2", "'sep_conv_3x3', 2"), "recurrent\\[4\\] .*unknown op"),
    (V2_TEXT.replace("('relu', 1), ('relu', 1)", "('relu', 2), ('relu', 1)"),
     "recurrent\\[1\\] \\(node 2\\): input state 2 is out of range; node 2 can read states 0..1"),
    (V2_TEXT.replace("range(1, 9)", "[1, 1]"), "concat\\[1\\]: state 1 appears twice"),
    (V2_TEXT.replace("range(1, 9)", "range(0, 10)"), "concat has more than 9 entries"),
    (V2_TEXT.replace(", concat=range(1, 9)", ""), "missing argument\\(s\\) concat"),
    (V2_TEXT.replace("concat=", "normal=[], concat="), "unexpected argument normal"),
    (V2_TEXT.replace("('sigmoid', 0)", "('sigmoid', True)"), "must be an int"),
    ("Genotype(recurrent=[], concat=[0])", "recurrent is empty"),
    ("Genotype(recurrent=__import__('os'), concat=[1])", "is not allowed"),
])
def test_genotype_errors_say_what_is_wrong(text, message):
    with pytest.raises(GenotypeError, match=message):
        resolve_genotype(text)


def test_drawings(space, tmp_path):
    v2 = resolve_genotype("DARTS_V2_RNN")
    dot = DartsRNNSpace.cell_dot(v2, "recurrent")
    assert '"5" -> "6" [label="sigmoid"];' in dot and '"x_{t}" -> "0";' in dot
    labels, kept = DartsRNNSpace.genotype_edges(v2)["recurrent"]
    assert [labels[e] for e in sorted(kept)] == [f"{i + 1}<-{j}" for i, (_, j) in
                                                 enumerate(v2.recurrent)]
    pytest.importorskip("matplotlib")
    DartsRNNSpace.draw_cell(v2, "recurrent", tmp_path / "cell.png")
    assert (tmp_path / "cell.png").stat().st_size > 1000
