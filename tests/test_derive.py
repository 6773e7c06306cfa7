"""``DartsCNNSpace.derive`` against an independent port of the DARTS reference rule.

The rule of quark0/darts (``cnn/model_search.py``, ``Network.genotype``), restated here with
plain Python loops over lists: ``W = softmax`` of each row of the architecture matrix; for each
node, its incoming edges sorted by the largest ``W`` over the ops other than ``none``, strongest
first, with a stable sort (equal strengths keep the lower edge index first), and the first 2 kept;
on each kept edge the op with the largest ``W`` other than ``none``, the first one met (lowest op
index) on ties. The normal and the reduction cell are derived the same way, each with its own
primitive list.
"""

import math
import random

import pytest
import torch

from nasp.spaces import DartsCNNSpace

STEPS, KEEP = 4, 2
NUM_EDGES = sum(i + 2 for i in range(STEPS))


def softmax_rows(rows):
    out = []
    for row in rows:
        top = max(row)
        exps = [math.exp(x - top) for x in row]
        total = sum(exps)
        out.append([e / total for e in exps])
    return out


def reference_cell(rows, names):
    """(op name, input) pairs of one cell, node by node, by the reference rule."""
    W = softmax_rows(rows)
    usable = [k for k in range(len(names)) if names[k] != "none"]
    pairs = []
    start = 0
    for node in range(STEPS):
        n = node + 2
        strength = {}
        for j in range(n):
            strength[j] = max(W[start + j][k] for k in usable)
        order = sorted(range(n), key=lambda j: -strength[j])  # stable: ties to the lower j
        for j in order[:KEEP]:
            best = None
            for k in usable:
                if best is None or W[start + j][k] > W[start + j][best]:
                    best = k
            pairs.append((names[best], j))
        start += n
    return pairs


def check(space, A):
    """derive(A) equals the reference rule on both cells."""
    genotype = space.derive({t: torch.tensor(rows, dtype=torch.float64) for t, rows in A.items()})
    for t, pairs in (("normal", genotype.normal), ("reduce", genotype.reduce)):
        expected = reference_cell(A[t], space.primitives[t])
        assert [tuple(p) for p in pairs] == expected, (t, A[t])
    assert list(genotype.normal_concat) == list(genotype.reduce_concat) == [2, 3, 4, 5]


SETS = ["darts", "darts-7", "nasp-12"]


def test_the_sets_cover_what_the_rule_distinguishes():
    spaces = {name: DartsCNNSpace(name) for name in SETS}
    assert "none" in spaces["darts"].primitives["normal"]
    assert all("none" not in spaces[s].primitives[t] for s in ("darts-7", "nasp-12")
               for t in ("normal", "reduce"))
    assert spaces["nasp-12"].primitives["normal"] != spaces["nasp-12"].primitives["reduce"]


@pytest.mark.parametrize("primitives", SETS)
def test_derive_follows_the_reference_rule_on_random_matrices(primitives):
    space = DartsCNNSpace(primitives)
    rng = random.Random(0)
    for trial in range(300):
        scale = (1e-3, 0.3, 1.0, 10.0)[trial % 4]
        A = {t: [[rng.gauss(0.0, scale) for _ in space.primitives[t]] for _ in range(NUM_EDGES)]
             for t in ("normal", "reduce")}
        check(space, A)


@pytest.mark.parametrize("primitives", SETS)
def test_derive_follows_the_reference_rule_on_exact_ties(primitives):
    """Equal rows (edges tie) and equal entries within a row (ops tie). Each matrix copies its
    rows from a few base rows whose entries are drawn from two or three values of their own, so
    tied quantities are bit-identical in any correct computation."""
    space = DartsCNNSpace(primitives)
    rng = random.Random(1)
    shapes = {t: len(space.primitives[t]) for t in ("normal", "reduce")}
    for _ in range(300):
        A = {}
        for t, K in shapes.items():
            bases = []
            for _ in range(rng.randint(1, 3)):
                values = [rng.gauss(0.0, 1.0) for _ in range(rng.randint(1, 3))]
                bases.append([rng.choice(values) for _ in range(K)])
            A[t] = [list(rng.choice(bases)) for _ in range(NUM_EDGES)]
        check(space, A)
    # everything equal: every node keeps its first two inputs, with the first usable op
    for value in (0.0, 0.5):
        check(space, {t: [[value] * K for _ in range(NUM_EDGES)] for t, K in shapes.items()})


def test_none_is_never_chosen_even_where_it_is_largest():
    space = DartsCNNSpace("darts")
    assert space.primitives["normal"][0] == space.primitives["reduce"][0] == "none"
    rng = random.Random(2)
    for trial in range(100):
        A = {}
        for t in ("normal", "reduce"):
            rows = [[rng.gauss(0.0, 1.0) for _ in space.primitives[t]] for _ in range(NUM_EDGES)]
            for e, row in enumerate(rows):
                if trial % 2 == 0 or e % 3:  # `none` largest on every row, or on most rows
                    row[0] = max(row) + rng.uniform(0.5, 5.0)
            A[t] = rows
        genotype = space.derive({t: torch.tensor(r, dtype=torch.float64) for t, r in A.items()})
        assert all(op != "none" for op, _ in genotype.normal + genotype.reduce)
        check(space, A)
