"""TensorBoard logging (optional extra ``tensorboard``), with a no-op stand-in when it is off.

``open_logger(run_dir / "tensorboard", enabled)`` gives a :class:`Logger` writing event files
there, or a :class:`NullLogger` that ignores every call, so loops log unconditionally::

    logger = open_logger(path, enabled=config_says_so)
    logger.scalars({"loss/train": 0.3, "lr": 0.025}, step=epoch)
    logger.arch_weights(strategy.arch, space.primitives, step=epoch)   # from a search loop
    logger.close()

View with ``tensorboard --logdir RUN_DIR``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import torch

from nasp.runtime.extras import require

__all__ = ["Logger", "NullLogger", "open_logger"]


class NullLogger:
    """Accepts the :class:`Logger` calls and does nothing."""

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        pass

    def arch_weights(self, arch: Mapping[str, torch.Tensor],
                     primitives: Mapping[str, Sequence[str]], step: int,
                     softmax: bool = False) -> None:
        pass

    def close(self) -> None:
        pass


class Logger(NullLogger):
    """Writes TensorBoard event files into ``log_dir`` (needs the ``tensorboard`` package)."""

    def __init__(self, log_dir: str | os.PathLike):
        require("tensorboard", "tensorboard", "TensorBoard logging (--tensorboard)")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(os.fspath(log_dir))

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        """One scalar per tag, e.g. ``{"loss/train": 0.31, "accuracy/test": 0.87}``."""
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def arch_weights(self, arch: Mapping[str, torch.Tensor],
                     primitives: Mapping[str, Sequence[str]], step: int,
                     softmax: bool = False) -> None:
        """Every entry of every architecture matrix as ``arch/<cell>/edge<e>/<op>``.

        ``arch[cell]`` is ``(edges, ops)``; with ``softmax`` each row is shown as
        ``softmax(row)`` (the DARTS mixing weights), else as it is (NASP's ``A`` in [0, 1]).
        """
        for cell, matrix in arch.items():
            weights = matrix.detach().float().cpu()
            if softmax:
                weights = weights.softmax(-1)
            for e, row in enumerate(weights.tolist()):
                for name, value in zip(primitives[cell], row, strict=True):
                    self.writer.add_scalar(f"arch/{cell}/edge{e:02d}/{name}", value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def open_logger(log_dir: str | os.PathLike, enabled: bool) -> NullLogger:
    """A :class:`Logger` into ``log_dir`` if ``enabled``, else a :class:`NullLogger`.

    Raises :class:`~nasp.errors.MissingExtraError` when enabled without TensorBoard installed.
    """
    return Logger(log_dir) if enabled else NullLogger()
