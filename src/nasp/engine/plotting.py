"""What the engine's pictures share: their style (font sizes, dots per inch), matplotlib
figures made through the object API, and the reading of per-epoch series from metrics records
that may lack keys (older runs) or hold None (a gap).

matplotlib is imported only when a picture is drawn (no pyplot, no global backend).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from nasp.runtime.extras import require
from nasp.spaces.drawing import figure

__all__ = [
    "DPI", "STYLE", "epoch_axis", "epochs_of", "figure", "format_duration", "line",
    "listed_cmap", "marker", "number", "numeric_keys", "patch", "save", "styled",
]

#: Font sizes of every picture, so text stays readable where the picture is shown at its own
#: size (the run report shows them so): 9 pt at :data:`DPI` is about 14 pixels.
STYLE = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "xtick.labelsize": 8,
         "ytick.labelsize": 8, "legend.fontsize": 8, "figure.titlesize": 11,
         "legend.framealpha": 0.85}
#: Dots per inch of every picture; the figures are sized at most about 11 inches wide.
DPI = 110


def styled(draw: Callable[..., Path]) -> Callable[..., Path]:
    """Run a drawing function with :data:`STYLE` (restored afterwards)."""
    @functools.wraps(draw)
    def drawn(*args: Any, **kwargs: Any) -> Path:
        matplotlib = require("matplotlib", "viz", "Drawing pictures (nasp plot)")
        with matplotlib.rc_context(STYLE):
            return draw(*args, **kwargs)
    return drawn


def save(fig, path: str | os.PathLike) -> Path:
    """Write ``fig`` at :data:`DPI`; return the path."""
    fig.savefig(path, dpi=DPI)
    return Path(path)


def number(value: Any) -> float:
    """A metric's value as a float; NaN for a missing, None or non-numeric value (a gap)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def numeric_keys(records: Sequence[Mapping[str, Any]], select: Callable[[str], bool]
                 ) -> list[str]:
    """The keys ``select`` accepts that hold a number in at least one record, in order of first
    appearance (records of older runs may lack keys of newer ones)."""
    keys: list[str] = []
    for record in records:
        for key, value in record.items():
            if key not in keys and select(key) and not math.isnan(number(value)):
                keys.append(key)
    return keys


def epochs_of(records: Sequence[Mapping[str, Any]]) -> list[float]:
    """The epoch of every record (its place in the list where it names none)."""
    return [number(r.get("epoch", i + 1)) for i, r in enumerate(records)]


def epoch_axis(ax, label: bool = True) -> None:
    """Whole epochs on the x axis, a light grid."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if label:
        ax.set_xlabel("epoch")


def marker(epochs: Sequence[float]) -> str | None:
    """Dots on the lines while there are few epochs, so a single epoch still shows."""
    return "." if len(epochs) < 30 else None


def format_duration(seconds: float) -> str:
    """``42.1 s``, ``12 min 5 s``, ``3 h 20 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def listed_cmap(colours: Sequence[str]):
    from matplotlib.colors import ListedColormap

    return ListedColormap(list(colours) or ["C0"])


def patch(colour, label: str):
    from matplotlib.patches import Patch

    return Patch(facecolor=colour, label=label)


def line(colour, label: str):
    from matplotlib.lines import Line2D

    return Line2D([], [], color=colour, lw=2, label=label)
