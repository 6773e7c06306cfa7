"""What training from scratch prints: one line per epoch (at most 120 columns) and the number
formats of its closing summary."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["count_si", "duration", "epoch_line", "pct"]


def epoch_line(record: Mapping[str, Any], epochs: int, *, best: bool = False,
               left: float | None = None) -> str:
    """An epoch's log line (at most 120 characters up to 999 epochs and 100 days left):
    ``epoch 3/10  train loss 0.512 acc 85.3%  val acc 91.67% (best)  test acc 90.28%  lr 0.0452
    4.1s  29s left``. ``best``: this epoch's model became best.pt; ``left``: the seconds the
    remaining epochs should take (nothing said when 0 or None)."""
    parts = [f"epoch {record['epoch']}/{epochs}",
             f"train loss {record['train_loss']:.3f} acc {100 * record['train_acc']:.1f}%"]
    if "val_acc" in record:
        parts.append(f"val acc {pct(record['val_acc'])}{' (best)' if best else ''}")
    parts += [f"test acc {pct(record['test_acc'])}", f"lr {record['lr']:.3g}",
              duration(record["seconds"])]
    if left:
        parts.append(f"{duration(left)} left")
    return "  ".join(parts)


def pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def duration(seconds: float) -> str:
    """``4.1s``, ``12m05s``, ``3h07m``, ``12d05h``: at most 6 characters below 100 days."""
    if seconds < 59.95:
        return f"{seconds:.1f}s"
    seconds = round(seconds)
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if not hours:
        return f"{minutes}m{secs:02d}s"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h" if days else f"{hours}h{minutes:02d}m"


def count_si(n: float) -> str:
    """``1.06G``, ``528M``, ``4.6K``: three significant digits and an SI prefix."""
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.3g}{prefix}"
    return f"{n:.3g}"
