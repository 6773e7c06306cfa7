"""Exported models run without nasp and give PyTorch's outputs."""

import json
import os
import subprocess
import sys

import pytest
import torch

from nasp.apps.cli import main
from nasp.apps.export import export_checkpoint, export_model
from nasp.config import train_preset
from nasp.engine.checkpoints import BEST, load_trained
from nasp.engine.train import train
from nasp.errors import ExportError, MissingExtraError

pytestmark = pytest.mark.usefixtures("one_thread")

# Loads exported models with nasp made unimportable, and runs them on saved inputs.
RUN_WITHOUT_NASP = """
import sys
sys.modules["nasp"] = None  # from here on, any import of nasp fails
import torch
x = torch.load(sys.argv[1])
outputs = {}
for fmt, path in zip(sys.argv[3::2], sys.argv[4::2]):
    model = torch.jit.load(path) if fmt == "torchscript" else torch.export.load(path).module()
    with torch.no_grad():
        outputs[fmt] = model(x)
torch.save(outputs, sys.argv[2])
"""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """best.pt of a tiny trained DARTS_V2 network with an auxiliary head (8x8 digits)."""
    out = tmp_path_factory.mktemp("export") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train("DARTS_V2", train_preset("tiny", device="cpu", subset=64, channels=4, epochs=1,
                                       out=str(out)),
              progress=False, plots=False, log=lambda line: None)
    finally:
        torch.set_num_threads(threads)
    return out / BEST


def reference(checkpoint, x):
    net = load_trained(checkpoint).net
    assert net.auxiliary_head is not None
    with torch.no_grad():
        return net(x)


def test_torchscript_and_pt2_run_without_nasp(checkpoint, tmp_path):
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))  # not the export batch
    torch.save(x, tmp_path / "x.pt")
    files = []
    for fmt in ("torchscript", "pt2"):
        files += [fmt, str(export_checkpoint(checkpoint, fmt, tmp_path / f"model.{fmt}"))]
    subprocess.run([sys.executable, "-c", RUN_WITHOUT_NASP, str(tmp_path / "x.pt"),
                    str(tmp_path / "y.pt"), *files], check=True, capture_output=True,
                   cwd=tmp_path, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    outputs = torch.load(tmp_path / "y.pt")
    expected = reference(checkpoint, x)
    for fmt in ("torchscript", "pt2"):
        assert outputs[fmt].shape == (3, 10)
        assert (outputs[fmt] - expected).abs().max().item() <= 1e-4, fmt


def test_onnx_matches_pytorch_in_onnxruntime(checkpoint, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in the export extra")
    pytest.importorskip("onnxscript", reason="the ONNX exporter needs the export extra")
    path = export_checkpoint(checkpoint, "onnx", tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    for batch in (1, 5):
        x = torch.randn(batch, 1, 8, 8, generator=torch.Generator().manual_seed(batch))
        (logits,) = session.run(None, {"images": x.numpy()})
        assert abs(torch.from_numpy(logits) - reference(checkpoint, x)).max().item() <= 1e-4


def test_metadata_and_default_file_name(checkpoint):
    path = export_checkpoint(checkpoint, "torchscript")
    assert path == checkpoint.with_name("model.ts") and path.is_file()
    info = json.loads(path.with_name("model.ts.json").read_text())
    assert info["input_shape"] == ["N", 1, 8, 8]
    assert info["classes"] == [str(d) for d in range(10)] and len(info["mean"]) == 1
    assert info["genotype"]["normal"][0] == ["sep_conv_3x3", 0]


def test_export_errors(checkpoint, tmp_path, monkeypatch, capsys):
    with pytest.raises(ExportError, match="unknown export format"):
        export_checkpoint(checkpoint, "keras")
    with pytest.raises(ExportError, match="does not exist"):
        export_model(load_trained(checkpoint).net, tmp_path / "no" / "m.ts", "torchscript",
                     (1, 8, 8))
    with pytest.raises(SystemExit) as exit_info:  # argparse: invalid choice, exit code 2
        main(["export", str(checkpoint), "--format", "keras"])
    assert exit_info.value.code == 2 and "invalid choice" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "missing.pt"), "--format", "onnx"]) == 2
    assert "does not exist" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(MissingExtraError, match=r"torch-nasp\[export\]"):
        export_checkpoint(checkpoint, "onnx", tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_cli_export(checkpoint, tmp_path, capsys):
    out = tmp_path / "cli.pt2"
    assert main(["export", str(checkpoint), "--format", "pt2", "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        logits = torch.export.load(out).module()(x)
    assert logits.shape == (2, 10)
    assert (logits - reference(checkpoint, x)).abs().max().item() <= 1e-4
