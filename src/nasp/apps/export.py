"""Export a trained network to a file that runs without this library.

Formats (``FORMATS``):

- ``onnx``: ONNX through PyTorch's ``torch.export``-based exporter (``torch.onnx.export(...,
  dynamo=True)``, the default since PyTorch 2.9; needs the ``export`` extra: onnx and
  onnxscript). Runs in onnxruntime or any ONNX runtime.
- ``torchscript``: ``torch.jit.trace`` of the network, loaded with ``torch.jit.load`` (needs only
  PyTorch; PyTorch marks TorchScript deprecated, so prefer ``onnx`` or ``pt2`` for new uses).
- ``pt2``: a ``torch.export`` program, loaded with ``torch.export.load(path).module()``.

The exported model is the network in eval mode (no auxiliary head, no drop-path): float32
images ``(N, C, H, W)`` of the trained size, normalised with the training set's mean and std,
in; logits ``(N, classes)`` out. The batch size ``N`` is free. Next to the model,
``FILE.json`` records the input shape, the mean/std and the class names.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nasp.errors import ExportError
from nasp.runtime.atomic import atomic_write_bytes, atomic_write_text
from nasp.runtime.extras import require

__all__ = ["FORMATS", "SUFFIXES", "ExportError", "export_checkpoint", "export_model"]

FORMATS = ("onnx", "torchscript", "pt2")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".ts", "pt2": ".pt2"}


def export_model(net: nn.Module, path: str | os.PathLike, fmt: str,
                 input_shape: Sequence[int], metadata: dict[str, Any] | None = None) -> Path:
    """Write ``net`` (put in eval mode) to ``path`` in format ``fmt`` for images of
    ``input_shape`` (C, H, W), plus ``path.json`` holding ``input_shape`` and ``metadata``.

    The file is written to a temporary name and renamed, so a failed export leaves nothing.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    path = Path(path)
    if not path.parent.is_dir():
        raise ExportError(f"cannot write {path}: folder {path.parent} does not exist")
    net = net.eval()
    first = next(net.parameters())
    example = torch.randn(2, *input_shape, dtype=torch.float32, device=first.device)
    data = {"onnx": _onnx, "torchscript": _torchscript, "pt2": _pt2}[fmt](net, example)
    atomic_write_bytes(path, data)
    info = {"format": fmt, "input_shape": ["N", *input_shape], "input": "float32 images "
            "normalised per channel: (pixel / 255 - mean) / std", **(metadata or {})}
    atomic_write_text(path.with_name(path.name + ".json"), json.dumps(info, indent=2) + "\n")
    return path


def export_checkpoint(checkpoint: str | os.PathLike, fmt: str,
                      out: str | os.PathLike | None = None) -> Path:
    """Export the network of a ``nasp train`` checkpoint (see :func:`export_model`).

    ``out`` defaults to ``model`` plus the format's suffix (``.onnx``, ``.ts``, ``.pt2``) next to
    the checkpoint. The metadata file also records the data set, its classes and the genotype.
    """
    from nasp.engine.checkpoints import load_trained, read_checkpoint
    from nasp.engine.train_text import is_text_checkpoint

    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if is_text_checkpoint(read_checkpoint(checkpoint)[1]):
        return _export_language_model(checkpoint, fmt, out)
    trained = load_trained(checkpoint)
    out = Path(out) if out is not None else trained.path.with_name("model" + SUFFIXES[fmt])
    data = trained.data
    metadata = {"dataset": data.get("dataset"), "classes": data.get("classes"),
                "mean": data.get("mean"), "std": data.get("std"),
                "genotype": trained.genotype.to_dict(), "layers": trained.config.layers,
                "channels": trained.config.channels, "network": trained.config.network,
                "checkpoint": str(trained.path), "epoch": trained.epoch}
    return export_model(trained.net, out, fmt, trained.shape.input_shape, metadata)


def _export_language_model(checkpoint: str | os.PathLike, fmt: str,
                           out: str | os.PathLike | None) -> Path:
    """:func:`~nasp.apps.export_text.export_language_model` of a language model's checkpoint."""
    from nasp.apps.export_text import export_language_model
    from nasp.engine.train_text import load_language_model

    trained = load_language_model(checkpoint)
    out = Path(out) if out is not None else trained.path.with_name("model" + SUFFIXES[fmt])
    config = trained.config
    metadata = {"dataset": config.dataset, "vocab": trained.checkpoint["data"]["vocab"],
                "units": config.channels, "genotype": trained.genotype.to_dict(),
                "checkpoint": str(trained.path), "epoch": trained.checkpoint["epoch"]}
    return export_language_model(trained.net, config.channels, out, fmt, metadata, _quiet)


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' progress lines and their deprecation/tracer warnings."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export",
                                                    "torch._dynamo", "onnxscript")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _batch_dim():
    return {0: torch.export.Dim("batch", min=1, max=65536)}


def _onnx(net: nn.Module, example: torch.Tensor) -> bytes:
    require("onnx", "export", "ONNX export")
    require("onnxscript", "export", "ONNX export")
    with _quiet():
        program = torch.onnx.export(net, (example,), dynamo=True, input_names=["images"],
                                    output_names=["logits"], dynamic_shapes=(_batch_dim(),),
                                    verbose=False)
    return program.model_proto.SerializeToString()


def _torchscript(net: nn.Module, example: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    with _quiet(), torch.no_grad():
        torch.jit.save(torch.jit.trace(net, (example,)), buffer)
    return buffer.getvalue()


def _pt2(net: nn.Module, example: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    with _quiet():
        program = torch.export.export(net, (example,), dynamic_shapes=(_batch_dim(),))
        torch.export.save(program, buffer)
    return buffer.getvalue()
