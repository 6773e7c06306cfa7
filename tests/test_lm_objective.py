"""The TAR ("slowness") penalty of a language model regularises the weight steps only, as in
DARTS's rnn/architect.py: NASP's and DARTS's architecture gradients (first and second order) are
those of the plain negative log-likelihood, checked by autograd on the tiny DARTS recurrent
supernet (float64, no dropout), and the weight step's gradient is that of nll + penalty."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from nasp.config import SearchConfig
from nasp.core.mixed import CellPlan
from nasp.spaces import RecurrentDropouts, build_space
from nasp.strategies import build_strategy
from nasp.tasks import LanguageModelTask, TokenWindow

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB, H, T, B = 16, 6, 4, 4
#: large, so that a gradient with the penalty differs visibly from one without
SLOWNESS = 2.0


def _setup(strategy: str, **options):
    torch.manual_seed(0)
    space = build_space("darts-rnn")
    net = space.build_supernet(1, VOCAB, 1, H).double()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    net.dropouts = RecurrentDropouts(0.0, 0.0, 0.0, 0.0, 0.0)  # deterministic forward passes
    net.slowness = SLOWNESS
    config = SearchConfig(space="darts-rnn", dataset="ptb", strategy=strategy, layers=1,
                          channels=H, w_lr=1.0, w_lr_min=1.0, w_momentum=0.0,
                          w_weight_decay=0.0, grad_clip=1e9, epochs=2, **options)
    s = build_strategy(strategy, space, net, config, task=LanguageModelTask())
    with torch.no_grad():  # an architecture far from uniform
        for a in s.arch.values():
            a.copy_(a + torch.rand(a.shape, generator=g, dtype=a.dtype))
    if strategy == "nasp":
        s.project()
    return s, net


def _batch(seed: int):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, VOCAB, (T, B), generator=g)
    state = torch.randn(B, H, generator=g, dtype=torch.float64)
    return TokenWindow(tokens, state), torch.randint(0, VOCAB, (T * B,), generator=g)


def _losses(net, batch, plans, params=None):
    """(nll, nll + penalty) of one training-mode forward pass."""
    x, y = batch
    x = TokenWindow(x.tokens, x.state)
    out = net(x, plans) if params is None else functional_call(net, params, (x, plans))
    log_probs, penalty = out
    nll = F.nll_loss(log_probs, y)
    return nll, nll + penalty


def _softmax_plans(arch):
    return {t: CellPlan("dense", torch.softmax(a, -1)) for t, a in arch.items()}


def _close(a, b):
    return all(torch.allclose(x, y, rtol=1e-6, atol=1e-9) for x, y in zip(a, b))


@pytest.mark.parametrize("which", [0, 1], ids=["nll", "with_penalty"])
def test_darts_first_order_architecture_gradient_is_the_plain_nll(which):
    s, net = _setup("darts")
    train, val = _batch(2), _batch(3)
    grads, _ = s.arch_gradient(train, val)
    alphas = list(s.arch.values())
    expected = torch.autograd.grad(_losses(net, val, _softmax_plans(s.arch))[which], alphas)
    assert _close(list(grads.values()), expected) == (which == 0)


@pytest.mark.parametrize("which", [0, 1], ids=["nll", "with_penalty"])
def test_darts_second_order_architecture_gradient_is_the_plain_nll(which):
    """The exact unrolled gradient (autograd through ``w' = w - xi grad_w L_train``) against
    DARTS2's finite-difference one, both losses the plain nll."""
    s, net = _setup("darts2", hessian_radius=1e-5)
    train, val = _batch(2), _batch(3)
    grads, _ = s.arch_gradient(train, val)
    alphas = list(s.arch.values())
    params = dict(net.named_parameters())
    plans = _softmax_plans(s.arch)
    w_grads = torch.autograd.grad(_losses(net, train, plans)[which], list(params.values()),
                                  create_graph=True)
    unrolled = {n: w - s.lr * g for (n, w), g in zip(params.items(), w_grads)}
    expected = torch.autograd.grad(_losses(net, val, plans, unrolled)[which], alphas)
    assert all(torch.allclose(x, y, rtol=1e-4, atol=1e-7)
               for x, y in zip(grads.values(), expected)) == (which == 0)


@pytest.mark.parametrize("which", [0, 1], ids=["nll", "with_penalty"])
def test_nasp_architecture_gradient_is_the_plain_nll(which):
    s, net = _setup("nasp")
    val = _batch(3)
    grads, _ = s.arch_gradient(val)
    A_bar = {t: a.detach().requires_grad_(True) for t, a in s.A_bar.items()}
    plans = {t: CellPlan(s.options.arch_mode, A_bar[t], s.selection[t]) for t in A_bar}
    expected = torch.autograd.grad(_losses(net, val, plans)[which], list(A_bar.values()))
    assert _close(list(grads.values()), expected) == (which == 0)


def test_the_weight_step_minimises_nll_plus_penalty_and_reports_the_nll():
    """SGD with lr 1, no momentum, decay or clipping: ``w_before - w_after`` is the gradient."""
    s, net = _setup("nasp")
    batch = _batch(2)
    plans = s.child_plans()
    before = [p.detach().clone() for p in net.parameters()]
    nll, total = _losses(net, batch, plans)
    grads_total = torch.autograd.grad(total, list(net.parameters()), allow_unused=True,
                                      retain_graph=True)
    grads_nll = torch.autograd.grad(nll, list(net.parameters()), allow_unused=True)
    loss, _ = s.weight_step(batch, plans)
    step = [b - p.detach() for b, p in zip(before, net.parameters())]
    zero = [torch.zeros_like(b) if g is None else g for b, g in zip(before, grads_total)]
    assert _close(step, zero)
    assert not _close(step, [torch.zeros_like(b) if g is None else g
                             for b, g in zip(before, grads_nll)])
    assert float(loss) == pytest.approx(float(nll.detach()), rel=1e-12)
