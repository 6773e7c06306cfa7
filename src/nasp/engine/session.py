"""Pieces both loops use: seeding, random states, determinism, the environment record, run
failures (non-finite losses, out of memory), resume checks and classifier evaluation.

Exact resume. A checkpoint holds, besides the model and optimisers, every random state the run
draws from (:func:`rng_state`: Python, NumPy, torch CPU and CUDA, the batches' generator) and the
position in the epoch (the batch streams' :meth:`~nasp.data.batches.BatchStream.state_dict` and
the epoch's partial sums, :class:`EpochSums`). Restored together they make the rest of the run
repeat, bit for bit on the same hardware and software, what the uninterrupted run would have done.

Non-finite losses are found without a host sync per step: :class:`EpochSums` adds each step's
losses into sums on the device and counts, on the device, the steps after which the sums were
still finite (non-finite values stay non-finite when added to). The loops look at that count only
where they sync anyway: progress-bar updates, checkpoint writes and the end of an epoch.
"""

from __future__ import annotations

import contextlib
import os
import platform
import random
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nasp.data import Batches
from nasp.errors import ConfigError, NonFiniteError, NotEnoughMemoryError, RunFailedError
from nasp.runtime import distributed

__all__ = [
    "RESUME_MAY_CHANGE", "EpochSums", "GlobalAvgPool", "NonFiniteError", "NotEnoughMemoryError",
    "RunFailedError", "all_finite", "check_finite", "deterministic_mode", "environment",
    "evaluate_classifier", "last_good_state", "resumed_config", "restore_rng_state", "rng_state",
    "run_failures", "seed_everything", "source_commit", "use_deterministic_modules",
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


class EpochSums:
    """Sums of per-step metrics over an epoch, kept on the device (no host sync per step).

    ``add(values, n)`` adds a vector of step values and ``n`` samples. It also counts, on the
    device, the steps after which every sum was still finite; since a NaN or an infinity stays
    non-finite when added to, the first step with a non-finite value is ``start + that count``
    (:meth:`first_bad_step`, one host sync). ``start`` is the step the sums began at (non-zero
    when restored from a mid-epoch checkpoint).
    """

    def __init__(self, start: int = 0):
        self.start = start
        self.steps = 0
        self.seen = 0
        self.sums: torch.Tensor | None = None
        self._finite: torch.Tensor | None = None

    def add(self, values: torch.Tensor, n: int) -> None:
        self.sums = values if self.sums is None else self.sums + values
        self.seen += n
        ok = torch.isfinite(self.sums).all().to(torch.int64)
        self._finite = ok if self._finite is None else self._finite + ok
        self.steps += 1

    def first_bad_step(self) -> int | None:
        """The 0-based step whose values were first non-finite, or None (one host sync)."""
        if self._finite is None:
            return None
        finite = int(self._finite.item())
        return None if finite == self.steps else self.start + finite

    def means(self, divisors: torch.Tensor | list[float]) -> list[float]:
        """``sums / divisors`` as floats (one host sync). Under torchrun, the mean over ranks
        (averaged on the device): with equal shards, the means over the global batches."""
        local = self.sums / torch.as_tensor(divisors, dtype=self.sums.dtype,
                                            device=self.sums.device)
        return distributed.all_average(local).tolist()

    def state_dict(self) -> dict[str, Any]:
        """Sums (on the CPU) and counts; only taken while every sum is finite."""
        return {"sums": None if self.sums is None else self.sums.detach().cpu(),
                "seen": self.seen, "steps": self.start + self.steps}

    @classmethod
    def restored(cls, state: Mapping[str, Any] | None, device: torch.device) -> EpochSums:
        """Sums of a :meth:`state_dict` (None: a fresh epoch) continuing on ``device``."""
        if state is None or state["sums"] is None:
            return cls()
        sums = cls(start=state["steps"])
        sums.sums = state["sums"].to(device)
        sums.seen = state["seen"]
        return sums


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """Whether every floating-point tensor holds only finite values (one host sync)."""
    flags = [torch.isfinite(t).all() for t in tensors if t.is_floating_point()]
    return bool(torch.stack(flags).all()) if flags else True


def last_good_state(checkpoint: Path, saved_at: tuple[int, int] | None) -> str:
    """The sentence a failure message ends with: what ``checkpoint`` (last written after
    ``saved_at = (epochs completed, steps of the next epoch)``, None if never) still holds."""
    if saved_at is None:
        return (f"No checkpoint had been written yet, so {checkpoint.parent} holds no state to "
                f"resume from.")
    epoch, step = saved_at
    where = f"the end of epoch {epoch}" if step == 0 else f"epoch {epoch + 1}, step {step}"
    return f"{checkpoint} still holds the last good state, from {where}."


def check_finite(sums: EpochSums, tensors: Iterable[torch.Tensor], *, epoch: int, step: int,
                 steps: int, run: str, loss: str, state: str, kept: str, advice: str) -> None:
    """Raise :class:`NonFiniteError` unless the epoch's losses so far (``sums``) and ``tensors``
    are all finite (host syncs: call only where the loop syncs anyway).

    The message says ``run`` ("the search") diverged, where (the first bad step of ``loss``, or
    the step by which ``state`` went bad), then ``kept`` and ``advice``."""
    bad = sums.first_bad_step()
    if bad is None and all_finite(tensors):
        return
    if bad is not None:
        what = f"{loss} became NaN or infinite at epoch {epoch + 1}, step {bad + 1}"
    else:
        what = f"{state} became NaN or infinite by epoch {epoch + 1}, step {step}"
    raise NonFiniteError(f"{run} diverged: {what} (of {steps} steps per epoch), and stopped "
                         f"there. {kept} {advice}")


@contextlib.contextmanager
def run_failures(what: str, kept: Callable[[], str], sizes: Mapping[str, int],
                 device: torch.device) -> Iterator[None]:
    """Turn running out of memory into :class:`NotEnoughMemoryError` and a missing deterministic
    kernel into :class:`RunFailedError`, one paragraph each instead of a traceback.

    ``what`` names the run ("the search"), ``kept()`` says what the run directory keeps, and
    ``sizes`` maps option names (``batch_size``, ``channels``, ``layers``) to their values, to
    suggest a smaller size: half the batch (memory grows about linearly with it), or half the
    channels when the batch is already 1.
    """
    oom_types = (getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError),)
    try:
        yield
    except oom_types as err:
        raise NotEnoughMemoryError(_memory_message(what, str(err), kept(), sizes, device)
                                   ) from None
    except RuntimeError as err:
        text = str(err)
        if "not enough memory" in text or "out of memory" in text.lower():
            raise NotEnoughMemoryError(_memory_message(what, text, kept(), sizes, device)
                                       ) from None
        if "does not have a deterministic implementation" in text:
            op = text.split(" does not")[0].strip().split()[-1]
            raise RunFailedError(f"{what} stopped: --deterministic asks for deterministic "
                                 f"algorithms, and {op} has none on {device}; run without "
                                 f"--deterministic (results then may differ slightly from run "
                                 f"to run), or on the CPU. {kept()}") from None
        raise


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def _memory_message(what: str, text: str, kept: str, sizes: Mapping[str, int],
                    device: torch.device) -> str:
    used = ""
    if device.type == "cuda":
        with contextlib.suppress(RuntimeError):
            free, total = torch.cuda.mem_get_info(device)
            peak = torch.cuda.max_memory_allocated(device)
            used = (f" ({_gib(peak)} at the peak of this run, {_gib(total)} on the device, "
                    f"{_gib(free)} free now)")
    else:
        asked = re.search(r"allocate (\d+) bytes", text)
        if asked:
            used = f" (an allocation of {_gib(int(asked.group(1)))} failed"
            with contextlib.suppress(ValueError, OSError, AttributeError):
                free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
                used += f"; {_gib(free)} of memory free now"
            used += ")"
    now = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in sizes.items())
    batch, channels = sizes.get("batch_size", 1), sizes.get("channels", 2)
    if batch > 1:
        fix = (f"try --batch-size {batch // 2} (memory grows about linearly with the batch "
               f"size; halve it again if that does not fit)")
    else:
        fix = (f"try --channels {max(2, channels // 2 // 2 * 2)} or fewer --layers (the batch "
               f"is already 1)")
    return (f"{what} ran out of memory on {device}{used} with {now}; {fix}. A run cannot "
            f"continue with another size, so start it again with the smaller size (and "
            f"--overwrite, or another --out). {kept}")


@torch.no_grad()
def evaluate_classifier(net: nn.Module, batches: Batches,
                        forward: Callable[[torch.Tensor], torch.Tensor] | None = None
                        ) -> dict[str, float]:
    """Mean cross-entropy ``loss``, ``top1`` and ``top5`` accuracy of ``net`` in eval mode.

    ``top5`` counts a prediction right when the label is among the 5 largest logits (among all
    of them when there are fewer than 5 classes). ``forward`` maps a batch to logits (default
    ``net``; the search passes the supernet with the child's plans). One host sync, at the end.
    Data-parallel (:mod:`nasp.runtime.distributed`): with rank 0's BatchNorm statistics, the sums of
    all ranks (each evaluates its part of the split).
    """
    distributed.broadcast_buffers_(net)
    was_training = net.training
    net.eval()
    sums = None
    n = 0
    for x, y in batches:
        logits = forward(x) if forward is not None else net(x)
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        values = torch.stack([F.cross_entropy(logits, y, reduction="sum"),
                              (top[:, 0] == y).sum().to(logits.dtype),
                              (top == y[:, None]).any(1).sum().to(logits.dtype)])
        sums = values if sums is None else sums + values
        n += len(y)
    net.train(was_training)
    sums = distributed.all_sum(torch.cat([sums, sums.new_tensor([n])]))
    sums, n = sums[:3], sums[3]
    loss, top1, top5 = (sums / n).tolist()
    return {"loss": loss, "top1": top1, "top5": top5}
