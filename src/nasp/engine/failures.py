"""How a run fails well: non-finite losses found without a host sync per step, and running out
of memory or into a missing deterministic kernel said in one paragraph instead of a traceback.

Non-finite losses are found without a host sync per step: :class:`EpochSums` adds each step's
losses into sums on the device and counts, on the device, the steps after which the sums were
still finite (non-finite values stay non-finite when added to). The engine looks at that count
only where it syncs anyway: progress-bar updates, checkpoint writes and the end of an epoch.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from nasp.errors import NonFiniteError, NotEnoughMemoryError, RunFailedError
from nasp.runtime import distributed

__all__ = [
    "EpochSums", "NonFiniteError", "NotEnoughMemoryError", "RunFailedError", "all_finite",
    "check_finite", "last_good_state", "run_failures",
]


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
