"""Where and how tensors run: device, memory format and precision, from (validated) config names.

Defaults are chosen by measurement (BENCHMARKS.md): on the CPU, channels-last makes the depthwise
convolutions and pooling of the DARTS cells markedly faster, and float32 is used (CPU bfloat16
autocast is slower here). On CUDA, bfloat16 autocast and the default (NCHW) memory format.
"""

from __future__ import annotations

import contextlib

import torch

from nasp.errors import ConfigError

__all__ = ["autocast", "resolve_device", "resolve_memory_format", "resolve_precision"]


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r} is not a device name; use cpu, cuda, cuda:N "
                          f"or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name} was asked for, but PyTorch sees no CUDA device; "
                          f"use --device cpu")
    return device


def resolve_memory_format(name: str, device: torch.device) -> torch.memory_format:
    """``auto``: channels-last on the CPU, contiguous (NCHW) elsewhere."""
    if name == "auto":
        name = "channels_last" if device.type == "cpu" else "contiguous"
    return {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}[name]


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain float32. ``auto``: bfloat16 on CUDA, else fp32."""
    if name == "auto":
        name = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    return {"bf16": torch.bfloat16, "fp32": None}[name]


def autocast(device: torch.device, dtype: torch.dtype | None):
    """An autocast context for ``dtype``, or a no-op context for float32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
