"""What makes a run repeatable: seeding, every random state a loop draws from, deterministic
mode, the environment record, and the configuration a resumed run continues with.

Exact resume. A checkpoint holds, besides the model and optimisers, every random state the run
draws from (:func:`rng_state`: Python, NumPy, torch CPU and CUDA, the batches' generator) and the
position in the epoch (the batch streams' :meth:`~nasp.data.batches.BatchStream.state_dict` and
the epoch's partial sums, :class:`~nasp.engine.failures.EpochSums`). Restored together they make
the rest of the run repeat, bit for bit on the same hardware and software, what the uninterrupted
run would have done.
"""

from __future__ import annotations

import contextlib
import os
import platform
import random
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nasp.errors import ConfigError

__all__ = [
    "RESUME_MAY_CHANGE", "GlobalAvgPool", "deterministic_mode", "environment", "restore_rng_state",
    "resumed_config", "rng_state", "seed_everything", "source_commit",
    "use_deterministic_modules",
]

#: Options a resumed run may change; every other one must match the saved configuration.
#: (``precision`` and ``memory_format`` let a run move to other hardware; the rest of the run is
#: then no longer bit-identical to an uninterrupted one.)
RESUME_MAY_CHANGE = ("device", "data_dir", "memory_format", "precision", "checkpoint_every",
                     "deterministic", "sync_bn")


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state(device: torch.device, generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every random state a loop draws from, as plain data ``torch.load(weights_only=True)``
    reads: ``python``, ``numpy``, ``torch`` (CPU), ``cuda`` (when ``device`` is CUDA) and
    ``batches`` (``generator``, the data order and augmentation)."""
    version, key, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": [version, list(key), gauss],
        "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    if generator is not None:
        state["batches"] = generator.get_state()
    return state


def restore_rng_state(state: Mapping[str, Any], device: torch.device,
                      generator: torch.Generator | None = None) -> None:
    """Undo :func:`rng_state`. Entries missing from ``state`` (older checkpoints) are skipped;
    a CUDA state is only restored onto a CUDA device."""
    if "python" in state:
        version, key, gauss = state["python"]
        random.setstate((version, tuple(key), gauss))
    if "numpy" in state:
        s = state["numpy"]
        np.random.set_state(("MT19937", s["key"].numpy().astype(np.uint32), s["pos"],
                             s["has_gauss"], s["gauss"]))
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
    if generator is not None:
        generator.set_state(state["batches"])


@contextlib.contextmanager
def deterministic_mode(enabled: bool, device: torch.device) -> Iterator[None]:
    """While active (if ``enabled``): ``torch.use_deterministic_algorithms(True)``, cuDNN
    deterministic with benchmarking off, and on CUDA ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` (which
    deterministic cuBLAS needs; set only if unset, and it must be set before cuBLAS first runs in
    the process, so set it in the environment when using the library on a GPU). The previous
    settings come back on exit; the environment variable stays. On CUDA the loops also call
    :func:`use_deterministic_modules` on their network."""
    if not enabled:
        yield
        return
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    cudnn = torch.backends.cudnn
    saved = (torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             cudnn.deterministic, cudnn.benchmark)
    torch.use_deterministic_algorithms(True)
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        cudnn.deterministic, cudnn.benchmark = saved[2], saved[3]


class GlobalAvgPool(nn.Module):
    """``nn.AdaptiveAvgPool2d(1)`` computed as a mean over H and W: same result, and a backward
    that is deterministic on CUDA (PyTorch has no deterministic CUDA backward of adaptive average
    pooling, so ``use_deterministic_algorithms`` would refuse it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=True)


def use_deterministic_modules(net: nn.Module) -> int:
    """Replace every ``nn.AdaptiveAvgPool2d(1)`` in ``net`` by :class:`GlobalAvgPool` (no
    parameters change, so checkpoints are unaffected). Returns how many were replaced. The loops
    do this for ``deterministic`` runs on CUDA."""
    replaced = 0
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if (isinstance(child, nn.AdaptiveAvgPool2d)
                    and child.output_size in (1, (1, 1), [1, 1])):
                setattr(module, name, GlobalAvgPool())
                replaced += 1
    return replaced


def source_commit() -> dict[str, Any]:
    """``{"commit": sha or "unknown", "modified": bool or None}`` of the git checkout the nasp
    sources were imported from; "unknown" when they are not tracked by git (an installed wheel)
    or git is not available. ``modified`` says whether the package's files differ from it."""
    package = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(package), *args], capture_output=True,
                              text=True, check=True, timeout=10).stdout.strip()

    try:
        git("ls-files", "--error-unmatch", "__init__.py")  # fails unless the sources are tracked
        return {"commit": git("rev-parse", "HEAD"),
                "modified": bool(git("status", "--porcelain", "--", "."))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "modified": None}


def environment(device: torch.device, deterministic: bool, event: str) -> dict[str, Any]:
    """What a run ran with: ``event`` (start/resume), time, the command line, library versions
    (python, torch, numpy, nasp), the source commit (:func:`source_commit`), platform, device
    and its name, CUDA/cuDNN versions, CPU threads and whether deterministic mode was on."""
    from nasp import __version__

    cuda = device.type == "cuda"
    return {
        "event": event, "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": sys.argv, "python": platform.python_version(), "torch": torch.__version__,
        "numpy": np.__version__, "nasp": __version__, **source_commit(),
        "platform": platform.platform(), "device": str(device),
        "device_name": (torch.cuda.get_device_name(device) if cuda
                        else platform.processor() or platform.machine()),
        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if cuda else None,
        "threads": torch.get_num_threads(), "deterministic": deterministic,
    }


def resumed_config(saved: Any, changes: Mapping[str, Any], run_dir: Path,
                   differences: Iterable[str] = ()) -> Any:
    """The configuration a resumed run continues with: ``saved`` with the options of
    :data:`RESUME_MAY_CHANGE` taken from ``changes`` (when not None) and ``out = run_dir``.

    Any other option given (not None) must equal its saved value; else (or when ``differences``
    names further mismatches) :class:`ConfigError` lists every difference."""
    unknown = sorted(set(changes) - saved.keys())
    if unknown:
        raise ConfigError(f"resume got unknown options {', '.join(unknown)}")
    differ = [f"--{k.replace('_', '-')} {v} (saved: {getattr(saved, k)})"
              for k, v in changes.items()
              if v is not None and k not in RESUME_MAY_CHANGE and v != getattr(saved, k)]
    differ += list(differences)
    if differ:
        raise ConfigError(f"--resume continues {run_dir} with the configuration it was started "
                          f"with, which differs in {'; '.join(differ)}; drop those options, or "
                          f"start a new run with another --out")
    return saved.replace(**{k: changes.get(k) for k in RESUME_MAY_CHANGE}, out=str(run_dir))
