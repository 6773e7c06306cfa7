"""Every error the library raises for the user to act on, in one module that imports nothing of
the project (the bottom floor; see docs/architecture.md).

Each message is one short paragraph naming the option, file or run directory and what to do.
``nasp`` (the command line) prints such an error on one line and exits with status 2 (bad input)
or 1 (a run that failed); it never shows a traceback for these. A run stopped by Ctrl-C raises
:class:`RunInterrupted` (a ``KeyboardInterrupt``); ``nasp`` says what was kept and how to go on,
with status 130.
"""

from __future__ import annotations

__all__ = [
    "ArchStringError", "BenchmarkError", "CheckpointError", "ConfigError", "DatasetError",
    "ExportError", "GenotypeError", "MissingExtraError", "NonFiniteError",
    "NotEnoughMemoryError", "RunDirError", "RunFailedError", "RunInterrupted", "RunWriteError",
]


class ConfigError(ValueError):
    """An invalid configuration value or file; the message names the option and the problem."""


class DatasetError(ValueError):
    """A data set is missing, unreadable, corrupt or unsuitable.

    ``str(err)`` is one short paragraph (one line) naming the data set, the path(s) looked at,
    what was wrong and how to get or fix the data: it is meant to be shown to the user as it is.
    """


class GenotypeError(ValueError):
    """Invalid genotype.

    ``str(err)`` is one short paragraph naming what is wrong (which cell, which node, which op or
    index) and, when loading a file, the file path.
    """


class ArchStringError(GenotypeError):
    """An invalid NAS-Bench-201 architecture (string, dict or file); the message says what and
    where."""


class BenchmarkError(ValueError):
    """An unusable benchmark table or look-up; the message names the file and what to do."""


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or not from ``nasp train``; the message says which."""


class ExportError(ValueError):
    """The model cannot be exported as asked; the message says why."""


class RunDirError(ValueError):
    """The output directory cannot be used; the message says why and what to do."""


class RunWriteError(RunDirError):
    """A run file could not be written (e.g. a full disk); its previous version is intact."""


class MissingExtraError(ImportError):
    """A feature needs an optional package that is not installed; the message says how to get it.
    """


class RunFailedError(RuntimeError):
    """A run stopped on a condition the user can act on; the message says what and what to do.
    Files already in the run directory are left as they were."""


class NonFiniteError(RunFailedError):
    """A loss, weight or architecture parameter became NaN or infinite."""


class NotEnoughMemoryError(RunFailedError):
    """The device (or the CPU allocator) ran out of memory."""


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C (SIGINT). ``str(err)`` is one sentence saying what its last
    checkpoint keeps; ``run_dir`` is the run directory, ``checkpoint`` the checkpoint file to
    resume from (None: none was written yet), ``saved_at`` its ``(epochs completed, steps of the
    next epoch)``."""

    def __init__(self, message: str, run_dir: str, checkpoint: str | None,
                 saved_at: tuple[int, int] | None):
        super().__init__(message)
        self.run_dir = run_dir
        self.checkpoint = checkpoint
        self.saved_at = saved_at
