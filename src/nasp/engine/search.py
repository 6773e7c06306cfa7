"""The search loop: epochs of strategy steps, evaluation of the discrete child, run files.

Data: the training split of the data set (or its ``subset``) is cut in two halves as in DARTS:
the first trains the network weights, the second the architecture (and evaluates the current
child after each epoch). Unlike DARTS's first and second 25,000 CIFAR-10 images, the halves are a
seeded, class-stratified sample (:func:`~nasp.data.search_split` with ``config.seed``): each holds
every class in proportion whatever the order of the images, and the same seed gives every
strategy, every torchrun rank and a resumed run the same halves.
Both halves stay on the compute device; augmentation runs there per batch. Each half is read
through one persistent, resumable :class:`~nasp.data.batches.BatchStream`; both draw from one CPU
generator seeded with ``config.seed``.

Checkpoints. ``checkpoint.pt`` is written atomically at the end of every epoch and, with
``checkpoint_every = N > 0``, after every N-th step (counted over the whole run). It holds the
strategy (network weights, architecture parameters, both optimisers, the lr schedule), every
random state (:func:`~nasp.engine.session.rng_state`), the position in the epoch (both batch
streams and the epoch's partial sums) and the metrics so far. :func:`resume_search` continues
from it exactly: the resumed run ends with the same architecture parameters, bit for bit on the
same hardware and software, as the uninterrupted run (on the CPU always; on CUDA with
``deterministic``). A checkpoint is never written while a loss, weight or architecture parameter
is NaN or infinite: the run stops with :class:`~nasp.engine.session.NonFiniteError` instead.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from nasp.config import SearchConfig
from nasp.data import Batches, ImageDataset, load_dataset, search_split
from nasp.engine.checkpoints import load_checkpoint_file
from nasp.engine.diagnostics import Diagnostics, format_diagnostics
from nasp.engine.pictures import write_pictures
from nasp.engine.session import (
    EpochSums,
    check_finite,
    deterministic_mode,
    environment,
    evaluate_classifier,
    last_good_state,
    restore_rng_state,
    resumed_config,
    rng_state,
    run_failures,
    seed_everything,
    use_deterministic_modules,
)
from nasp.errors import CheckpointError, DatasetError
from nasp.runtime import distributed
from nasp.runtime.device import resolve_memory_format
from nasp.runtime.runs import RunDir, default_run_dir
from nasp.spaces import Genotype, benchmark_note, benchmark_record, build_space
from nasp.strategies import Strategy, build_strategy

__all__ = ["CHECKPOINT", "SearchResult", "read_search_checkpoint", "resume_search", "search"]

CHECKPOINT = "checkpoint.pt"
#: Version of the checkpoint layout; 2 = exact resume (random states and position in the epoch).
CHECKPOINT_FORMAT = 2


@dataclass
class SearchResult:
    genotype: Genotype
    run_dir: Path
    history: list[dict] = field(default_factory=list)
    strategy: Strategy | None = None


def search(config: SearchConfig, *, overwrite: bool = False, progress: bool = True,
           plots: bool = True, log: Callable[[str], None] = print) -> SearchResult:
    """Run a whole search as ``config`` says; write the run directory; return the genotype.

    Under torchrun, data-parallel over the processes (:mod:`nasp.runtime.distributed`): only rank 0
    writes the run directory and prints; every rank returns the same result."""
    dist = distributed.setup(config)  # torchrun: process group, this rank's device
    device = dist.device
    if not dist.is_main:  # distributed: only rank 0 prints and draws
        log, progress, plots = distributed.silent, False, False
    data = distributed.local_first(load_dataset, config.dataset, config.data_dir, "train")
    out = Path(config.out) if config.out else default_run_dir("search", config.dataset,
                                                               config.strategy)
    out = distributed.from_rank0(out)
    config = config.replace(out=str(out))
    with deterministic_mode(config.deterministic, device):
        session = _SearchSession(config, data, device)
        run = distributed.run_dir(out, overwrite=overwrite)
        run.write_text("config.yaml", config.to_yaml())
        run.append_json_list("environment.json",
                             environment(device, config.deterministic, "start"))
        result = session.run(run, progress=progress, plots=plots, log=log)
    distributed.teardown(dist)
    return result


def resume_search(run_dir: str | Path, *, progress: bool = True, plots: bool = True,
                  log: Callable[[str], None] = print, **changes: Any) -> SearchResult:
    """Continue the search in ``run_dir`` from its ``checkpoint.pt``, exactly as if it had never
    stopped.

    The saved configuration is used. ``changes`` may set the options of
    :data:`~nasp.engine.session.RESUME_MAY_CHANGE` (device, data_dir, checkpoint_every, ...); any
    other option given (not None) must equal its saved value, else
    :class:`~nasp.config.ConfigError` says what differs. A finished run only gets its final
    files (``arch.pt``, ``genotype.json``, pictures) written again.
    """
    run_dir = Path(run_dir)
    checkpoint = read_search_checkpoint(run_dir)
    saved = SearchConfig.from_dict(checkpoint["config"],
                                   f"the configuration in {run_dir / CHECKPOINT}")
    config = resumed_config(saved, changes, run_dir)
    dist = distributed.setup(config)  # torchrun: process group, this rank's device
    device = dist.device
    if not dist.is_main:  # distributed: only rank 0 prints and draws
        log, progress, plots = distributed.silent, False, False
    data = distributed.local_first(load_dataset, config.dataset, config.data_dir, "train")
    with deterministic_mode(config.deterministic, device):
        session = _SearchSession(config, data, device)
        session.restore(checkpoint)
        run = distributed.run_dir(run_dir, resume=True)
        run.rewrite_metrics(session.history)
        run.append_json_list("environment.json",
                             environment(device, config.deterministic, "resume"))
        log(f"resuming {run_dir} at epoch {session.epoch + 1}, step {session.step} of "
            f"{len(session.train_batches)}")
        result = session.run(run, progress=progress, plots=plots, log=log)
    distributed.teardown(dist)
    return result


def read_search_checkpoint(run_dir: str | Path) -> dict[str, Any]:
    """The contents of ``run_dir/checkpoint.pt``; :class:`~nasp.errors.CheckpointError` saying what
    to do when it is missing, unreadable, or not an exactly resumable search checkpoint."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"--resume: {run_dir} holds no {CHECKPOINT} to continue from (the "
                              f"run stopped before its first checkpoint, or it is not a search "
                              f"run directory); start the search again, with --overwrite to "
                              f"replace what is there")
    data = load_checkpoint_file(path, "start the search again with --overwrite")
    if not isinstance(data, dict) or "strategy" not in data:
        raise CheckpointError(f"{path} is not a search checkpoint; pass the directory of a "
                              f"nasp search run to --resume")
    if data.get("format", 1) < CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} was written by an older nasp without the random states "
                              f"needed to continue exactly; start the search again with "
                              f"--overwrite")
    return data


class _SearchSession:
    """The state of one search: supernet, strategy, batch streams, position, metrics."""

    def __init__(self, config: SearchConfig, data: ImageDataset, device: torch.device):
        seed_everything(config.seed)
        self.config = config
        self.device = device
        self.data = data
        self.space = build_space(config.space, config.primitives)
        self.bench = (None if config.benchmark is None else  # the space's benchmark look-up
                      self.space.open_benchmark(config.benchmark, config.benchmark_column,
                                                config.dataset))
        train_half, val_half = search_split(data, config.subset, config.seed)
        memory_format = resolve_memory_format(config.memory_format, device)
        self.net = self.space.build_supernet(data.in_channels, data.num_classes, config.layers,
                                             config.channels).to(device,
                                                                 memory_format=memory_format)
        self.net = distributed.convert_batchnorm(self.net, config.sync_bn)
        if config.deterministic and device.type == "cuda":
            use_deterministic_modules(self.net)
        self.strategy = build_strategy(config.strategy, self.space, self.net, config)
        self.generator = torch.Generator().manual_seed(config.seed)
        channels_last = memory_format == torch.channels_last
        self.train_batches = Batches(train_half, config.batch_size, device=device, augment=True,
                                     cutout=config.cutout, generator=self.generator,
                                     channels_last=channels_last, shard=distributed.shard())
        self.train_stream = self.train_batches.forever()
        self.val_stream = Batches(val_half, config.batch_size, device=device, augment=True,
                                  cutout=config.cutout, generator=self.generator,
                                  channels_last=channels_last,
                                  shard=distributed.shard()).forever()
        self.eval_batches = Batches(distributed.part(val_half), 2 * config.batch_size,
                                    device=device, shuffle=False, channels_last=channels_last)
        self.strategy.set_evaluator(self._evaluate)
        # collapse diagnostics on one fixed validation batch (nasp.engine.diagnostics)
        # (the same batch on every rank, so that every rank measures the same numbers)
        first = Batches(val_half.take(slice(0, config.batch_size)), config.batch_size,
                        device=device, shuffle=False, channels_last=channels_last)
        self.diagnostics = Diagnostics(self.space, self.net, next(iter(first))[0],
                                       self.strategy.arch)
        self.epoch = 0          # epochs completed
        self.step = 0           # steps of the current epoch completed
        self.sums = EpochSums()
        self.seconds = 0.0      # time spent in the current epoch before this session
        self.cpu_seconds = 0.0  # process CPU time of the same
        self.history: list[dict[str, Any]] = []
        self.saved_at: tuple[int, int] | None = None  # (epoch, step) of the last checkpoint

    def _evaluate(self, plans) -> dict[str, float]:
        """Loss and accuracy of the supernet at discrete ``plans`` on the validation half."""
        return evaluate_classifier(self.net, self.eval_batches,
                                   forward=lambda x: self.net(x, plans))

    def _cells(self) -> dict[str, dict[str, Any]]:
        """The strategy's candidate cells (:meth:`Strategy.cells`), each with its benchmark
        accuracy when a table is given; empty for a strategy that has none."""
        return {name: {"genotype": g.to_dict(), **benchmark_record(self.bench, g)}
                for name, g in self.strategy.cells().items()}

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self, seconds: float, cpu_seconds: float) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT, "epoch": self.epoch, "step": self.step,
            "config": self.config.to_dict(), "strategy": self.strategy.state_dict(),
            "rng": rng_state(self.device, self.generator),
            "data": {"images": len(self.data), "shape": list(self.data.images.shape[1:]),
                     "train": self.train_stream.state_dict(),
                     "val": self.val_stream.state_dict()},
            "partial": {**self.sums.state_dict(), "seconds": seconds,
                        "cpu_seconds": cpu_seconds},
            "diagnostics": self.diagnostics.previous,
            "history": self.history,
        }

    def restore(self, checkpoint: dict[str, Any]) -> None:
        """Continue from a checkpoint of :meth:`state_dict`."""
        path = Path(self.config.out) / CHECKPOINT
        saved = checkpoint.get("data", {})
        if (saved.get("images"), saved.get("shape")) != (len(self.data),
                                                         list(self.data.images.shape[1:])):
            raise DatasetError(f"the data at hand ({len(self.data)} images of "
                               f"{tuple(self.data.images.shape[1:])}) is not the data {path} was "
                               f"searched on ({saved.get('images')} images of "
                               f"{tuple(saved.get('shape') or ())}); point --data-dir at the same "
                               f"data set")
        try:
            self.strategy.load_state_dict(checkpoint["strategy"])
            self.train_stream.load_state_dict(saved["train"])
            self.val_stream.load_state_dict(saved["val"])
            restore_rng_state(checkpoint["rng"], self.device, self.generator)
            self.epoch, self.step = checkpoint["epoch"], checkpoint["step"]
            self.sums = EpochSums.restored(checkpoint["partial"], self.device)
            self.seconds = checkpoint["partial"]["seconds"]
            self.cpu_seconds = checkpoint["partial"]["cpu_seconds"]
            self.diagnostics.previous = {t: tuple(s)
                                         for t, s in checkpoint["diagnostics"].items()}
            self.history = list(checkpoint["history"])
        except (KeyError, TypeError, RuntimeError, ValueError) as err:
            raise CheckpointError(f"{path} is incomplete or damaged ({err}); start the search "
                                  f"again with --overwrite") from None
        self.saved_at = (self.epoch, self.step)

    def _kept(self) -> str:
        return last_good_state(Path(self.config.out) / CHECKPOINT, self.saved_at)

    def _check_finite(self) -> None:
        """Raise :class:`NonFiniteError` unless the losses so far, the weights, the buffers and
        the architecture parameters are all finite (host syncs: call only where the loop syncs
        anyway)."""
        check_finite(self.sums, [*self.net.parameters(), *self.net.buffers(),
                                 *self.strategy.arch.values()],
                     epoch=self.epoch, step=self.step, steps=len(self.train_batches),
                     run="the search", loss="a loss",
                     state="the weights or architecture parameters", kept=self._kept(),
                     advice="Lower the learning rates (w_lr, a_lr in a --config file), use "
                            "--precision fp32, or try another --seed.")

    def _checkpoint(self, run: RunDir, seconds: float, cpu_seconds: float,
                    checked: bool = False) -> None:
        if not checked:
            self._check_finite()
        run.save_torch(CHECKPOINT, self.state_dict(seconds, cpu_seconds))
        self.saved_at = (self.epoch, self.step)

    # -- the loop ----------------------------------------------------------------------------
    def run(self, run: RunDir, *, progress: bool, plots: bool,
            log: Callable[[str], None]) -> SearchResult:
        config, data = self.config, self.data
        log(f"searching {config.strategy} on {config.dataset} "
            f"({len(self.train_batches.dataset)} + {len(self.eval_batches.dataset)} images, "
            f"{tuple(data.images.shape[1:])}) with {config.layers} cells, C {config.channels}, "
            f"primitives {config.primitives}, on {self.device}; run directory {run.path}")
        sizes = {"batch_size": config.batch_size, "channels": config.channels,
                 "layers": config.layers}
        with run_failures("the search", self._kept, sizes, self.device):
            while self.epoch < config.epochs:
                record = self._epoch(run, progress)
                log(_epoch_line(record, config.epochs, self.strategy.epoch_summary(),
                                self.strategy.genotype(), benchmark_note(self.bench, record)))
        genotype = self.strategy.genotype()
        run.save_torch("arch.pt", {t: a.detach().cpu() for t, a in self.strategy.arch.items()})
        run.write_text("genotype.json", genotype.to_json() + "\n")
        cells = self._cells()
        if cells:
            run.write_text("genotypes.json", json.dumps(cells, indent=2) + "\n")
        if plots:
            write_pictures(run.path, log)
        log(f"genotype: {genotype}"
            f"{benchmark_note(self.bench, benchmark_record(self.bench, genotype))}")
        log(f"run directory: {run.path} (config.yaml, environment.json, metrics.jsonl, "
            f"{CHECKPOINT}, arch.pt, genotype.json)")
        return SearchResult(genotype, run.path, list(self.history), self.strategy)

    def _epoch(self, run: RunDir, progress: bool) -> dict[str, Any]:
        """Run the rest of the current epoch (from ``self.step``), evaluate the child, write the
        metrics and the checkpoint; return the epoch's record."""
        config, strategy = self.config, self.strategy
        started = time.perf_counter() - self.seconds
        cpu_started = time.process_time() - self.cpu_seconds
        if self.step == 0:
            strategy.begin_epoch(self.epoch)
        lr = strategy.lr
        # a strategy that does not train (random search by table look-up) runs no steps
        steps = len(self.train_batches) if strategy.trains else 0
        every = config.checkpoint_every
        bar = tqdm(total=steps, initial=self.step, desc=f"epoch {self.epoch + 1}/{config.epochs}",
                   leave=False, disable=not progress, unit="step", dynamic_ncols=True)
        while self.step < steps:
            train = next(self.train_stream)
            m = strategy.step(train, next(self.val_stream))
            self.sums.add(torch.stack([m["train_loss"] * len(train[1]),
                                       m["train_correct"].to(m["train_loss"].dtype),
                                       m["arch_loss"]]), len(train[1]))
            self.step += 1
            bar.update(1)
            if progress and self.step % 10 == 1:
                sums = self.sums.sums.tolist()
                if not all(math.isfinite(v) for v in sums):
                    self._check_finite()
                bar.set_postfix(loss=f"{sums[0] / self.sums.seen:.3f}")
            if every and (self.epoch * steps + self.step) % every == 0 and self.step < steps:
                self._checkpoint(run, time.perf_counter() - started,
                                 time.process_time() - cpu_started)
        bar.close()
        self._check_finite()
        train_loss = train_acc = arch_loss = child_loss = child_acc = None
        if steps:
            train_loss, train_acc, arch_loss = self.sums.means([self.sums.seen, self.sums.seen,
                                                                 steps])
        strategy.end_epoch()
        if strategy.trains:
            child = self._evaluate(strategy.child_plans())
            child_loss, child_acc = child["loss"], child["top1"]
            strategy.child_evaluated(child)
        genotype = strategy.genotype()
        record = {
            "epoch": self.epoch + 1, "lr": lr, "train_loss": train_loss, "train_acc": train_acc,
            "arch_loss": arch_loss, "child_val_loss": child_loss, "child_val_acc": child_acc,
            "seconds": time.perf_counter() - started,
            "cpu_seconds": time.process_time() - cpu_started, "genotype": genotype.to_dict(),
            "arch": {t: a.detach().cpu().tolist() for t, a in strategy.arch.items()},
            "diagnostics": self.diagnostics.measure(strategy.arch, genotype),
            **strategy.epoch_metrics(), **benchmark_record(self.bench, genotype),
        }
        cells = self._cells()
        if cells:
            record["cells"] = cells
        self.history.append(record)
        self.epoch, self.step, self.sums = self.epoch + 1, 0, EpochSums()
        self.seconds = self.cpu_seconds = 0.0
        self._checkpoint(run, 0.0, 0.0, checked=True)
        run.log_metrics(record)
        return record


def _epoch_line(record: dict, epochs: int, note: str, genotype: Genotype,
                bench_note: str = "") -> str:
    """The log line of one epoch (losses and accuracies a strategy did not measure: ``-``)."""

    def num(key: str, scale: float = 1.0, digits: int = 3) -> str:
        value = record[key]
        return "-" if value is None else f"{scale * value:.{digits}f}"

    return (f"epoch {record['epoch']}/{epochs}  train loss {num('train_loss')} acc "
            f"{num('train_acc', 100, 1)}%  arch loss {num('arch_loss')}  child val loss "
            f"{num('child_val_loss')} acc {num('child_val_acc', 100, 1)}%  lr "
            f"{record['lr']:.4f}  {record['seconds']:.1f}s{bench_note}  "
            f"{format_diagnostics(record['diagnostics'])}  "
            f"{note + '  ' if note else ''}{genotype.compact()}")
