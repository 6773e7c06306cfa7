"""Export a trained language model (a ``nasp train CELL --dataset ptb`` checkpoint).

The network's input, a :class:`~nasp.tasks.TokenWindow`, cannot cross an export boundary, so the
exported model takes the recurrent state as a plain tensor and returns the next one
(:class:`StatefulLanguageModel`): ``(tokens, hidden) -> (log_probs, new_hidden)`` with
``tokens`` int64 ``(T, B)`` (time first, as the corpus is read), ``hidden`` float32
``(B, units)`` (zeros at the start of a text), ``log_probs`` float32 ``(T * B, vocab)``
(time-major: row ``t * B + b``) and ``new_hidden`` the state after the last token, to pass with
the next window. The network runs in eval mode (no dropout, no TAR penalty).

The cell's time loop is Python, which the exporters unroll, so:

- ``torchscript``: the one-step network is traced and a scripted loop runs it over the window's
  ``T`` steps: any ``T`` and any batch ``B``;
- ``onnx`` and ``pt2``: the one-step network, ``T = 1`` (call it once per time step, passing the
  state on), any ``B``.

``FILE.json`` records the formats' inputs and outputs, the steps per call (``"steps"``: ``"any"``
or 1), the vocabulary size, the hidden units, the genotype and the checkpoint.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager as ContextManager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nasp.errors import ExportError
from nasp.runtime.atomic import atomic_write_bytes, atomic_write_text
from nasp.tasks import TokenWindow

__all__ = ["StatefulLanguageModel", "export_language_model"]


class StatefulLanguageModel(nn.Module):
    """A language model with its state as tensors: ``forward(tokens, hidden)`` returns
    ``(log_probs, new_hidden)`` (module docstring)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, tokens: torch.Tensor, hidden: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        window = TokenWindow(tokens, hidden)
        out = self.net(window)
        log_probs = out[0] if isinstance(out, tuple) else out
        if not isinstance(window.final, torch.Tensor):
            raise ExportError("the language model's state is not one tensor, so it cannot be "
                              "exported as (tokens, hidden) -> (log_probs, new_hidden)")
        return log_probs, window.final


def _examples(net: nn.Module, units: int, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    first = next(net.parameters())
    tokens = torch.zeros(1, batch, dtype=torch.long, device=first.device)
    return tokens, torch.zeros(batch, units, dtype=torch.float32, device=first.device)


def _torchscript(model: StatefulLanguageModel, example, quiet) -> bytes:
    from nasp.apps.export_loop import script_windows

    buffer = io.BytesIO()
    with quiet(), torch.no_grad():
        step = torch.jit.trace(model, example, check_trace=False)
        torch.jit.save(script_windows(step), buffer)
    return buffer.getvalue()


def _dynamic_batch():
    batch = torch.export.Dim("batch", min=1, max=65536)
    return ({1: batch}, {0: batch})


def _pt2(model: StatefulLanguageModel, example, quiet) -> bytes:
    buffer = io.BytesIO()
    with quiet():
        program = torch.export.export(model, example, dynamic_shapes=_dynamic_batch())
        torch.export.save(program, buffer)
    return buffer.getvalue()


def _onnx(model: StatefulLanguageModel, example, quiet) -> bytes:
    from nasp.runtime.extras import require

    require("onnx", "export", "ONNX export")
    require("onnxscript", "export", "ONNX export")
    with quiet(), warnings.catch_warnings():
        # tokens and hidden share their batch axis: the exporter says so, harmlessly
        warnings.filterwarnings("ignore", message=".*axis name")
        program = torch.onnx.export(model, example, dynamo=True,
                                    input_names=["tokens", "hidden"],
                                    output_names=["log_probs", "new_hidden"],
                                    dynamic_shapes=_dynamic_batch(), verbose=False)
    return program.model_proto.SerializeToString()


#: the formats, as :data:`nasp.apps.export.FORMATS` names them
WRITERS = {"onnx": _onnx, "torchscript": _torchscript, "pt2": _pt2}


def export_language_model(net: nn.Module, units: int, path: str | os.PathLike, fmt: str,
                          metadata: dict[str, Any] | None = None,
                          quiet: Callable[[], ContextManager] = contextlib.nullcontext) -> Path:
    """Write the language model ``net`` (put in eval mode; ``units`` hidden units) to ``path``
    in format ``fmt`` (module docstring), plus ``path.json``; written to a temporary name and
    renamed, so a failed export leaves nothing. ``quiet`` makes the context the exporters run
    in (:mod:`nasp.apps.export` silences their progress lines). An exporter's failure is an
    :class:`ExportError` naming the format and what to try instead."""
    if fmt not in WRITERS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(WRITERS)}")
    path = Path(path)
    if not path.parent.is_dir():
        raise ExportError(f"cannot write {path}: folder {path.parent} does not exist")
    model = StatefulLanguageModel(net.eval()).eval()
    example = _examples(net, units)
    try:
        data = WRITERS[fmt](model, example, quiet)
    except ExportError:
        raise
    except Exception as err:  # the exporters raise many kinds; say which format failed
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        others = ", ".join(f for f in WRITERS if f != fmt)
        raise ExportError(f"the language model cannot be exported to {fmt} ({type(err).__name__}"
                          f": {first}); try --format {others.replace(', ', ' or --format ')}"
                          ) from err
    steps = "any" if fmt == "torchscript" else 1
    info = {"format": fmt, "model": "language model",
            "inputs": {"tokens": ["T", "B"] if steps == "any" else [1, "B"],
                       "hidden": ["B", units]},
            "outputs": {"log_probs": ["T * B" if steps == "any" else "B", "vocab"],
                        "new_hidden": ["B", units]},
            "steps": steps,
            "input": "int64 word ids (time first) and the float32 state (zeros to start a "
                     "text); pass new_hidden with the next call",
            **(metadata or {})}
    atomic_write_bytes(path, data)
    atomic_write_text(path.with_name(path.name + ".json"), json.dumps(info, indent=2) + "\n")
    return path
