"""DARTS baselines: the second-order gradient against the exact unrolled gradient."""

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config
from torch.func import functional_call

from nasp.core.mixed import CellPlan
from nasp.spaces import DartsCNNSpace
from nasp.strategies import DARTS, DARTS2


def exact_unrolled_gradient(strategy, train, val):
    """d/d alpha of L_val(w - xi (mu buf + grad_w L_train(w, alpha) + wd w), alpha), by double
    backward through the virtual step."""
    net, cfg = strategy.net, strategy.config
    alphas = list(strategy.arch.values())
    names, params = zip(*net.named_parameters())
    loss_train = F.cross_entropy(net(train[0], strategy.dense_plans()), train[1])
    g = torch.autograd.grad(loss_train, params, create_graph=True)
    xi = strategy.lr
    unrolled = {}
    for name, w, gw in zip(names, params, g):
        buf = strategy.w_optim.state[w]["momentum_buffer"]
        unrolled[name] = w - xi * (cfg.w_momentum * buf + gw + cfg.w_weight_decay * w)
    logits = functional_call(net, unrolled, (val[0], strategy.dense_plans()))
    return torch.autograd.grad(F.cross_entropy(logits, val[1]), alphas)


def test_second_order_matches_exact_unrolled_gradient(tiny):
    """With a small finite-difference radius the approximation converges to the exact gradient.

    (ReLU and max-pooling kinks make the loss of a 6-image batch far from smooth at the default
    radius 0.01, so the comparison uses 1e-5; the default radius is checked separately.)"""
    space, net, train, val = tiny
    strategy = DARTS2(space, net, tiny_config(strategy="darts2", w_lr=0.1, hessian_radius=1e-5))
    # a few ordinary steps so that the momentum buffers are not zero
    for _ in range(2):
        strategy.weight_step(train, strategy.dense_plans(detach=True))
    ours, _ = strategy.arch_gradient(train, val)
    exact = exact_unrolled_gradient(strategy, train, val)
    first, _ = DARTS.arch_gradient(strategy, train, val)  # first-order gradient, same state
    for t, e in zip(strategy.arch, exact):
        err = (ours[t] - e).norm() / e.norm()
        gap = (first[t] - e).norm() / e.norm()
        assert err < 1e-6, (t, err.item())
        assert gap > 20 * err, (t, gap.item(), err.item())  # the unrolled term matters here


def test_hessian_vector_product_probes_at_radius_and_restores_weights(tiny):
    space, net, train, val = tiny
    strategy = DARTS2(space, net, tiny_config(strategy="darts2"))
    before = [p.detach().clone() for p in net.parameters()]
    v = [torch.randn_like(p) for p in net.parameters()]
    distances = []
    loss = strategy.loss

    def probing_loss(*args, **kwargs):
        moved = torch.cat([(p - b).flatten() for p, b in zip(net.parameters(), before)])
        distances.append(moved.norm().item())
        return loss(*args, **kwargs)

    strategy.loss = probing_loss
    strategy.hessian_vector_product(train, v)
    assert distances == pytest.approx([0.01, 0.01], rel=1e-6)  # w +- (0.01 / ||v||) v
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_darts_step_updates_alpha_and_weights(tiny):
    space, net, train, val = tiny
    for cls in (DARTS, DARTS2):
        strategy = cls(space, net, tiny_config(strategy=cls.name))
        alpha0 = {t: a.detach().clone() for t, a in strategy.arch.items()}
        w0 = [p.detach().clone() for p in net.parameters()]
        m = strategy.step(train, val)
        assert torch.isfinite(m["train_loss"]) and torch.isfinite(m["arch_loss"])
        assert all(not torch.equal(alpha0[t], a) for t, a in strategy.arch.items())
        assert any(not torch.equal(a, b) for a, b in zip(w0, net.parameters()))
        assert alpha0["normal"].abs().max() < 0.01  # initialised at 1e-3 N(0, 1)


def test_darts_derivation_excludes_none():
    from nasp.spaces import DartsCNNSpace

    space = DartsCNNSpace("darts")
    A = {t: torch.zeros(s) for t, s in space.arch_shapes().items()}
    for a in A.values():
        a[:, 0] = 5.0  # `none` dominates every edge
        a[:, 4] = 1.0  # sep_conv_3x3 second
    genotype = space.derive(A)
    assert {op for op, _ in genotype.normal} == {"sep_conv_3x3"}


def test_second_order_gradient_is_computed_in_fp32_under_bf16_autocast():
    """The finite-difference Hessian-vector product moves the weights by 0.01 / ||v|| along v,
    far below bfloat16's resolution, so DARTS2 runs its virtual step, the unrolled validation loss
    and the Hessian-vector product without autocast: with precision bf16 the architecture
    gradient is the fp32 one, bit for bit."""
    torch.manual_seed(0)
    space = DartsCNNSpace("darts-7")
    net = space.build_supernet(3, 5, layers=3, channels=4)  # float32: autocast casts it
    g = torch.Generator().manual_seed(1)
    train = (torch.randn(6, 3, 8, 8, generator=g), torch.randint(0, 5, (6,), generator=g))
    val = (torch.randn(6, 3, 8, 8, generator=g), torch.randint(0, 5, (6,), generator=g))
    grads = {}
    for precision in ("bf16", "fp32"):
        torch.manual_seed(2)  # the same alpha
        strategy = DARTS2(space, copy.deepcopy(net),
                          tiny_config(strategy="darts2", precision=precision))
        assert strategy.amp_dtype == (torch.bfloat16 if precision == "bf16" else None)
        grads[precision], _ = strategy.arch_gradient(train, val)
    for t in grads["fp32"]:
        a, b = grads["bf16"][t].flatten(), grads["fp32"][t].flatten()
        cosine = F.cosine_similarity(a, b, dim=0).item()
        assert torch.equal(a, b), (t, cosine)


def test_first_order_gradient_matches_finite_differences_of_the_validation_loss(tiny):
    """DARTS's architecture gradient against central finite differences of L_val(w, alpha),
    the network run at softmax(alpha + h d): along random directions d of all of alpha, and
    entry by entry on a random subset of entries (all entries would take minutes).

    The step h is small (1e-7, in float64) because the ReLU and max-pool kinks of a 6-image batch
    lie close together: at h = 1e-5 the difference quotient is still off by 1e-3 relative."""
    space, net, train, val = tiny
    strategy = DARTS(space, net, tiny_config(strategy="darts"))
    grads, _ = strategy.arch_gradient(train, val)
    alpha = {t: a.detach().clone() for t, a in strategy.arch.items()}

    def val_loss(shift):
        plans = {t: CellPlan("dense", torch.softmax(alpha[t] + shift[t], dim=-1)) for t in alpha}
        with torch.no_grad():
            return F.cross_entropy(net(val[0], plans), val[1]).item()

    def derivative(direction, h=1e-7):
        up = val_loss({t: h * d for t, d in direction.items()})
        down = val_loss({t: -h * d for t, d in direction.items()})
        return (up - down) / (2 * h)

    g = torch.Generator().manual_seed(5)
    scale = max(grads[t].abs().max().item() for t in grads)
    for _ in range(2):
        d = {t: torch.randn(a.shape, generator=g, dtype=a.dtype) for t, a in alpha.items()}
        predicted = sum((grads[t] * d[t]).sum().item() for t in grads)
        assert derivative(d) == pytest.approx(predicted, rel=1e-6, abs=1e-8 * scale)
    for t, a in alpha.items():
        for flat in torch.randperm(a.numel(), generator=g)[:8].tolist():
            d = {s: torch.zeros_like(b) for s, b in alpha.items()}
            d[t].view(-1)[flat] = 1.0
            assert derivative(d) == pytest.approx(grads[t].view(-1)[flat].item(),
                                                  rel=1e-5, abs=1e-7 * scale), (t, flat)


def manual_sgd_step(net, batch, weights, buffers, config, lr):
    """The weights after SGD with momentum, coupled weight decay and gradient-norm clipping on
    ``batch`` through ``net`` run densely at the edge weights ``weights``; ``buffers`` are the
    momentum buffers before the step."""
    params = list(net.parameters())
    plans = {t: CellPlan("dense", w) for t, w in weights.items()}
    grads = torch.autograd.grad(F.cross_entropy(net(batch[0], plans), batch[1]), params)
    total = torch.sqrt(sum((g ** 2).sum() for g in grads))
    clip = min(1.0, config.grad_clip / (total.item() + 1e-6))
    assert clip < 1.0  # the clipping is exercised
    out = []
    for w, g, buf in zip(params, grads, buffers):
        d = clip * g + config.w_weight_decay * w
        out.append((w - lr * (config.w_momentum * buf + d)).detach())
    return out


@pytest.mark.parametrize("cls", [DARTS, DARTS2])
def test_weight_step_runs_at_the_updated_alpha(tiny, cls):
    """After the Adam step on alpha, the SGD step on the weights uses softmax of the NEW alpha:
    the weights equal a hand-written SGD step there, and differ measurably from one at the old
    alpha. Second of two steps, so that the momentum buffers are not zero."""
    space, net, train, val = tiny
    config = tiny_config(strategy=cls.name, a_lr=0.05, grad_clip=0.5)
    strategy = cls(space, net, config)
    strategy.step(train, val)
    before = copy.deepcopy(net)
    buffers = [strategy.w_optim.state[p]["momentum_buffer"].clone() for p in net.parameters()]
    old = {t: torch.softmax(a.detach(), dim=-1) for t, a in strategy.arch.items()}
    lr = strategy.lr
    strategy.step(train, val)
    new = {t: torch.softmax(a.detach(), dim=-1) for t, a in strategy.arch.items()}

    def gap(expected):
        return max((p - e).abs().max().item() for p, e in zip(net.parameters(), expected))

    at_new = gap(manual_sgd_step(copy.deepcopy(before), train, new, buffers, config, lr))
    at_old = gap(manual_sgd_step(copy.deepcopy(before), train, old, buffers, config, lr))
    assert at_new < 1e-13, at_new
    assert at_old > 1e-5, at_old
