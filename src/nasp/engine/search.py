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

Measures. After each epoch the child of :meth:`Strategy.child_plans` is evaluated on the
validation half with the weights and BatchNorm statistics the search has (``child_val_loss``,
``child_val_acc``): the validation accuracy NASP and random search report (``val_measure`` is
``"child"``). A strategy whose paper reports its supernet (DARTS: ``val_measure = "supernet"``)
also gets the supernet at :meth:`Strategy.supernet_plans` evaluated (``supernet_val_*``) and its
derived child measured as it should be: with BatchNorm statistics recomputed on the first
:data:`BATCHNORM_IMAGES` training images (:func:`batchnorm_recomputed`; ``child_bn_val_*``).
These evaluations draw no random number and leave every weight and buffer as it was, so a search
ends bit for bit alike with or without them. What the console shows:
:mod:`nasp.engine.search_console`.

Checkpoints. ``checkpoint.pt`` is written atomically at the end of every epoch and, with
``checkpoint_every = N > 0``, after every N-th step (counted over the whole run). It holds the
strategy (network weights, architecture parameters, both optimisers, the lr schedule), every
random state (:func:`~nasp.engine.reproducibility.rng_state`), the position in the epoch (both batch
streams and the epoch's partial sums) and the metrics so far. :func:`resume_search` continues
from it exactly: the resumed run ends with the same architecture parameters, bit for bit on the
same hardware and software, as the uninterrupted run (on the CPU always; on CUDA with
``deterministic``). A checkpoint is never written while a loss, weight or architecture parameter
is NaN or infinite: the run stops with :class:`~nasp.errors.NonFiniteError` instead. The life
cycle (start, epochs, checkpoints, resume, failures) is the run engine's,
:class:`~nasp.engine.session.RunSession`; this module says what a search step, epoch and
checkpoint are.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nasp.config import SearchConfig
from nasp.data import Batches, ImageDataset, is_text_dataset, load_dataset, search_split
from nasp.engine.checkpoints import load_checkpoint_file
from nasp.engine.diagnostics import Diagnostics
from nasp.engine.pictures import write_pictures
from nasp.engine.report import write_report
from nasp.engine.reproducibility import (
    restore_rng_state,
    resumed_config,
    rng_state,
    use_deterministic_modules,
)
from nasp.engine.search_console import (
    cell_line,
    check_budget,
    epoch_line,
    evaluation_size,
    legend,
    summary,
)
from nasp.engine.session import EpochClock, Output, RunSession
from nasp.errors import CheckpointError, DatasetError
from nasp.runtime import distributed
from nasp.runtime.batchnorm import convert_batchnorm
from nasp.runtime.device import resolve_memory_format
from nasp.runtime.runs import RunDir
from nasp.spaces import Genotype, benchmark_record, build_space, open_benchmark
from nasp.strategies import Strategy, build_strategy
from nasp.tasks import build_task

__all__ = ["CHECKPOINT", "SearchResult", "read_search_checkpoint", "resume_search", "search"]

CHECKPOINT = "checkpoint.pt"
#: Version of the checkpoint layout; 2 = exact resume (random states and position in the epoch).
CHECKPOINT_FORMAT = 2
#: Training images the BatchNorm statistics of a child are recomputed on before it is measured
#: on the supernet's weights (a strategy with ``val_measure = "supernet"``: DARTS).
BATCHNORM_IMAGES = 2048


@dataclass
class SearchResult:
    genotype: Genotype
    run_dir: Path
    history: list[dict] = field(default_factory=list)
    strategy: Strategy | None = None
    #: parameters and FLOPs of the cell's evaluation network (:func:`evaluation_size`)
    evaluation: dict[str, Any] = field(default_factory=dict)


def search(config: SearchConfig, *, overwrite: bool = False, progress: bool = True,
           plots: bool = True, log: Callable[[str], None] = print,
           quiet: bool = False) -> SearchResult:
    """Run a whole search as ``config`` says; write the run directory; return the genotype.

    ``log`` gets the lines it prints (:mod:`nasp.engine.search_console`); with ``quiet`` only
    the summary at the end (no per-epoch lines, no progress bar). Under torchrun, data-parallel
    over the processes (:mod:`nasp.runtime.distributed`): only rank 0 writes the run directory
    and prints; every rank returns the same result."""
    return session_class(config).start(config, label=config.strategy, overwrite=overwrite,
                                       output=Output(log, progress, plots, quiet=quiet))


def resume_search(run_dir: str | Path, *, progress: bool = True, plots: bool = True,
                  log: Callable[[str], None] = print, quiet: bool = False,
                  **changes: Any) -> SearchResult:
    """Continue the search in ``run_dir`` from its ``checkpoint.pt``, exactly as if it had never
    stopped.

    The saved configuration is used. ``changes`` may set the options of
    :data:`~nasp.engine.reproducibility.RESUME_MAY_CHANGE` (device, data_dir, checkpoint_every,
    ...); any other option given (not None) must equal its saved value, else
    :class:`~nasp.config.ConfigError` says what differs. A finished run only gets its final
    files (``arch.pt``, ``genotype.json``, pictures) written again.
    """
    run_dir = Path(run_dir)
    checkpoint = read_search_checkpoint(run_dir)
    saved = SearchConfig.from_dict(checkpoint["config"],
                                   f"the configuration in {run_dir / CHECKPOINT}")
    config = resumed_config(saved, changes, run_dir)
    return session_class(config).resume(run_dir, config, checkpoint,
                                        output=Output(log, progress, plots, quiet=quiet))


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


def _load_data(config: SearchConfig) -> ImageDataset:
    return load_dataset(config.dataset, config.data_dir, "train")


@contextmanager
def batchnorm_recomputed(net: nn.Module, forward: Callable[[torch.Tensor], Any],
                         batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> Iterator[None]:
    """Within the block, ``net``'s BatchNorm running statistics are those of ``forward`` (the
    network as it is measured, e.g. a child on the supernet) on ``batches``: reset, then the
    plain average over the batches (momentum None), computed without gradients in training
    mode. On exit every buffer, momentum and the training mode are as before, bit for bit; no
    random number is drawn, so the search goes on as if nothing had happened."""
    norms = [m for m in net.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = {name: b.clone() for name, b in net.named_buffers()}
    momenta = [m.momentum for m in norms]
    was_training = net.training
    try:
        with torch.no_grad():
            for m in norms:
                m.reset_running_stats()
                m.momentum = None
            net.train()
            for x, _ in batches:
                forward(x)
        net.eval()
        yield
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        with torch.no_grad():
            for name, b in net.named_buffers():
                b.copy_(saved[name])
        net.train(was_training)


class _SearchSession(RunSession):
    """The state of one search: supernet, strategy, batch streams, position, metrics."""

    kind, what, checkpoint_name = "search", "the search", CHECKPOINT
    loss_name, state_name = "a loss", "the weights or architecture parameters"
    advice = ("Lower the learning rates (w_lr, a_lr in a --config file), use --precision fp32, "
              "or try another --seed.")

    def __init__(self, config: SearchConfig, data: ImageDataset, device: torch.device):
        super().__init__(config, device)
        self.data = data
        self.space = build_space(config.space, config.primitives)
        self.bench = open_benchmark(config, self.space)  # the space's look-up, or None
        train_half, val_half = search_split(data, config.subset, config.seed)
        memory_format = resolve_memory_format(config.memory_format, device)
        self.net = self.space.build_supernet(data.in_channels, data.num_classes, config.layers,
                                             config.channels).to(device,
                                                                 memory_format=memory_format)
        self.net = convert_batchnorm(self.net, config.sync_bn)
        if config.deterministic and device.type == "cuda":
            use_deterministic_modules(self.net)
        self.task = build_task("classification")
        self.strategy = build_strategy(config.strategy, self.space, self.net, config,
                                       task=self.task)
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
        self.lr = 0.0  # the weights' lr of the current epoch
        # the child of a strategy that reports its supernet (DARTS) is measured with BatchNorm
        # statistics recomputed on the first training images (a fixed order, no augmentation,
        # a generator of its own: nothing the search draws)
        self.batchnorm_batches = None if self.strategy.val_measure != "supernet" else Batches(
            train_half.take(slice(0, BATCHNORM_IMAGES)), config.batch_size, device=device,
            shuffle=False, generator=torch.Generator(), channels_last=channels_last)
        # the cell before the first step, against which the first epoch counts changed edges
        self.start_genotype = self.strategy.genotype()
        self.cell_shown = False  # whether this process has printed the cell yet

    load_data = staticmethod(_load_data)

    @classmethod
    def check_data(cls, data: ImageDataset, checkpoint: Mapping[str, Any], run_dir: Path) -> None:
        saved = checkpoint.get("data", {})
        if (saved.get("images"), saved.get("shape")) != (len(data), list(data.images.shape[1:])):
            raise DatasetError(f"the data at hand ({len(data)} images of "
                               f"{tuple(data.images.shape[1:])}) is not the data "
                               f"{run_dir / CHECKPOINT} was searched on ({saved.get('images')} "
                               f"images of {tuple(saved.get('shape') or ())}); point --data-dir "
                               f"at the same data set")

    def _evaluate(self, plans) -> dict[str, float]:
        """Loss and accuracy of the supernet at discrete ``plans`` on the validation half."""
        return self.task.evaluate(self.net, self.eval_batches,
                                  forward=lambda x: self.net(x, plans))

    def _evaluate_supernet(self) -> dict[str, float | None]:
        """For a strategy that reports its supernet (``val_measure = "supernet"``): the
        supernet at :meth:`Strategy.supernet_plans` on the validation half, and the child of
        :meth:`Strategy.child_plans` with its BatchNorm statistics recomputed
        (:func:`batchnorm_recomputed`); the record's ``supernet_val_*`` and ``child_bn_val_*``.
        """
        supernet = self._evaluate(self.strategy.supernet_plans())
        plans = self.strategy.child_plans()
        with batchnorm_recomputed(self.net, lambda x: self.net(x, plans),
                                  self.batchnorm_batches):
            child = self._evaluate(plans)
        return {"supernet_val_loss": supernet["loss"], "supernet_val_acc": supernet["top1"],
                "child_bn_val_loss": child["loss"], "child_bn_val_acc": child["top1"]}

    def _changed_edges(self, genotype: Genotype) -> int:
        """Edges whose op (or whether they are kept) differs between ``genotype`` and the cell
        of the last epoch (of the start, in the first epoch)."""
        before = (self.space.genotype_type.from_dict(self.history[-1]["genotype"])
                  if self.history else self.start_genotype)
        a, b = self.space.selection_of(before), self.space.selection_of(genotype)
        return sum(x != y for t in b for x, y in zip(a[t], b[t]))

    def _cells(self) -> dict[str, dict[str, Any]]:
        """The strategy's candidate cells (:meth:`Strategy.cells`), each with its benchmark
        accuracy when a table is given; empty for a strategy that has none."""
        return {name: {"genotype": g.to_dict(), **benchmark_record(self.bench, g)}
                for name, g in self.strategy.cells().items()}

    # -- what the data is (the text search, nasp.engine.search_text, says its own) -----------
    def data_record(self) -> dict[str, Any]:
        """What the checkpoint notes of the data, for :meth:`check_data`."""
        return {"images": len(self.data), "shape": list(self.data.images.shape[1:])}

    def data_shape(self) -> tuple[tuple[int, ...], int]:
        """``(input shape, classes)`` of the data, for the summary."""
        return tuple(self.data.images.shape[1:]), self.data.num_classes

    def evaluation_size(self, genotype: Genotype) -> dict[str, Any]:
        """Parameters and FLOPs of the cell's evaluation network (:func:`evaluation_size`)."""
        return evaluation_size(self.space, genotype, *self.data_shape())

    # -- the end of the run (a search on a user's model, nasp.engine.model_search, adds its own)
    #: the summary's last line (the command that goes on); None: the summary's own
    next_line: str | None = None

    def write_results(self, run: RunDir, genotype: Genotype) -> None:
        """Files of the result besides ``arch.pt``, ``genotype.json`` and ``genotypes.json``."""

    # -- checkpoints -------------------------------------------------------------------------
    def watched(self) -> list[torch.Tensor]:
        return [*self.net.parameters(), *self.net.buffers(), *self.strategy.arch.values()]

    def state_dict(self, seconds: float, cpu_seconds: float) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT, "epoch": self.epoch, "step": self.step,
            "config": self.config.to_dict(), "strategy": self.strategy.state_dict(),
            "rng": rng_state(self.device, self.generator),
            "data": {**self.data_record(), "train": self.train_stream.state_dict(),
                     "val": self.val_stream.state_dict()},
            "partial": {**self.sums.state_dict(), "seconds": seconds,
                        "cpu_seconds": cpu_seconds},
            "diagnostics": self.diagnostics.previous,
            "history": self.history,
        }

    def load_state_dict(self, checkpoint: Mapping[str, Any]) -> None:
        self.strategy.load_state_dict(checkpoint["strategy"])
        self.train_stream.load_state_dict(checkpoint["data"]["train"])
        self.val_stream.load_state_dict(checkpoint["data"]["val"])
        restore_rng_state(checkpoint["rng"], self.device, self.generator)
        self.restore_position(checkpoint["epoch"], checkpoint["step"], checkpoint["partial"])
        self.diagnostics.previous = {t: tuple(s) for t, s in checkpoint["diagnostics"].items()}
        self.history = list(checkpoint["history"])

    # -- the epochs --------------------------------------------------------------------------
    def begin_run(self, run: RunDir, output: Output) -> None:
        config, data = self.config, self.data
        output.say(f"searching {config.strategy} on {config.dataset} "
                   f"({len(self.train_batches.dataset)} + {len(self.eval_batches.dataset)} "
                   f"images, {tuple(data.images.shape[1:])}) with {config.layers} cells, "
                   f"C {config.channels}, primitives {config.primitives}, on {self.device}; "
                   f"run directory {run.path}")
        bn_images = 0 if self.batchnorm_batches is None else len(self.batchnorm_batches.dataset)
        for line in legend(self.strategy, self.bench, len(self.eval_batches.dataset), bn_images):
            output.say(line)

    def begin_epoch(self) -> int:
        if self.step == 0:
            self.strategy.begin_epoch(self.epoch)
        self.lr = self.strategy.lr
        # a strategy that does not train (random search by table look-up) runs no steps
        return len(self.train_batches) if self.strategy.trains else 0

    def train_step(self) -> tuple[torch.Tensor, int]:
        train = next(self.train_stream)
        m = self.strategy.step(train, next(self.val_stream))
        return torch.stack([m["train_loss"] * len(train[1]),
                            m["train_correct"].to(m["train_loss"].dtype),
                            m["arch_loss"]]), len(train[1])

    def end_epoch(self, clock: EpochClock, steps: int) -> dict[str, Any]:
        """Evaluate the child; the epoch's record."""
        strategy = self.strategy
        train_loss = train_acc = arch_loss = child_loss = child_acc = None
        if steps:
            train_loss, train_acc, arch_loss = self.sums.means([self.sums.seen, self.sums.seen,
                                                                 steps])
        strategy.end_epoch()
        measured: dict[str, Any] = {"val_measure": None}
        if strategy.trains:
            # the child as the strategy runs it (for DARTS, on the supernet's weights and
            # BatchNorm statistics: kept in child_val_* as before, not shown)
            child = self._evaluate(strategy.child_plans())
            child_loss, child_acc = child["loss"], child["top1"]
            strategy.child_evaluated(child)
            measured["val_measure"] = strategy.val_measure
            if strategy.val_measure == "supernet":
                measured.update(self._evaluate_supernet())
        genotype = strategy.genotype()
        record = {
            "epoch": self.epoch + 1, "lr": self.lr, "train_loss": train_loss,
            "train_acc": train_acc, "arch_loss": arch_loss, "child_val_loss": child_loss,
            "child_val_acc": child_acc, **measured,
            "cell_changed_edges": self._changed_edges(genotype), "seconds": clock.seconds(),
            "cpu_seconds": clock.cpu_seconds(), "genotype": genotype.to_dict(),
            "arch": {t: a.detach().cpu().tolist() for t, a in strategy.arch.items()},
            "diagnostics": self.diagnostics.measure(strategy.arch, genotype),
            **strategy.epoch_metrics(), **benchmark_record(self.bench, genotype),
            **strategy.budget_record(genotype),
        }
        cells = self._cells()
        if cells:
            record["cells"] = cells
        return record

    def report_epoch(self, record: dict[str, Any], log: Callable[[str], None]) -> None:
        log(epoch_line(record, self.config.epochs, self.task, self.strategy.epoch_summary(),
                       self.time_left()))
        if record["cell_changed_edges"] or not self.cell_shown:  # the cell when it changed
            log(cell_line(self.space.genotype_type.from_dict(record["genotype"])))
            self.cell_shown = True

    def finish(self, run: RunDir, output: Output) -> SearchResult:
        genotype = self.strategy.genotype()
        run.save_torch("arch.pt", {t: a.detach().cpu() for t, a in self.strategy.arch.items()})
        run.write_text("genotype.json", genotype.to_json() + "\n")
        cells = self._cells()
        if cells:
            run.write_text("genotypes.json", json.dumps(cells, indent=2) + "\n")
        self.write_results(run, genotype)
        if output.plots:
            write_pictures(run.path, output.say)
            write_report(run.path, output.say)
        shape, classes = self.data_shape()
        size = {}
        if distributed.is_main():
            try:
                size = self.evaluation_size(genotype)
            except (RuntimeError, ValueError, TypeError, NotImplementedError) as err:
                # the search's files are written: a size that cannot be counted is a line
                output.log(f"the cell's evaluation network was not counted: {err}")
        budget = self.strategy.budget_record(genotype).get("budget")
        if budget is not None and distributed.is_main():
            check_budget(budget, size)  # a cell over its budget is a bug: raises
        files = sorted(p.name for p in run.path.iterdir() if p.is_file()) \
            if distributed.is_main() else []
        lines = summary(self.history, genotype, self.bench, size or None, shape, classes,
                        run.path, files, self.task, budget)
        if self.next_line:
            lines[-1] = self.next_line
        for line in lines:
            output.log(line)
        return SearchResult(genotype, run.path, list(self.history), self.strategy, size)


#: The search session of each kind of data: ``"image"`` here; ``"text"`` (a text corpus,
#: :func:`~nasp.data.is_text_dataset`) is added by :mod:`nasp.engine.search_text`.
SESSIONS: dict[str, type[_SearchSession]] = {"image": _SearchSession}


def session_class(config: SearchConfig) -> type[_SearchSession]:
    """The session that searches on ``config.dataset``'s kind of data."""
    return SESSIONS["text" if is_text_dataset(config.dataset) else "image"]
