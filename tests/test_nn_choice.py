"""Search spaces written in plain PyTorch: nasp.nn.Choice / InputChoice, their space, nasp.fix
and nasp.search on a user's model (docs/user-spaces.md)."""

from __future__ import annotations

import importlib
import json
import runpy
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import nasp
from nasp.core.mixed import CellPlan
from nasp.errors import ConfigError, GenotypeError
from nasp.nn import Choice, InputChoice, SumInputs, fix
from nasp.runtime.runs import RunDir
from nasp.spaces import SearchSpace, model_space
from nasp.strategies.base import discrete_plans

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


class Tiny(nn.Module):
    """Two Choice labels (one used at two places) and an InputChoice of 2 of 3 inputs."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(6, 8)
        self.a = Choice([nn.Linear(8, 8), nn.Sequential(nn.Linear(8, 8), nn.Tanh()),
                         nn.Identity()], label="a")
        self.act = Choice([nn.ReLU(), nn.Tanh()], label="act")
        self.act2 = Choice([nn.ReLU(), nn.Tanh()], label="act")
        self.skip = InputChoice(3, keep=2, label="skip")
        self.out = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.inp(x))
        g = self.a(h)
        return self.out(self.skip([g, h, self.act2(g)]))


def _data(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long()


def _model(seed=0):
    torch.manual_seed(seed)
    return Tiny().double()


def test_the_space_has_one_row_block_per_label_and_fits_the_protocol():
    space = model_space(_model(), _data()[0][:2].double())
    assert isinstance(space, SearchSpace)
    assert space.arch_shapes() == {"a": (1, 3), "act": (1, 2), "skip": (3, 2)}
    A = {"a": torch.tensor([[0.2, 0.9, 0.9]]), "act": torch.tensor([[0.7, 0.1]]),
         "skip": torch.tensor([[0.3, 0.9], [0.8, 0.0], [0.3, 0.0]])}
    P = space.project(A)
    # the option with the largest entry (ties: the lower index); exactly keep=2 inputs, by the
    # first column (ties: the lower index), never the none column
    assert P["a"].tolist() == [[0, 1, 0]] and P["act"].tolist() == [[1, 0]]
    assert P["skip"].tolist() == [[1, 0], [1, 0], [0, 0]]
    arch = space.genotype_of({"a": (1,), "act": (0,), "skip": (0, 0, -1)})
    assert arch.plain() == {"a": 1, "act": 0, "skip": [0, 1]}
    assert space.selection_of(arch) == {"a": (1,), "act": (0,), "skip": (0, 0, -1)}
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        sel = space.random_selection(g)
        assert sum(k >= 0 for k in sel["skip"]) == 2
        assert space.selection_of(space.genotype_of(sel)) == sel


def _plans(space, A, mode):
    A_bar = space.project(A)
    sel = {t: tuple(torch.where(p.amax(1) > 0, p.argmax(1), -1).tolist())
           for t, p in A_bar.items()}
    leaves = {t: p.clone().requires_grad_(True) for t, p in A_bar.items()}
    return leaves, {t: CellPlan(mode, leaves[t], sel[t]) for t in leaves}


def test_sparse_architecture_gradient_equals_the_reference_mode_for_every_label_and_op():
    model = _model()
    space = model_space(model)
    net = space.build_supernet()
    x, y = _data()
    x = x.double()
    A = {t: torch.rand(shape, generator=torch.Generator().manual_seed(i), dtype=torch.float64)
         for i, (t, shape) in enumerate(space.arch_shapes().items())}
    grads = {}
    for mode in ("reference", "sparse"):
        leaves, plans = _plans(space, A, mode)
        net.zero_grad()
        loss = nn.functional.cross_entropy(net(x, plans), y)
        loss.backward()
        grads[mode] = ({t: a.grad.clone() for t, a in leaves.items()},
                       [torch.zeros_like(p) if p.grad is None else p.grad.clone()
                        for p in net.parameters()], loss)
    (ga_ref, gw_ref, l_ref), (ga_sp, gw_sp, l_sp) = grads["reference"], grads["sparse"]
    torch.testing.assert_close(l_sp, l_ref)
    for t in ga_ref:  # every (label, op), the unselected ones and the dropped inputs included
        assert ga_ref[t].abs().sum() > 0
        torch.testing.assert_close(ga_sp[t], ga_ref[t], rtol=1e-9, atol=1e-12)
    assert len(gw_sp) == len(gw_ref)
    for a, b in zip(gw_sp, gw_ref):
        torch.testing.assert_close(a, b)


def test_dense_mode_mixes_every_option_with_its_weight():
    """Independent check of the dense (DARTS) forward: the weighted sum written out by hand."""
    model = _model()
    space = model_space(model)
    net = space.build_supernet()
    x = _data()[0].double()
    W = {t: torch.softmax(torch.randn(s, dtype=torch.float64), -1)
         for t, s in space.arch_shapes().items()}
    out = net(x, {t: CellPlan("dense", w) for t, w in W.items()})

    def act(v):
        return W["act"][0, 0] * torch.relu(v) + W["act"][0, 1] * torch.tanh(v)

    h = act(model.inp(x))
    ops = model.a.ops
    g = W["a"][0, 0] * ops[0](h) + W["a"][0, 1] * ops[1](h) + W["a"][0, 2] * h
    s = W["skip"][0, 0] * g + W["skip"][1, 0] * h + W["skip"][2, 0] * act(g)
    torch.testing.assert_close(out, model.out(s))


@pytest.mark.parametrize("arch", [{"a": 0, "act": 1, "skip": [0, 2]},
                                  {"a": 2, "act": 0, "skip": [1, 2]}])
def test_fix_gives_the_supernet_output_at_the_discrete_architecture(arch):
    model = _model()
    space = model_space(model)
    net = space.build_supernet()
    x = _data()[0].double()
    expected = net(x, discrete_plans(space.selection_of(arch)))
    fixed = fix(model, arch)
    torch.testing.assert_close(fixed(x), expected)
    # and the supernet at A_bar in reference mode: every option weighted by A_bar, one-hot
    A_bar = {t: torch.zeros(shape, dtype=torch.float64)
             for t, shape in space.arch_shapes().items()}
    for t, sel in space.selection_of(arch).items():
        for e, k in enumerate(sel):
            if k >= 0:
                A_bar[t][e, k] = 1.0
    reference = net(x, {t: CellPlan("reference", w) for t, w in A_bar.items()})
    torch.testing.assert_close(fixed(x), reference)
    # with the same weights: training the copy leaves the model as it was
    assert fixed.inp.weight is not model.inp.weight
    torch.testing.assert_close(fixed.inp.weight, model.inp.weight)
    # the model outside a search (no plan): the first option, the first keep inputs
    assert all(m.plan is None for m in model.modules() if isinstance(m, (Choice, InputChoice)))


def test_fix_leaves_no_nasp_code_but_a_sum_and_scripts_and_traces():
    model = _model()
    fixed = fix(model, {"a": 1, "act": 1, "skip": [0, 1]})
    kinds = {type(m) for m in fixed.modules()}
    assert not {Choice, InputChoice} & kinds
    assert all(not k.__module__.startswith("nasp") for k in kinds - {SumInputs})
    assert isinstance(fixed.a, nn.Sequential) and isinstance(fixed.act, nn.Tanh)
    x = _data()[0].double()
    torch.testing.assert_close(torch.jit.script(fixed)(x), fixed(x))
    torch.testing.assert_close(torch.jit.trace(fixed, x)(x), fixed(x))


def test_fix_result_exports_to_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in the export extra")
    fixed = fix(Tiny(), {"a": 1, "act": 1, "skip": [0, 2]}).eval()
    x = torch.randn(5, 6)
    torch.onnx.export(fixed, (x,), str(tmp_path / "m.onnx"), input_names=["x"],
                      dynamic_axes={"x": {0: "n"}}, dynamo=False)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(y), fixed(x).detach(), rtol=1e-5, atol=1e-5)


def test_fix_replaces_a_choice_inside_a_chosen_option():
    inner = Choice([nn.ReLU(), nn.Tanh()], label="inner")
    model = nn.Sequential(Choice([nn.Sequential(nn.Linear(2, 2), inner), nn.Identity()],
                                 label="outer"))
    fixed = fix(model, {"outer": 0, "inner": 1})
    assert isinstance(fixed[0][1], nn.Tanh)
    assert not any(isinstance(m, Choice) for m in fixed.modules())


def test_bad_uses_are_errors_naming_the_label():
    with pytest.raises(ConfigError, match="'empty'.*no options"):
        Choice([], label="empty")

    class Mismatch(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = Choice([nn.Linear(4, 4), nn.Linear(4, 5)], label="width")

        def forward(self, x):
            return self.c(x)

    with pytest.raises(ConfigError, match="'width'.*different shapes"):
        model_space(Mismatch(), torch.randn(2, 4))

    class Reused(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = Choice([nn.ReLU(), nn.Tanh()], label="act")
            self.d = Choice([nn.ReLU(), nn.Tanh(), nn.Identity()], label="act")

    with pytest.raises(ConfigError, match="label 'act'.*2 options.*3 options"):
        model_space(Reused())
    with pytest.raises(ConfigError, match="'skip'.*keep"):
        InputChoice(2, keep=3, label="skip")
    with pytest.raises(ConfigError, match="no nasp.nn.Choice"):
        model_space(nn.Linear(2, 2))
    with pytest.raises(GenotypeError, match="'skip'"):
        fix(_model(), {"a": 0, "act": 0, "skip": [0]})
    with pytest.raises(GenotypeError, match="'a'"):
        fix(_model(), {"a": 3, "act": 0, "skip": [0, 1]})


@pytest.mark.parametrize("strategy", ["nasp", "darts", "darts2", "random", "random-ws"])
def test_every_strategy_searches_a_user_model_end_to_end(strategy, tmp_path):
    model = Tiny()
    x, y = _data(48)
    train = torch.utils.data.TensorDataset(x[:24], y[:24])
    val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[24:], y[24:]),
                                      batch_size=8)
    options = {"random_samples": 1} if strategy == "random" else {}
    arch = nasp.search(model, train, val, strategy, epochs=1, batch_size=12,
                       run_dir=tmp_path / strategy, plots=False, quiet=True, progress=False,
                       device="cpu", **options)
    assert set(arch) == {"a", "act", "skip"} and len(arch["skip"]) == 2
    assert json.loads((tmp_path / strategy / "arch.json").read_text()) == arch
    records = [json.loads(line) for line in
               (tmp_path / strategy / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 1 and records[0]["genotype"]["arch"] == arch
    fixed = nasp.fix(model, arch)
    assert fixed(x).shape == (48, 3)


def test_a_user_loss_and_resume_continue_exactly(tmp_path, monkeypatch):
    """A regression loss of the user's; a search stopped after a checkpoint in its first epoch
    and resumed ends as the one that ran through (architecture parameters and weights)."""
    x, _ = _data(32)
    y = x[:, :3].sum(1, keepdim=True).expand(-1, 3).contiguous()
    kwargs = dict(epochs=2, batch_size=8, loss_fn=nn.functional.mse_loss, plots=False,
                  quiet=True, progress=False, device="cpu", init_noise=0.1, checkpoint_every=1)
    torch.manual_seed(1)
    whole = Tiny()
    torch.manual_seed(1)
    parts = Tiny()
    arch = nasp.search(whole, (x[:16], y[:16]), (x[16:], y[16:]), run_dir=tmp_path / "w",
                       **kwargs)
    save = RunDir.save_torch

    def save_then_stop(self, file, obj):
        path = save(self, file, obj)
        if file == "checkpoint.pt" and (obj["epoch"], obj["step"]) == (0, 1):
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(RunDir, "save_torch", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        nasp.search(parts, (x[:16], y[:16]), (x[16:], y[16:]), run_dir=tmp_path / "p",
                    **kwargs)
    monkeypatch.undo()
    again = nasp.search(parts, (x[:16], y[:16]), (x[16:], y[16:]), run_dir=tmp_path / "p",
                        resume=True, **kwargs)
    assert again == arch
    resumed = torch.load(tmp_path / "p" / "arch.pt")
    for t, a in torch.load(tmp_path / "w" / "arch.pt").items():
        torch.testing.assert_close(resumed[t], a, rtol=0, atol=0)
    for p, q in zip(whole.parameters(), parts.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    record = json.loads((tmp_path / "w" / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["child_val_acc"] is None and record["child_val_loss"] > 0


@pytest.mark.parametrize("script", ["residual_skip.py", "cnn_digits.py"])
def test_the_examples_run(script, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [script, "--epochs", "1", "--out", str(tmp_path)])
    # not drawn here (seconds): tests/test_user_model_runs.py draws a model run's pictures
    monkeypatch.setattr(importlib.import_module("nasp.engine.search"), "write_pictures",
                        lambda run, log: None)
    runpy.run_path(str(EXAMPLES / script), run_name="__main__")
    out = capsys.readouterr().out
    assert "architecture: {" in out and (tmp_path / "arch.json").is_file()
