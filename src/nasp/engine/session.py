"""The run engine: one life cycle for the search and for training from scratch.

:class:`RunSession` holds what every run does, written once:

- start (:meth:`RunSession.start`): join the process group torchrun describes (or take the one
  device), silence the other ranks (:class:`Output`), load the data (once per node first), name
  and open the run directory, write ``config.yaml`` and the environment record
  (:func:`~nasp.engine.reproducibility.environment`), all within deterministic mode if asked;
  resume (:meth:`RunSession.resume`): the same from a checkpoint, which restores the position;
- the epochs: from the saved position to ``config.epochs``, with a progress bar, the steps'
  losses summed on the device (:class:`~nasp.engine.failures.EpochSums`), a finiteness check
  where the loop syncs anyway, checkpoints written atomically after every ``checkpoint_every``-th
  step (counted over the whole run) and at the end of every epoch, never while a loss or state
  is NaN or infinite, then the epoch's record appended to ``metrics.jsonl``;
- failures: non-finite values, running out of memory and a missing deterministic kernel are said
  in one paragraph that ends with what the last checkpoint still holds
  (:func:`~nasp.engine.failures.run_failures`); Ctrl-C raises
  :class:`~nasp.errors.RunInterrupted`, which says the same;
- teardown of the process group it started.

A subclass (the search, :mod:`nasp.engine.search`; training, :mod:`nasp.engine.train`) says only
what differs: its data, model and task (``__init__``), one step (:meth:`RunSession.train_step`),
what begins and ends an epoch and what its record holds, what its checkpoint holds, and its
messages.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from tqdm import tqdm

from nasp.engine.failures import EpochSums, check_finite, last_good_state, run_failures
from nasp.engine.reproducibility import deterministic_mode, environment, seed_everything
from nasp.errors import CheckpointError, RunInterrupted
from nasp.runtime import distributed
from nasp.runtime.runs import RunDir, default_run_dir

__all__ = ["EpochClock", "Output", "RunSession", "format_duration"]


@dataclass(frozen=True)
class Output:
    """What a run shows besides its run directory: log lines, the progress bar, pictures at the
    end, TensorBoard scalars (training only).

    ``quiet``: no per-epoch lines, no progress bar, no other line before the end; the final
    summary (:meth:`log`) and errors are still shown. Lines that only report progress go
    through :meth:`say`."""

    log: Callable[[str], None] = print
    progress: bool = True
    plots: bool = True
    tensorboard: bool = False
    quiet: bool = False

    def of_rank(self, is_main: bool) -> Output:
        """As it is on rank 0; silent on the other ranks of a data-parallel run."""
        if is_main:
            return self
        return replace(self, log=distributed.silent, progress=False, plots=False,
                       tensorboard=False)

    @property
    def shows_progress(self) -> bool:
        """Whether the progress bar is drawn (``progress`` and not ``quiet``)."""
        return self.progress and not self.quiet

    def say(self, line: str) -> None:
        """A line that reports progress (a start, an epoch, pictures written): logged unless
        ``quiet``."""
        if not self.quiet:
            self.log(line)


class EpochClock:
    """Wall-clock and process CPU time spent in the current epoch, counting ``seconds`` and
    ``cpu_seconds`` spent in it before (by the run a checkpoint was written by)."""

    def __init__(self, seconds: float = 0.0, cpu_seconds: float = 0.0):
        self.started = time.perf_counter() - seconds
        self.cpu_started = time.process_time() - cpu_seconds

    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def cpu_seconds(self) -> float:
        return time.process_time() - self.cpu_started


def format_duration(seconds: float) -> str:
    """A duration for log lines: ``0.8s``, ``12s``, ``4m05s``, ``3h07m``."""
    if seconds < 9.95:
        return f"{max(seconds, 0.0):.1f}s"
    if seconds < 59.5:
        return f"{seconds:.0f}s"
    minutes = int(seconds + 0.5) // 60
    if minutes < 60:
        return f"{minutes}m{int(seconds + 0.5) % 60:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


class RunSession(ABC):
    """The state of one run (model, batch streams, position, metrics) and its life cycle.

    Position: ``epoch`` epochs completed, ``step`` steps of the next one, ``sums`` of its
    steps' metrics, ``seconds`` / ``cpu_seconds`` spent in it before this process;
    ``saved_at`` the ``(epoch, step)`` of the last checkpoint written (None: none yet).
    """

    # -- what a subclass names -------------------------------------------------------------
    #: first word of a default run directory name (``search``, ``train``)
    kind: ClassVar[str]
    #: the run in messages: "the search", "training"
    what: ClassVar[str]
    #: file name of the checkpoint to resume from
    checkpoint_name: ClassVar[str]
    #: finiteness messages: what went NaN (the summed loss, the watched state), what to try
    loss_name: ClassVar[str] = "the loss"
    state_name: ClassVar[str] = "the weights"
    advice: ClassVar[str] = ""

    def __init__(self, config: Any, device: torch.device):
        # every session is built from the seed (model initialisation, first draws); a resumed
        # one then restores the random states of its checkpoint
        seed_everything(config.seed)
        self.config = config
        self.device = device
        self.epoch = 0          # epochs completed
        self.step = 0           # steps of the current epoch completed
        self.sums = EpochSums()
        self.seconds = 0.0      # time spent in the current epoch before this session
        self.cpu_seconds = 0.0  # process CPU time of the same
        self.history: list[dict[str, Any]] = []
        self.saved_at: tuple[int, int] | None = None  # (epoch, step) of the last checkpoint
        self.train_batches: Any = None  # the training batches (their len: steps per epoch)
        self.bar: tqdm | None = None  # the progress bar of the whole run (None: none drawn)

    # -- start and resume ---------------------------------------------------------------------
    @classmethod
    def start(cls, config: Any, *, label: str, overwrite: bool, output: Output,
              **inputs: Any) -> Any:
        """Run ``config`` from the start into ``config.out`` (default ``runs/KIND-...-label``);
        ``inputs`` go to the constructor. Returns :meth:`finish`'s result."""
        dist = distributed.setup(config)  # torchrun: process group, this rank's device
        output = output.of_rank(dist.is_main)  # distributed: only rank 0 prints and draws
        data = distributed.local_first(cls.load_data, config)
        out = Path(config.out) if config.out else default_run_dir(cls.kind, config.dataset, label)
        out = distributed.from_rank0(out)
        config = config.replace(out=str(out))
        with deterministic_mode(config.deterministic, dist.device):
            session = cls(config, data, dist.device, **inputs)
            run = distributed.run_dir(out, overwrite=overwrite)
            run.write_text("config.yaml", config.to_yaml())
            session.write_inputs(run)
            run.append_json_list("environment.json",
                                 environment(dist.device, config.deterministic, "start"))
            result = session.run(run, output)
        distributed.teardown(dist)
        return result

    @classmethod
    def resume(cls, run_dir: Path, config: Any, checkpoint: Mapping[str, Any], *,
               output: Output, **inputs: Any) -> Any:
        """Continue the run in ``run_dir`` (``config`` as :func:`resumed_config` gives it) from
        ``checkpoint``, exactly as if it had never stopped."""
        dist = distributed.setup(config)
        output = output.of_rank(dist.is_main)
        data = distributed.local_first(cls.load_data, config)
        cls.check_data(data, checkpoint, run_dir)
        with deterministic_mode(config.deterministic, dist.device):
            session = cls(config, data, dist.device, **inputs)
            session.restore(checkpoint)
            run = distributed.run_dir(run_dir, resume=True)
            run.rewrite_metrics(session.history)
            run.append_json_list("environment.json",
                                 environment(dist.device, config.deterministic, "resume"))
            output.say(f"resuming {run_dir} at epoch {session.epoch + 1}, step {session.step} "
                       f"of {len(session.train_batches)} ({config.epochs} epochs)")
            result = session.run(run, output)
        distributed.teardown(dist)
        return result

    # -- what a subclass says ---------------------------------------------------------------
    @staticmethod
    @abstractmethod
    def load_data(config: Any) -> Any:
        """The run's data (passed to the constructor); every rank calls it."""

    @classmethod
    def check_data(cls, data: Any, checkpoint: Mapping[str, Any], run_dir: Path) -> None:
        """Raise :class:`~nasp.errors.DatasetError` unless ``data`` is what ``checkpoint`` was
        written on."""
        return None

    def write_inputs(self, run: RunDir) -> None:
        """Write files a new run starts with besides ``config.yaml`` (none by default)."""
        return None

    def begin_run(self, run: RunDir, output: Output) -> None:
        """Before the first epoch this process runs (log what runs where)."""
        return None

    def end_run(self) -> None:
        """After the epochs, also when they failed (close what :meth:`begin_run` opened)."""
        return None

    @abstractmethod
    def begin_epoch(self) -> int:
        """Prepare the current epoch (from step ``self.step``); return its number of steps."""

    @abstractmethod
    def train_step(self) -> tuple[torch.Tensor, int]:
        """One step: a vector of values to sum over the epoch (the loss first, times the
        batch's samples), and the batch's number of samples."""

    @abstractmethod
    def end_epoch(self, clock: EpochClock, steps: int) -> dict[str, Any]:
        """After the epoch's ``steps`` (losses checked): evaluate; return the epoch's record."""

    def epoch_done(self, run: RunDir, record: dict[str, Any]) -> None:
        """The epoch is counted, before its checkpoint is written (e.g. keep the best model)."""
        return None

    def report_epoch(self, record: dict[str, Any], log: Callable[[str], None]) -> None:
        """After the epoch's checkpoint and metrics are written: its log line."""
        return None

    @abstractmethod
    def watched(self) -> list[torch.Tensor]:
        """The state that must stay finite (weights, buffers, architecture parameters)."""

    @abstractmethod
    def state_dict(self, seconds: float, cpu_seconds: float) -> dict[str, Any]:
        """What the checkpoint holds, ``seconds`` and ``cpu_seconds`` into the current epoch."""

    @abstractmethod
    def load_state_dict(self, checkpoint: Mapping[str, Any]) -> None:
        """Undo :meth:`state_dict` (``KeyError``, ``ValueError``, ...: the file is damaged)."""

    @abstractmethod
    def finish(self, run: RunDir, output: Output) -> Any:
        """After the last epoch: write the final files; the run's result."""

    # -- position and checkpoints ---------------------------------------------------------------
    def restore(self, checkpoint: Mapping[str, Any]) -> None:
        """Continue from a checkpoint of :meth:`state_dict`."""
        try:
            self.load_state_dict(checkpoint)
        except (KeyError, TypeError, RuntimeError, ValueError) as err:
            raise CheckpointError(f"{self.checkpoint_path} is incomplete or damaged ({err}); "
                                  f"start {self.what} again with --overwrite") from None
        self.saved_at = (self.epoch, self.step)

    def restore_position(self, epoch: int, step: int, partial: Mapping[str, Any] | None) -> None:
        """Position ``(epoch, step)`` with the epoch's ``partial`` sums and times (None: at the
        start of an epoch)."""
        self.epoch, self.step = epoch, step
        self.sums = EpochSums.restored(partial, self.device)
        self.seconds = (partial or {}).get("seconds", 0.0)
        self.cpu_seconds = (partial or {}).get("cpu_seconds", 0.0)

    @property
    def checkpoint_path(self) -> Path:
        return Path(self.config.out) / self.checkpoint_name

    def kept(self) -> str:
        """What the run directory still holds, as a failure message ends."""
        return last_good_state(self.checkpoint_path, self.saved_at)

    def check_finite(self) -> None:
        """Raise :class:`~nasp.errors.NonFiniteError` unless the losses so far and
        :meth:`watched` are all finite (host syncs: call only where the loop syncs anyway)."""
        check_finite(self.sums, self.watched(), epoch=self.epoch, step=self.step,
                     steps=len(self.train_batches), run=self.what, loss=self.loss_name,
                     state=self.state_name, kept=self.kept(), advice=self.advice)

    def checkpoint(self, run: RunDir, seconds: float, cpu_seconds: float, *,
                   check: bool = True) -> None:
        """Write the checkpoint atomically (after :meth:`check_finite` unless ``check`` is
        False: the caller has just checked)."""
        if check:
            self.check_finite()
        run.save_torch(self.checkpoint_name, self.state_dict(seconds, cpu_seconds))
        self.saved_at = (self.epoch, self.step)

    # -- the loop ---------------------------------------------------------------------------
    def run(self, run: RunDir, output: Output) -> Any:
        """The epochs from the current position to ``config.epochs``, then :meth:`finish`."""
        config = self.config
        sizes = {"batch_size": config.batch_size, "channels": config.channels,
                 "layers": config.layers}
        try:
            self.begin_run(run, output)
            try:
                with run_failures(self.what, self.kept, sizes, self.device):
                    while self.epoch < config.epochs:
                        self.run_epoch(run, output)
            finally:
                self.end_run()
            return self.finish(run, output)
        except KeyboardInterrupt:
            raise self.interrupted() from None

    def interrupted(self) -> RunInterrupted:
        """What Ctrl-C raises: the error saying what the last checkpoint keeps."""
        out = str(self.config.out)
        if self.saved_at is None:
            return RunInterrupted(f"{self.what} was interrupted before its first checkpoint, so "
                                  f"{out} holds nothing to resume from", out, None, None)
        epoch, step = self.saved_at
        where = f"the end of epoch {epoch}" if step == 0 else f"epoch {epoch + 1}, step {step}"
        return RunInterrupted(f"{self.what} was interrupted; {self.checkpoint_path} keeps it as "
                              f"of {where}", out, str(self.checkpoint_path), self.saved_at)

    def time_left(self) -> float | None:
        """Seconds the epochs still to run will take at the mean time of the last (up to three)
        epochs; None before the first epoch ends."""
        times = [r["seconds"] for r in self.history[-3:] if r.get("seconds") is not None]
        if not times:
            return None
        return (self.config.epochs - self.epoch) * sum(times) / len(times)

    def progress_bar(self, output: Output, steps: int) -> tqdm | None:
        """The progress bar of the whole run (``epochs x steps`` steps, from the current
        position, so that its rate and remaining time are the run's); made at the first epoch
        this process runs, None when none is drawn or the epochs run no steps."""
        if not output.shows_progress or steps == 0:
            return None
        if self.bar is None:
            self.bar = tqdm(total=self.config.epochs * steps,
                            initial=self.epoch * steps + self.step, leave=False, unit="step",
                            dynamic_ncols=True)
        self.bar.set_description(f"epoch {self.epoch + 1}/{self.config.epochs}", refresh=False)
        return self.bar

    def close_bar(self) -> None:
        """Take the progress bar off the screen (after the last epoch, or on a failure)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def run_epoch(self, run: RunDir, output: Output) -> dict[str, Any]:
        """Run the rest of the current epoch (from ``self.step``), end it, write the checkpoint
        and the metrics; return the epoch's record."""
        try:
            record = self._run_epoch(run, output)
        except BaseException:
            self.close_bar()
            raise
        if self.epoch >= self.config.epochs:
            self.close_bar()
        if output.quiet:
            self.report_epoch(record, distributed.silent)
        else:
            with tqdm.external_write_mode():  # the bar is cleared, the line written, the bar
                self.report_epoch(record, output.log)  # drawn again below it
        return record

    def _run_epoch(self, run: RunDir, output: Output) -> dict[str, Any]:
        config = self.config
        clock = EpochClock(self.seconds, self.cpu_seconds)
        steps = self.begin_epoch()
        every = config.checkpoint_every
        bar = self.progress_bar(output, steps)
        while self.step < steps:
            values, n = self.train_step()
            self.sums.add(values, n)
            self.step += 1
            if bar is not None:
                bar.update(1)
                if self.step % 10 == 1:
                    sums = self.sums.sums.tolist()
                    if not all(math.isfinite(v) for v in sums):
                        self.check_finite()
                    bar.set_postfix(loss=f"{sums[0] / self.sums.seen:.3f}")
            if every and (self.epoch * steps + self.step) % every == 0 and self.step < steps:
                self.checkpoint(run, clock.seconds(), clock.cpu_seconds())
        self.check_finite()
        record = self.end_epoch(clock, steps)
        self.history.append(record)
        self.epoch, self.step, self.sums = self.epoch + 1, 0, EpochSums()
        self.seconds = self.cpu_seconds = 0.0
        self.epoch_done(run, record)
        self.checkpoint(run, 0.0, 0.0, check=False)
        run.log_metrics(record)
        return record
