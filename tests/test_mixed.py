"""Execution modes of the mixed edge: sparse equals reference, and its gradients are exact."""

import copy

import pytest
import torch
import torch.nn.functional as F

from nasp.core.mixed import CellPlan, MixedOp
from nasp.core.prox import selection_indices


def arch_point(space, seed=3):
    g = torch.Generator().manual_seed(seed)
    A = {t: torch.rand(s, generator=g, dtype=torch.float64) for t, s in space.arch_shapes().items()}
    A_bar = space.project(A)
    selection = {t: tuple(selection_indices(a).tolist()) for t, a in A_bar.items()}
    return A_bar, selection


def grads_in_mode(net, mode, A_bar, selection, batch):
    net.zero_grad(set_to_none=True)
    leaves = {t: a.clone().requires_grad_(True) for t, a in A_bar.items()}
    plans = {t: CellPlan(mode, leaves[t], selection[t]) for t in leaves}
    logits = net(batch[0], plans)
    F.cross_entropy(logits, batch[1]).backward()
    weight_grads = {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
                    for n, p in net.named_parameters()}
    return logits.detach(), {t: a.grad for t, a in leaves.items()}, weight_grads


def test_sparse_equals_reference(tiny):
    space, net, _, val = tiny
    A_bar, selection = arch_point(space)
    ref_logits, ref_arch, ref_w = grads_in_mode(net, "reference", A_bar, selection, val)
    sp_logits, sp_arch, sp_w = grads_in_mode(net, "sparse", A_bar, selection, val)
    torch.testing.assert_close(sp_logits, ref_logits, rtol=0, atol=1e-12)
    for t in ref_arch:
        torch.testing.assert_close(sp_arch[t], ref_arch[t], rtol=1e-10, atol=1e-12)
    assert any(g.abs().sum() > 0 for g in ref_w.values())
    for name in ref_w:
        torch.testing.assert_close(sp_w[name], ref_w[name], rtol=1e-10, atol=1e-12)


def test_sparse_logits_equal_discrete(tiny):
    space, net, _, val = tiny
    A_bar, selection = arch_point(space)
    discrete = {t: CellPlan("discrete", selection=s) for t, s in selection.items()}
    sparse = {t: CellPlan("sparse", A_bar[t], selection[t]) for t in selection}
    torch.testing.assert_close(net(val[0], sparse), net(val[0], discrete), rtol=0, atol=1e-12)


def test_arch_gradient_is_inner_product_with_op_outputs(tiny):
    """dL/dA_bar[e, k] = <dL/d(edge output), o_k(x)>, for every edge and op, dropped or not.

    The edge inputs and output gradients come from a reference-mode pass (per-edge hooks); the
    inner products are computed here, op by op, and compared with the sparse mode's gradient.
    """
    space, net, _, val = tiny
    A_bar, selection = arch_point(space, seed=7)
    records = []  # (cell type, edge index, mixed op, input, output)

    def hook(cell_type, e):
        def fn(module, args, output):
            output.retain_grad()
            records.append((cell_type, e, module, args[0].detach(), output))
        return fn

    handles = []
    for cell in net.cells:
        t = "reduce" if cell.reduction else "normal"
        for e, edge in enumerate(cell.edges):
            handles.append(edge.register_forward_hook(hook(t, e)))
    plans = {t: CellPlan("reference", A_bar[t], selection[t]) for t in A_bar}
    F.cross_entropy(net(val[0], plans), val[1]).backward()
    for h in handles:
        h.remove()

    expected = {t: torch.zeros_like(a) for t, a in A_bar.items()}
    with torch.no_grad():
        for t, e, edge, x, y in records:
            for k, op in enumerate(edge.ops):
                expected[t][e, k] += (y.grad * op(x)).sum()
    dropped = [e for e, k in enumerate(selection["normal"]) if k < 0]
    assert dropped and expected["normal"][dropped].abs().sum() > 0

    _, sparse_grads, _ = grads_in_mode(net, "sparse", A_bar, selection, val)
    for t in expected:
        torch.testing.assert_close(sparse_grads[t], expected[t], rtol=1e-9, atol=1e-12)


def test_single_edge_sparse_mode():
    torch.manual_seed(0)
    edge = MixedOp(4, 1, ["skip_connect", "avg_pool_3x3", "sep_conv_3x3"]).double()
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64, requires_grad=True)
    w = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64, requires_grad=True)
    out = edge(x, "sparse", w, 2)
    g = torch.randn_like(out)
    out.backward(g)
    torch.testing.assert_close(out, edge.ops[2](x))
    with torch.no_grad():
        expected = torch.stack([(g * op(x)).sum() for op in edge.ops])
    torch.testing.assert_close(w.grad, expected)
    x_grad = torch.autograd.grad(edge.ops[2](x), x, g)[0]
    torch.testing.assert_close(x.grad, x_grad)


def test_dense_mode_is_weighted_sum():
    torch.manual_seed(0)
    edge = MixedOp(4, 1, ["skip_connect", "avg_pool_3x3", "sep_conv_3x3"]).double()
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    w = torch.softmax(torch.randn(3, dtype=torch.float64), 0)
    expected = sum(w[k] * edge.ops[k](x) for k in range(3))
    torch.testing.assert_close(edge(x, "dense", w), expected)
    torch.testing.assert_close(edge(x, "discrete", index=2), edge.ops[2](x))


def test_cell_plan_validates():
    with pytest.raises(ValueError, match="unknown execution mode"):
        CellPlan("fast")
    with pytest.raises(ValueError, match="needs edge weights"):
        CellPlan("sparse", selection=(0,))
    with pytest.raises(ValueError, match="selection"):
        CellPlan("discrete")


def test_channels_last_gives_the_same_gradients(tiny):
    space, net, _, val = tiny
    A_bar, selection = arch_point(space)
    logits, arch, weights = grads_in_mode(net, "sparse", A_bar, selection, val)
    net_cl = copy.deepcopy(net).to(memory_format=torch.channels_last)
    val_cl = (val[0].contiguous(memory_format=torch.channels_last), val[1])
    logits_cl, arch_cl, weights_cl = grads_in_mode(net_cl, "sparse", A_bar, selection, val_cl)
    torch.testing.assert_close(logits_cl, logits, rtol=1e-10, atol=1e-12)
    for t in arch:
        torch.testing.assert_close(arch_cl[t], arch[t], rtol=1e-9, atol=1e-12)
    for name in weights:
        torch.testing.assert_close(weights_cl[name], weights[name], rtol=1e-9, atol=1e-12)


def test_bf16_autocast_step_runs_and_stays_close(tiny):
    from conftest import tiny_config

    from nasp.strategies import NASP

    space, net, train, val = tiny
    net = net.float()
    batch = (val[0].float(), val[1])
    grads, losses = {}, {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)  # the same initial noise on A for both
        strategy = NASP(space, net, tiny_config(precision=precision, init_noise=0.1))
        grads[precision], losses[precision] = strategy.arch_gradient(batch)
    # the fp32 loss is the cross-entropy of the network at the projection, computed here
    plans = {t: CellPlan("discrete", selection=s) for t, s in strategy.selection.items()}
    with torch.no_grad():
        expected = F.cross_entropy(net(batch[0], plans), batch[1])
    torch.testing.assert_close(losses["fp32"], expected, rtol=1e-5, atol=1e-6)
    assert abs(losses["bf16"] - expected) < 0.05 * expected  # bf16: 8 mantissa bits
    for t in grads["fp32"]:
        cos = F.cosine_similarity(grads["bf16"][t].flatten(), grads["fp32"][t].flatten(), dim=0)
        assert cos > 0.9, (t, cos.item())
