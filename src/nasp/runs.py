"""The run directory: config, metrics, checkpoints and artefacts of one run.

Layout::

    RUN_DIR/
      config.yaml      the fully resolved configuration
      metrics.jsonl    one JSON object per epoch
      checkpoint.pt    everything needed to continue (written atomically each epoch)
      arch.pt          the final architecture parameters, one tensor per cell type
      genotype.json    the searched architecture

Every file is written to a temporary file in the same folder, flushed to disk and renamed over
the target, so a crash or a full disk never leaves a half-written file in place of a good one.
"""

from __future__ import annotations

import io
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from nasp.atomic import atomic_write_bytes

__all__ = ["RunDir", "RunDirError", "default_run_dir"]

RUN_FILES = ("config.yaml", "metrics.jsonl", "checkpoint.pt", "genotype.json")


class RunDirError(ValueError):
    """The output directory cannot be used; the message says why and what to do."""


def default_run_dir(kind: str, dataset: str, strategy: str) -> Path:
    """``runs/<kind>-<dataset>-<strategy>-<timestamp>`` under the current directory."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{kind}-{dataset}-{strategy}-{stamp}"


class RunDir:
    """A run directory, created on construction.

    A directory that already holds a run (any of ``config.yaml``, ``metrics.jsonl``,
    ``checkpoint.pt``, ``genotype.json``) is refused unless ``overwrite`` is set, so no earlier
    result is lost by accident.
    """

    def __init__(self, path: str | os.PathLike, overwrite: bool = False):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"--out {self.path} exists and is not a directory; "
                              f"choose another path")
        existing = [n for n in RUN_FILES if (self.path / n).exists()]
        if existing and not overwrite:
            raise RunDirError(
                f"--out {self.path} already holds a run ({', '.join(existing)}); choose another "
                f"directory, or pass --overwrite to replace it")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RunDirError(f"cannot create the run directory {self.path}: {err.strerror}; "
                              f"choose another --out") from None
        if overwrite:
            (self.path / "metrics.jsonl").unlink(missing_ok=True)

    def file(self, name: str) -> Path:
        return self.path / name

    def write_text(self, name: str, text: str) -> Path:
        atomic_write_bytes(self.file(name), text.encode())
        return self.file(name)

    def write_json(self, name: str, obj: Any) -> Path:
        return self.write_text(name, json.dumps(obj, indent=2) + "\n")

    def save_torch(self, name: str, obj: Any) -> Path:
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        atomic_write_bytes(self.file(name), buffer.getvalue())
        return self.file(name)

    def log_metrics(self, record: dict[str, Any]) -> None:
        """Append one JSON line to ``metrics.jsonl``."""
        with open(self.file("metrics.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
