"""The NASP strategy: discrete weight step, child equivalence, update rule, golden values."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config, tiny_supernet

from nasp.config import SearchConfig, preset
from nasp.core.mixed import CellPlan
from nasp.errors import ConfigError
from nasp.spaces import DartsCNNSpace
from nasp.strategies import NASP, build_strategy


def unselected_ops(net, selection):
    for cell in net.cells:
        sel = selection["reduce" if cell.reduction else "normal"]
        for e, edge in enumerate(cell.edges):
            for k, op in enumerate(edge.ops):
                if k != sel[e]:
                    yield op


def test_weight_step_runs_and_trains_only_selected_ops(tiny):
    """With unselected_weights = frozen, ops the child does not run get no gradient and stay."""
    space, net, train, val = tiny
    strategy = NASP(space, net, tiny_config(init_noise=0.1, unselected_weights="frozen"))
    for _ in range(3):
        calls = []
        before = {n: p.detach().clone() for n, p in net.named_parameters()}
        strategy.arch_step(val)
        idle = list(unselected_ops(net, strategy.selection))
        handles = [op.register_forward_pre_hook(lambda *a, c=calls: c.append(1)) for op in idle]
        strategy.weight_step(train, strategy.child_plans())
        for h in handles:
            h.remove()
        assert calls == []  # unselected ops never ran
        idle_params = {id(p) for op in idle for p in op.parameters()}
        assert idle_params
        changed = 0
        for name, p in net.named_parameters():
            if id(p) in idle_params:
                assert p.grad is None
                assert torch.equal(p, before[name]), name
            else:
                changed += not torch.equal(p, before[name])
        assert changed > 0


def test_supernet_at_A_bar_equals_extracted_child(tiny):
    space, net, train, val = tiny
    strategy = NASP(space, net, tiny_config(init_noise=0.2))
    for _ in range(2):
        strategy.step(train, val)
    genotype = space.genotype_of(strategy.selection)
    child = space.extract_child(net, genotype)
    assert isinstance(child, torch.nn.Module)
    plans = strategy.child_plans()
    for mode in (True, False):  # batch statistics, then running statistics
        net.train(mode)
        child.train(mode)
        torch.testing.assert_close(child(val[0]), net(val[0], plans), rtol=0, atol=1e-12)
    # the child holds copies: training it leaves the supernet alone
    before = [p.clone() for p in net.parameters()]
    child.train()
    F.cross_entropy(child(train[0]), train[1]).backward()
    with torch.no_grad():
        for p in child.parameters():
            if p.grad is not None:
                p -= p.grad
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


#: (edge, op) entries checked by finite differences: selected, unselected and dropped-edge ones
ENTRIES = [(0, 0), (0, 3), (1, 6), (2, 2), (4, 1), (7, 5), (11, 4), (13, 0)]


def finite_difference_grad(net, x, y, A_bar, h=1e-6):
    """dL/dA_bar at the ENTRIES by central differences of the dense mixture sum_k A_bar_k o_k(x)
    (float64): independent of the sparse/reference modes and of autograd through A_bar."""
    out = {}
    for t in A_bar:
        g = torch.zeros_like(A_bar[t])
        for e, k in ENTRIES:
            losses = []
            for sign in (1, -1):
                W = {u: a.clone() for u, a in A_bar.items()}
                W[t][e, k] += sign * h
                plans = {u: CellPlan("dense", W[u]) for u in W}
                with torch.no_grad():
                    losses.append(F.cross_entropy(net(x, plans), y).item())
            g[e, k] = (losses[0] - losses[1]) / (2 * h)
        out[t] = g
    return out


def hand_adam(A, grads, lr, betas, wd, eps=1e-8):
    """torch.optim.Adam's update (coupled weight decay), written out for a list of gradients."""
    m = torch.zeros_like(A)
    v = torch.zeros_like(A)
    for step, g in enumerate(grads, start=1):
        g = g + wd * A
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        m_hat = m / (1 - betas[0] ** step)
        v_hat = v / (1 - betas[1] ** step)
        A = A - lr * m_hat / (v_hat.sqrt() + eps)
    return A


@pytest.mark.parametrize("mode", ["sparse", "reference"])
def test_arch_gradient_equals_finite_differences(tiny, mode):
    """dL/dA_bar of the architecture step, every (edge, op), against central differences."""
    space, net, _, val = tiny
    strategy = NASP(space, net, tiny_config(init_noise=0.1, arch_mode=mode))
    grads, _ = strategy.arch_gradient(val)
    expected = finite_difference_grad(net, *val, strategy.A_bar)
    e, k = zip(*ENTRIES)
    for t in grads:
        torch.testing.assert_close(grads[t][e, k], expected[t][e, k], rtol=1e-5, atol=1e-8)
        assert grads[t][e, k].abs().min() > 1e-4  # not a vacuous comparison
        kept = strategy.A_bar[t].amax(1)[list(e)]
        assert (kept == 0).any() and (kept == 1).any()  # dropped and kept edges both checked


def test_two_steps_follow_algorithm_with_independent_gradient(tiny):
    """Two iterations: A = clamp(Adam(A, dL/dA_bar)) with the gradient by finite differences and
    Adam written out; two steps make the update depend on the gradients' magnitudes, not only
    their signs. A_bar is re-projected from the new A."""
    space, net, train, val = tiny
    config = tiny_config(init_noise=0.1, a_lr=0.01)
    strategy = NASP(space, net, config)
    A0 = {t: a.detach().clone() for t, a in strategy.arch.items()}
    grads = []
    for batch in (val, train):  # the second step's architecture batch differs
        grads.append(finite_difference_grad(net, *batch, strategy.A_bar))
        strategy.step(train, batch)
    e, k = zip(*ENTRIES)
    for t in A0:
        expected = hand_adam(A0[t], [g[t] for g in grads], 0.01, config.a_betas,
                             config.a_weight_decay).clamp(0, 1)
        torch.testing.assert_close(strategy.arch[t].detach()[e, k], expected[e, k], rtol=1e-6,
                                   atol=1e-9)
    assert all(torch.equal(strategy.A_bar[t], space.project(strategy.arch)[t]) for t in A0)


def test_clamp_binds_at_both_ends(tiny):
    """prox_C2 in the architecture step: entries the Adam step pushes past 1 or below 0 end
    exactly at the bound (the gradient is given, so the test controls where A goes)."""
    space, net, _, val = tiny
    strategy = NASP(space, net, tiny_config(a_lr=0.5, a_weight_decay=0.0))
    g = torch.Generator().manual_seed(3)
    grads = {t: torch.randn(a.shape, generator=g, dtype=a.dtype) for t, a in strategy.arch.items()}
    with torch.no_grad():  # one Adam step moves every entry by 0.5 against its gradient
        for t, a in strategy.arch.items():
            a.copy_(torch.where(grads[t] < 0, 0.9, 0.1))
    strategy.arch_gradient = lambda batch: (grads, torch.zeros(()))
    strategy.arch_step(val)
    for t, a in strategy.arch.items():
        up = grads[t] < 0
        assert torch.equal(a[up], torch.ones_like(a[up]))
        assert torch.equal(a[~up], torch.zeros_like(a[~up]))
    assert all(torch.equal(strategy.A_bar[t], space.project(strategy.arch)[t])
               for t in strategy.arch)


def test_weight_step_uses_the_reprojected_A_bar(tiny):
    """The architecture step changes the projection; the weight step of the same iteration must
    train the new child: its weights equal a hand-made SGD step through the new selection."""
    space, net, train, val = tiny
    config = tiny_config(a_lr=0.05, a_weight_decay=0.0, unselected_weights="frozen")
    strategy = NASP(space, net, config)
    grads, _ = strategy.arch_gradient(val)
    with torch.no_grad():  # near-ties that this step's gradient will flip
        for t, a in strategy.arch.items():
            a.fill_(0.5)
            a[torch.arange(a.shape[0]), grads[t].argmax(1)] = 0.52  # the op the step lowers
    strategy.project()
    old = dict(strategy.selection)
    start = copy.deepcopy(net)
    strategy.step(train, val)
    new = strategy.selection
    assert new != old
    # the hand-made step: SGD (momentum buffer = the first gradient), weight decay, clipping
    plans = {t: CellPlan("discrete", selection=s) for t, s in new.items()}
    loss = F.cross_entropy(start(train[0], plans), train[1])
    params = [p for p in start.parameters()]
    g = torch.autograd.grad(loss, params, allow_unused=True)
    norm = torch.sqrt(sum((x * x).sum() for x in g if x is not None))
    scale = min(1.0, config.grad_clip / (norm.item() + 1e-6))
    lr = strategy.w_optim.param_groups[0]["initial_lr"]
    lr = config.w_lr_min + (lr - config.w_lr_min) * (1 + math.cos(math.pi / config.epochs)) / 2
    for p0, x, p in zip(params, g, net.parameters()):
        expected = p0 if x is None else p0 - lr * (scale * x + config.w_weight_decay * p0)
        torch.testing.assert_close(p.detach(), expected.detach(), rtol=1e-9, atol=1e-12)


def test_unselected_weights_decay_as_the_reference_code(tiny):
    """unselected_weights = decay: ops the child does not run get a zero gradient, so SGD
    shrinks them by weight decay and their momentum keeps moving them; frozen: untouched."""
    space, net, train, val = tiny
    start = copy.deepcopy(net.state_dict())
    moved = {}
    for mode in ("decay", "frozen"):
        net.load_state_dict(start)
        config = tiny_config(unselected_weights=mode, w_momentum=0.9)
        strategy = NASP(space, net, config)
        idle = [p for op in unselected_ops(net, strategy.selection) for p in op.parameters()]
        p0 = [p.detach().clone() for p in idle]
        lrs = []
        for _ in range(2):  # two weight steps on the same (initial) child
            lrs.append(strategy.lr)
            strategy.weight_step(train, strategy.child_plans())
        moved[mode] = ([p.detach().clone() for p in idle], p0, lrs, config)
    idle, p0, lrs, config = moved["decay"]
    wd, mu = config.w_weight_decay, config.w_momentum
    for p, w0 in zip(idle, p0):
        # step 1: buf = wd w0, w1 = w0 - lr wd w0; step 2: buf = mu buf + wd w1, w2 = w1 - lr buf
        buf = wd * w0
        w1 = w0 - lrs[0] * buf
        buf = mu * buf + wd * w1
        torch.testing.assert_close(p.detach(), w1 - lrs[1] * buf, rtol=1e-12, atol=1e-15)
    idle, p0, _, _ = moved["frozen"]
    assert all(torch.equal(p, w0) for p, w0 in zip(idle, p0))


def test_lr_schedule_matches_the_reference_codes():
    """Epoch e of E trains with the cosine at e + 1 (the reference loops step the scheduler
    before each epoch): the last epoch runs at w_lr_min."""
    space = DartsCNNSpace("darts-7")
    net = space.build_supernet(3, 5, layers=3, channels=4)
    config = tiny_config(epochs=4, w_lr=0.1, w_lr_min=0.002)
    strategy = NASP(space, net, config)
    seen = []
    for _ in range(config.epochs):
        seen.append(strategy.lr)
        strategy.end_epoch()
    expected = [0.002 + 0.098 * (1 + math.cos(math.pi * (e + 1) / 4)) / 2 for e in range(4)]
    assert seen == pytest.approx(expected, rel=1e-12)
    assert seen[-1] == pytest.approx(0.002)


def test_darts_set_with_none_is_not_dead():
    """On the DARTS set (none first), NASP's first architecture gradient is not zero and no
    kept edge starts at none (before the shared tie rule, every edge chose none and every
    gradient was exactly 0)."""
    space, net, _, val = tiny_supernet("darts")
    strategy = NASP(space, net, tiny_config(primitives="darts"))
    grads, _ = strategy.arch_gradient(val)
    assert all(g.abs().max() > 1e-4 for g in grads.values())
    none = space.primitives["normal"].index("none")
    assert all(none not in sel for sel in strategy.selection.values())


def test_returned_cell_is_the_trained_child_by_default(tiny):
    """On the DARTS space the softmax derivation ranks edges by max softmax(A), the projection by
    max A: a row of equal entries beats a lone larger entry in the projection only. The default
    returns the trained child (projection); nasp_cell = softmax the released code's cell; both
    are in cells()."""
    space, net, _, _ = tiny
    strategies = {cell: NASP(space, net, tiny_config(nasp_cell=cell))
                  for cell in ("projection", "softmax")}
    for strategy in strategies.values():
        with torch.no_grad():
            for a in strategy.arch.values():
                a.fill_(0.0)
                a[0:2, 0] = 0.5  # node 0 keeps both of its edges in either rule
                a[2] = 0.6       # node 1: edge 2 is all 0.6 (softmax max 1/7),
                a[3, 1] = 0.55   # edge 3 a lone 0.55 (softmax max e^.55 / (e^.55 + 6)),
                a[4, 2] = 0.58   # edge 4 a lone 0.58
                a[5:, 3] = 0.1
        strategy.project()
    projection = strategies["projection"].genotype()
    softmax = strategies["softmax"].genotype()
    assert [j for _, j in projection.normal[2:4]] == [0, 2]  # raw maxima 0.6, 0.58
    assert sorted(j for _, j in softmax.normal[2:4]) == [1, 2]  # softmax maxima of 3 and 4
    assert projection == space.genotype_of(strategies["projection"].selection)
    assert softmax == space.derive(strategies["softmax"].arch)
    cells = strategies["projection"].cells()
    assert cells == {"projection": projection, "softmax": softmax}


def test_plain_proximal_gradient_keeps_A_discrete(tiny):
    """arch_update = plain (Algorithm 1): after every step A is its own projection."""
    space, net, train, val = tiny
    strategy = NASP(space, net, tiny_config(arch_update="plain", init_noise=0.1))
    for _ in range(2):
        strategy.step(train, val)
        for t, a in strategy.arch.items():
            assert torch.equal(a.detach(), strategy.A_bar[t])
            assert torch.equal(space.project(strategy.arch)[t], a.detach())


def test_warmup_trains_sampled_paths_and_leaves_A(tiny):
    """During warm-up epochs A does not move; each step trains the path the generator draws."""
    space, net, train, val = tiny
    strategy = NASP(space, net, tiny_config(warmup_epochs=1, epochs=2,
                                            unselected_weights="frozen"))
    strategy.begin_epoch(0)
    A0 = {t: a.detach().clone() for t, a in strategy.arch.items()}
    draw = torch.Generator().set_state(strategy.path_generator.get_state())
    for _ in range(2):
        path = space.random_selection(draw)
        ran = []
        hooks = [op.register_forward_pre_hook(
                     lambda *a, c=ran, k=(cell.reduction, e, k): c.append(k))
                 for cell in net.cells for e, edge in enumerate(cell.edges)
                 for k, op in enumerate(edge.ops)]
        m = strategy.step(train, val)
        for h in hooks:
            h.remove()
        expected = {(cell.reduction, e, k) for cell in net.cells
                    for e, k in enumerate(path["reduce" if cell.reduction else "normal"])
                    if k >= 0}
        assert set(ran) == expected
        assert m["arch_loss"].item() == 0
    assert all(torch.equal(strategy.arch[t], A0[t]) for t in A0)
    strategy.end_epoch()
    strategy.begin_epoch(1)
    strategy.step(train, val)
    assert any(not torch.equal(strategy.arch[t], A0[t]) for t in A0)


def test_size_penalty_pushes_towards_cheap_ops(tiny):
    space, net, _, val = tiny
    plain = NASP(space, net, tiny_config())
    penalised = NASP(space, net, tiny_config(size_penalty=10.0))
    g0, _ = plain.arch_gradient(val)
    g1, _ = penalised.arch_gradient(val)
    b = space.op_costs("normal").double()
    expected = 2 * 10.0 * b * plain.A_bar["normal"]
    torch.testing.assert_close(g1["normal"] - g0["normal"], expected)
    torch.testing.assert_close(g1["reduce"], g0["reduce"])
    assert b.sum().item() == pytest.approx(1.0) and b[0] == 0  # max_pool_3x3 has no parameters


def test_reference_and_sparse_strategies_agree(tiny):
    space, net, train, val = tiny
    state = {k: v.clone() for k, v in net.state_dict().items()}
    results = []
    for mode in ("reference", "sparse"):
        net.load_state_dict(state)
        torch.manual_seed(5)
        strategy = NASP(space, net, tiny_config(arch_mode=mode, init_noise=0.1))
        for _ in range(3):
            strategy.step(train, val)
        results.append(({t: a.detach().clone() for t, a in strategy.arch.items()},
                         [p.detach().clone() for p in net.parameters()]))
    (A_ref, w_ref), (A_sp, w_sp) = results
    for t in A_ref:
        torch.testing.assert_close(A_sp[t], A_ref[t], rtol=1e-9, atol=1e-12)
    for a, b in zip(w_ref, w_sp):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-12)


# Recorded from this implementation (torch 2.13, CPU, float64). The signs of A - 0.5 after one
# step are the signs of -dL/dA_bar (+ weight decay): a change in the forward or backward pass, the
# projection or the optimiser settings shows up here.
GOLDEN_ARCH_LOSS = 1.7983883481510716
GOLDEN_TRAIN_LOSS = 1.6153355795499549
GOLDEN_SIGNS = {
    "normal": ["---+--+", "-+--+++", "--++---", "+++-+++", "-----+-", "+------", "+++--+-",
               "+++++-+", "+++--+-", "++-----", "--+-++-", "--++---", "--++--+", "--++++-"],
    "reduce": ["-+--+-+", "--+++++", "-+++-+-", "----++-", "-------", "+--++++", "+-+-+-+",
               "-+++--+", "-++--++", "+--++-+", "--++++-", "+-+++--", "+-+++++", "+-+++-+"],
}


def test_golden_one_step(tiny):
    space, net, train, val = tiny
    strategy = NASP(space, net, tiny_config())
    m = strategy.step(train, val)
    signs = {t: ["".join("+" if v > 0.5 else "-" for v in row) for row in a.tolist()]
             for t, a in strategy.arch.items()}
    assert m["arch_loss"].item() == pytest.approx(GOLDEN_ARCH_LOSS, rel=1e-9)
    assert m["train_loss"].item() == pytest.approx(GOLDEN_TRAIN_LOSS, rel=1e-9)
    assert signs == GOLDEN_SIGNS, signs
    moved = (strategy.arch["normal"] - 0.5).abs()
    torch.testing.assert_close(moved, torch.full_like(moved, 3e-4), rtol=1e-3, atol=0)


def test_centered_gradient_is_the_plain_one_minus_each_edges_mean(tiny):
    space, net, _, val = tiny
    torch.manual_seed(3)
    plain, _ = NASP(space, net, tiny_config(init_noise=0.1)).arch_gradient(val)
    torch.manual_seed(3)  # the same initial A
    centered, _ = NASP(space, net, tiny_config(init_noise=0.1, arch_grad="centered")
                       ).arch_gradient(val)
    for t in plain:
        expected = plain[t] - plain[t].sum(1, keepdim=True) / plain[t].shape[1]
        torch.testing.assert_close(centered[t], expected, rtol=1e-12, atol=1e-15)
        assert centered[t].sum(1).abs().max() < 1e-12


def test_path_mix_one_trains_a_drawn_path_not_the_child(tiny):
    """path_mix = 1: after the architecture step, the weight step runs the path the path
    generator draws (after its mixing draw), not the child at A_bar."""
    space, net, train, val = tiny
    strategy = NASP(space, net, tiny_config(path_mix=1.0, init_noise=0.1))
    draw = torch.Generator().set_state(strategy.path_generator.get_state())
    torch.rand((), generator=draw)  # the mixing draw
    path = space.random_selection(draw)
    assert path != strategy.selection
    seen = []
    original = strategy.weight_step
    strategy.weight_step = lambda batch, plans: (seen.append(plans), original(batch, plans))[1]
    strategy.step(train, val)
    assert {t: p.selection for t, p in seen[0].items()} == path


def test_darts_warms_up_through_sampled_paths_too(tiny):
    """DARTS honours warmup_epochs: no architecture step, alpha unchanged, the weights train."""
    space, net, train, val = tiny
    strategy = build_strategy("darts", space, net, tiny_config(epochs=2, warmup_epochs=1))
    alpha = {t: a.detach().clone() for t, a in strategy.arch.items()}
    before = [p.detach().clone() for p in net.parameters()]
    strategy.begin_epoch(0)
    assert strategy.step(train, val)["arch_loss"].item() == 0
    assert all(torch.equal(strategy.arch[t], alpha[t]) for t in alpha)
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))
    strategy.end_epoch()
    strategy.begin_epoch(1)
    strategy.step(train, val)
    assert any(not torch.equal(strategy.arch[t], alpha[t]) for t in alpha)


def test_warmup_and_path_mix_are_checked():
    with pytest.raises(ConfigError, match="--warmup-epochs"):
        SearchConfig(epochs=4, warmup_epochs=4)
    with pytest.raises(ConfigError, match="--path-mix"):
        SearchConfig(path_mix=1.5)


def test_faithful_preset_is_the_papers_algorithm():
    for space in ("darts", "nb201"):
        c = preset("faithful", space=space)
        assert (c.strategy, c.warmup_epochs, c.nasp_cell, c.unselected_weights, c.arch_update,
                c.init_noise, c.path_mix, c.arch_grad) == (
            "nasp", 0, "softmax", "decay", "lazy", 0.0, 0.0, "plain")
        assert (c.a_lr, c.a_betas, c.a_weight_decay, c.w_lr, c.w_lr_min, c.w_momentum,
                c.w_weight_decay, c.grad_clip, c.batch_size, c.epochs) == (
            3e-4, (0.5, 0.999), 1e-3, 0.025, 0.001, 0.9, 3e-4, 5.0, 64, 50)
    assert (preset("faithful", space="nb201").layers, preset("faithful").layers) == (5, 8)


def test_cosine_architecture_lr_after_the_warmup(tiny):
    """a_lr_schedule = cosine: a_lr through the warm-up and the first searching epoch, then
    (1 + cos(pi (e - W) / (E - W))) / 2 of it; constant: a_lr throughout."""
    space, net, _, _ = tiny
    config = tiny_config(epochs=6, warmup_epochs=2, a_lr=0.01, a_lr_schedule="cosine")
    strategy = NASP(space, net, config)
    seen = []
    for e in range(6):
        strategy.begin_epoch(e)
        seen.append(strategy.a_optim.param_groups[0]["lr"])
    expected = [0.01, 0.01] + [0.01 * (1 + math.cos(math.pi * k / 4)) / 2 for k in range(4)]
    assert seen == pytest.approx(expected, rel=1e-12)
    constant = NASP(space, net, config.replace(a_lr_schedule="constant"))
    constant.begin_epoch(5)
    assert constant.a_optim.param_groups[0]["lr"] == 0.01
