"""The run directory: config, metrics, checkpoints and artefacts of one run.

Layout::

    RUN_DIR/
      config.yaml       the fully resolved configuration (``--config`` replays it)
      environment.json  one record per session (start, each resume): library versions, source
                        commit, device, determinism
                        (:func:`nasp.engine.reproducibility.environment`)
      metrics.jsonl     one JSON object per epoch
      checkpoint.pt     search: everything needed to continue exactly (each epoch, and every
                        ``checkpoint_every`` steps)
      last.pt, best.pt  train from scratch: the same, and the best epoch's model
      arch.pt           the final architecture parameters, one tensor per cell type
      genotype.json     the searched (or trained) architecture

Every file is written to a temporary file in the same folder, flushed to disk and renamed over
the target, so a crash or a full disk never leaves a half-written file in place of a good one; a
failed write raises :class:`RunWriteError`, naming the file and saying the previous version is
intact. ``metrics.jsonl`` is appended to, and cut back to its previous length if that fails.
"""

from __future__ import annotations

import errno
import io
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from nasp.errors import RunDirError, RunWriteError
from nasp.runtime.atomic import atomic_write_bytes

__all__ = ["RunDir", "RunDirError", "RunWriteError", "default_run_dir"]

#: Files whose presence means a directory holds a run; --overwrite removes them first.
RUN_FILES = ("config.yaml", "metrics.jsonl", "checkpoint.pt", "last.pt", "genotype.json",
             "environment.json")
#: Results of an earlier run that --overwrite also removes, so none is mistaken for the new run's.
STALE_FILES = ("arch.pt", "best.pt")


def default_run_dir(kind: str, dataset: str, strategy: str) -> Path:
    """``runs/<kind>-<dataset>-<strategy>-<timestamp>`` under the current directory."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{kind}-{dataset}-{strategy}-{stamp}"


class RunDir:
    """A run directory, created on construction.

    A directory that already holds a run (any of :data:`RUN_FILES`) is refused unless
    ``overwrite`` is set (which removes that run's files) or ``resume`` is set (which keeps them
    to continue the run), so no earlier result is lost by accident.
    """

    def __init__(self, path: str | os.PathLike, overwrite: bool = False, resume: bool = False):
        self.path = Path(path)
        if overwrite and resume:
            raise RunDirError("--resume continues the run in a directory and --overwrite replaces "
                              "it; give only one of them")
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"--out {self.path} exists and is not a directory; "
                              f"choose another path")
        existing = [n for n in RUN_FILES if (self.path / n).exists()]
        if existing and not (overwrite or resume):
            raise RunDirError(
                f"--out {self.path} already holds a run ({', '.join(existing)}); choose another "
                f"directory, continue that run with --resume, or pass --overwrite to replace it")
        if resume and not existing:
            raise RunDirError(f"--resume: {self.path} holds no run to continue; start a new run "
                              f"without --resume")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            if overwrite:
                for name in RUN_FILES + STALE_FILES:
                    (self.path / name).unlink(missing_ok=True)
        except OSError as err:
            raise RunDirError(f"cannot prepare the run directory {self.path}: {err.strerror}; "
                              f"choose another --out") from None

    def file(self, name: str) -> Path:
        return self.path / name

    def write_bytes(self, name: str, data: bytes) -> Path:
        """Write ``name`` atomically; :class:`RunWriteError` (old file intact) if that fails."""
        try:
            atomic_write_bytes(self.file(name), data)
        except OSError as err:
            raise RunWriteError(_write_failure(self.file(name), err, "is unchanged")) from None
        return self.file(name)

    def write_text(self, name: str, text: str) -> Path:
        return self.write_bytes(name, text.encode())

    def write_json(self, name: str, obj: Any) -> Path:
        return self.write_text(name, json.dumps(obj, indent=2) + "\n")

    def save_torch(self, name: str, obj: Any) -> Path:
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        return self.write_bytes(name, buffer.getvalue())

    def read_json(self, name: str, default: Any = None) -> Any:
        """The JSON in ``name``, or ``default`` when it is missing or not JSON."""
        try:
            return json.loads(self.file(name).read_text())
        except (OSError, ValueError):
            return default

    def append_json_list(self, name: str, item: Any) -> Path:
        """Add ``item`` to the JSON list in ``name`` (a new list if there is none), atomically."""
        items = self.read_json(name, [])
        return self.write_json(name, [*(items if isinstance(items, list) else []), item])

    def rewrite_metrics(self, records: list[dict[str, Any]]) -> Path:
        """Replace ``metrics.jsonl`` (atomically) by one JSON line per record: a resumed run
        writes the metrics its checkpoint holds, dropping lines logged after that checkpoint."""
        return self.write_text("metrics.jsonl", "".join(json.dumps(r) + "\n" for r in records))

    def log_metrics(self, record: dict[str, Any]) -> None:
        """Append one JSON line to ``metrics.jsonl``; on failure the file is cut back to the
        lines it had and :class:`RunWriteError` is raised."""
        path = self.file("metrics.jsonl")
        try:
            with open(path, "a") as f:
                size = f.tell()
                try:
                    f.write(json.dumps(record) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                except OSError:
                    f.truncate(size)
                    raise
        except OSError as err:
            raise RunWriteError(_write_failure(path, err, "keeps its earlier lines")) from None


def _write_failure(path: Path, err: OSError, kept: str) -> str:
    reason = err.strerror or str(err)
    full = " (the disk is full)" if err.errno == errno.ENOSPC else ""
    return (f"could not write {path}: {reason}{full}; the previous {path.name} {kept}. Free "
            f"some space (or fix the permissions) and continue the run with --resume")
