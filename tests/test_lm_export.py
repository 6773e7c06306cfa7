"""An exported language model (``nasp export`` of a ``nasp train CELL --dataset ptb``
checkpoint) gives the PyTorch model's log-probabilities and next state in eval mode: the tiny
DARTS_V2 recurrent cell at 8 units, trained one epoch on a written corpus."""

import json

import pytest
import torch
from lm_fakes import write_corpus

from nasp.apps.cli import main
from nasp.apps.export import export_checkpoint
from nasp.config import train_preset
from nasp.engine.checkpoints import BEST
from nasp.engine.train import train
from nasp.engine.train_text import load_language_model
from nasp.errors import ExportError
from nasp.tasks import TokenWindow

pytestmark = pytest.mark.usefixtures("one_thread")

UNITS, T, B = 8, 5, 3


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lm-export")
    write_corpus(folder / "penn", lines=(60, 12, 8))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train("DARTS_V2_RNN", train_preset("ptb-cpu", data_dir=str(folder), channels=UNITS,
                                           batch_size=4, bptt=6, epochs=1, device="cpu",
                                           out=str(folder / "run")),
              progress=False, plots=False, log=lambda line: None)
    finally:
        torch.set_num_threads(threads)
    return folder / "run" / BEST


@pytest.fixture(scope="module")
def expected(checkpoint):
    """Tokens (T, B), a start state, and the PyTorch model's log-probabilities and state."""
    net = load_language_model(checkpoint).net
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, net.vocab, (T, B), generator=g)
    hidden = torch.randn(B, UNITS, generator=g)
    window = TokenWindow(tokens, hidden)
    with torch.no_grad():
        log_probs = net(window)
    return tokens, hidden, log_probs, window.final


def _same(a, b):
    torch.testing.assert_close(torch.as_tensor(a), b, rtol=1e-5, atol=1e-5)


def test_torchscript_takes_windows_of_any_length(checkpoint, expected, tmp_path):
    tokens, hidden, log_probs, final = expected
    path = export_checkpoint(checkpoint, "torchscript", tmp_path / "lm.ts")
    model = torch.jit.load(path)
    with torch.no_grad():
        out, new = model(tokens, hidden)
        _same(out, log_probs)
        _same(new, final)
        first, h = model(tokens[:2], hidden)  # two windows in turn: the state carried
        rest, h = model(tokens[2:], h)
    _same(torch.cat([first, rest]), log_probs)
    _same(h, final)
    info = json.loads(path.with_name("lm.ts.json").read_text())
    assert info["steps"] == "any" and info["units"] == UNITS and info["vocab"] > 10


def _steps(run, tokens, hidden):
    """The one-step model run over every step, the state passed on."""
    outs = []
    for t in range(tokens.shape[0]):
        out, hidden = run(tokens[t:t + 1], hidden)
        outs.append(torch.as_tensor(out))
    return torch.cat(outs), torch.as_tensor(hidden)


def test_pt2_is_one_step_and_equals_pytorch(checkpoint, expected, tmp_path):
    tokens, hidden, log_probs, final = expected
    path = export_checkpoint(checkpoint, "pt2", tmp_path / "lm.pt2")
    model = torch.export.load(path).module()
    with torch.no_grad():
        out, new = _steps(model, tokens, hidden)
    _same(out, log_probs)
    _same(new, final)
    assert json.loads(path.with_name("lm.pt2.json").read_text())["steps"] == 1


def test_onnx_in_onnxruntime_equals_pytorch(checkpoint, expected, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    tokens, hidden, log_probs, final = expected
    path = export_checkpoint(checkpoint, "onnx", tmp_path / "lm.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(x, h):
        return session.run(None, {"tokens": x.numpy(), "hidden": torch.as_tensor(h).numpy()})

    out, new = _steps(run, tokens, hidden)
    _same(out, log_probs)
    _same(new, final)


def test_cli_default_file_and_a_failing_exporter_is_a_clear_error(checkpoint, monkeypatch,
                                                                   capsys):
    assert main(["export", str(checkpoint), "--format", "torchscript"]) == 0
    assert (checkpoint.parent / "model.ts").is_file()
    assert "model.ts.json" in capsys.readouterr().out

    def fail(*args, **kwargs):
        raise RuntimeError("data-dependent control flow")

    monkeypatch.setattr(torch.export, "export", fail)
    with pytest.raises(ExportError, match="cannot be exported to pt2.*data-dependent.*--format"):
        export_checkpoint(checkpoint, "pt2", checkpoint.parent / "x.pt2")
    assert not (checkpoint.parent / "x.pt2").exists()
