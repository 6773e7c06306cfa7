"""Invariants and tie rules of the NASP proximal steps."""

import itertools

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from nasp.core.prox import edge_keep_mask, prox_c1, prox_c2, selection_indices, tie_order
from nasp.spaces import PRIMITIVE_SETS, DartsCNNSpace, NB201Space

SPACE = DartsCNNSpace("darts-7")
EDGE_NODE = SPACE.edge_node


def brute_force_c1(A: torch.Tensor, edge_node: torch.Tensor, keep: int,
                   names: list[str] | None = None) -> torch.Tensor:
    """prox_C1 written out with Python loops, straight from its definition: ties to the lowest
    op index, except that an op named ``none`` (when ``names`` are given) wins only when it is
    strictly largest."""
    E, K = A.shape
    out = torch.zeros_like(A)
    for node in edge_node.unique().tolist():
        edges = [e for e in range(E) if edge_node[e] == node]
        # sorted() is stable: equal maxima keep ascending edge order
        ranked = sorted(edges, key=lambda e: -max(A[e].tolist()))
        for e in ranked[:keep]:
            row = A[e].tolist()
            best = None
            for k in range(K):  # a later op wins only when strictly larger, or over a tied none
                if best is None or row[k] > row[best] or (
                        row[k] == row[best] and names is not None and names[best] == "none"):
                    best = k
            out[e, best] = 1.0
    return out


values = st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0])  # few values: many ties


@settings(max_examples=300, deadline=None)
@given(arrays("float32", (14, 7), elements=values))
def test_prox_c1_matches_definition_with_ties(a):
    A = torch.from_numpy(a)
    assert torch.equal(prox_c1(A, EDGE_NODE, 2), brute_force_c1(A, EDGE_NODE, 2))


@settings(max_examples=200, deadline=None)
@given(arrays("float32", (14, 5), elements=st.floats(-3, 3, width=32)))
def test_prox_c1_invariants(a):
    A = torch.from_numpy(a)
    A_bar = prox_c1(A, EDGE_NODE, 2)
    assert set(A_bar.unique().tolist()) <= {0.0, 1.0}
    assert (A_bar.sum(1) <= 1).all()
    kept = A_bar.sum(1) == 1
    for node in range(4):  # exactly two edges into every node
        assert kept[EDGE_NODE == node].sum() == 2
    # the one on each kept edge sits on a maximal entry
    picked = (A * A_bar).sum(1)[kept]
    assert torch.equal(picked, A.amax(1)[kept])
    # projection is idempotent on its own output and does not touch its input
    assert torch.equal(prox_c1(A_bar, EDGE_NODE, 2), A_bar)
    assert torch.equal(A, torch.from_numpy(a))


def test_prox_c1_keeps_strongest_edges_per_node():
    A = torch.zeros(14, 3)
    A[9:14, 0] = torch.tensor([0.1, 0.9, 0.3, 0.8, 0.2])  # node 3 (state 5)
    A_bar = prox_c1(A, EDGE_NODE, 2)
    assert A_bar[9:14].sum(1).tolist() == [0, 1, 0, 1, 0]


def test_prox_c1_ties_go_to_lowest_indices():
    A = torch.full((14, 4), 0.5)  # NASP's initial point: everything ties
    A_bar = prox_c1(A, EDGE_NODE, 2)
    kept = [e for e in range(14) if A_bar[e].sum() == 1]
    assert kept == [0, 1, 2, 3, 5, 6, 9, 10]
    assert (A_bar[kept].argmax(1) == 0).all()


def test_keep_all_edges_is_one_hot_per_edge():
    A = torch.randn(6, 5)
    A_bar = prox_c1(A, torch.tensor([0, 1, 1, 2, 2, 2]), keep=3)
    assert torch.equal(A_bar, torch.nn.functional.one_hot(A.argmax(1), 5).float())


def test_edge_keep_mask_exhaustive_small():
    edge_node = torch.tensor([0, 0, 0])
    for scores in itertools.product([0, 1, 2], repeat=3):
        mask = edge_keep_mask(torch.tensor(scores, dtype=torch.float), edge_node, 2).tolist()
        expected = sorted(range(3), key=lambda e: -scores[e])[:2]
        assert [e for e in range(3) if mask[e]] == sorted(expected)


@settings(max_examples=100, deadline=None)
@given(arrays("float32", (14, 7), elements=st.floats(-5, 5, width=32)))
def test_prox_c2_is_projection_onto_unit_box(a):
    A = torch.from_numpy(a)
    P = prox_c2(A)
    assert ((P >= 0) & (P <= 1)).all()
    inside = (A >= 0) & (A <= 1)
    assert torch.equal(P[inside], A[inside])
    assert torch.equal(prox_c2(P), P)


def test_selection_indices():
    A_bar = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    assert selection_indices(A_bar).tolist() == [1, -1, 0]


def test_space_projection_per_cell_type():
    space = DartsCNNSpace("nasp-12")
    A = {t: torch.rand(s) for t, s in space.arch_shapes().items()}
    A_bar = space.project(A)
    assert A_bar["normal"].shape == (14, 8) and A_bar["reduce"].shape == (14, 5)
    for t in A:
        assert torch.equal(A_bar[t], brute_force_c1(A[t], space.edge_node, 2))


@settings(max_examples=200, deadline=None)
@given(arrays("float32", (14, 8), elements=values))
def test_none_loses_ties_in_the_darts_set(a):
    """The DARTS set has none first: at ties the projection takes the next op (the rule both
    spaces share), and none only where it is strictly largest."""
    space = DartsCNNSpace("darts")
    names = list(space.primitives["normal"])
    A = torch.from_numpy(a)
    projected = space.project({"normal": A, "reduce": A})
    expected = brute_force_c1(A, space.edge_node, 2, names)
    assert torch.equal(projected["normal"], expected)
    assert torch.equal(projected["reduce"], expected)


def test_initial_point_is_not_the_dead_all_none_network():
    """NASP starts at A = 0.5: no kept edge may select none (in either space)."""
    for space in (DartsCNNSpace("darts"), NB201Space()):
        A = {t: torch.full(s, 0.5) for t, s in space.arch_shapes().items()}
        for t, a_bar in space.project(A).items():
            chosen = [space.primitives[t][k] for k in selection_indices(a_bar).tolist() if k >= 0]
            assert chosen and "none" not in chosen, (space.name, t, chosen)


def test_tie_order_puts_none_last():
    normal = PRIMITIVE_SETS["darts"]["normal"]
    assert [normal[k] for k in tie_order(normal).tolist()] == [*normal[1:], "none"]
    assert tie_order(["a", "b"]).tolist() == [0, 1]
