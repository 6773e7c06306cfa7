"""Train a genotype's evaluation network from scratch, as the DARTS and NASP papers do.

Data (:func:`validation_split`): the training split of the data set (if ``subset`` is given, a
seeded, class-stratified sample of that many images drawn with ``config.seed``, which holds every
class in proportion whatever the order of the images) less a validation split of ``val_fraction``
of those images (class-stratified, drawn with ``config.seed`` too) trains the network, augmented
on the device (random crop, flip where sensible, cutout). After every epoch the validation split
and the test split are evaluated; the validation accuracy alone chooses ``best.pt``, the test
split only measures. With ``val_fraction = 0`` every training image trains, as before the option
existed (the same images in the same order, so the same weights), and there is no ``best.pt``.
Per epoch ``e = 0 .. epochs - 1``:

- drop-path probability ``p_e = drop_path * e / epochs`` (DARTS' linear ramp: 0 in the first
  epoch, never quite ``drop_path``);
- for each mini-batch, loss ``CE(logits, y) + auxiliary_weight * CE(aux_logits, y)`` (both with
  ``label_smoothing``; the task's objective, :func:`task_of`), one SGD step (momentum, weight
  decay) after clipping the gradient norm to ``grad_clip``;
- the lr schedule steps once (cosine from ``lr`` to ``lr_min``, or times ``lr_gamma``).

Run directory: ``config.yaml``, ``environment.json``, ``genotype.json``, ``metrics.jsonl`` (one
object per epoch), ``last.pt`` (model, optimiser, schedule, every random state, the position in
the epoch and the metrics so far: a resumed run continues exactly as an uninterrupted one would)
written atomically at the end of every epoch and, with ``checkpoint_every = N > 0``, after every
N-th step, ``best.pt`` (the model of the epoch with the best validation accuracy, ties going to
the lower validation loss, then to the earlier epoch; written only with a validation split), and
pictures at the end. A mid-epoch ``last.pt`` has ``step > 0``: its ``epoch`` counts the
completed epochs. As in the search, no checkpoint is written while a loss or weight is NaN or
infinite (:class:`~nasp.errors.NonFiniteError`), and running out of memory is a
:class:`~nasp.errors.NotEnoughMemoryError` that suggests a smaller batch. The life cycle is the
run engine's (:class:`~nasp.engine.session.RunSession`); this module says what a training step,
epoch and checkpoint are. A recurrent cell on a text corpus (``--dataset ptb``) trains as DARTS's
language model: :mod:`nasp.engine.train_text`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nasp.config import TrainConfig
from nasp.core.measure import flop_count, parameter_count
from nasp.data import (
    Batches,
    ImageDataset,
    is_text_dataset,
    load_dataset,
    stratified_split,
    subset_of,
)
from nasp.engine.checkpoints import (
    BEST,
    CHECKPOINT_KIND,
    LAST,
    DataShape,
    build_network,
    load_trained,
    read_checkpoint,
    saved_config,
)
from nasp.engine.pictures import write_pictures
from nasp.engine.report import write_report
from nasp.engine.reproducibility import (
    restore_rng_state,
    resumed_config,
    rng_state,
    use_deterministic_modules,
)
from nasp.engine.session import EpochClock, Output, RunSession
from nasp.engine.tensorboard import open_logger
from nasp.engine.train_console import count_si, duration, epoch_line, pct
from nasp.engine.train_text import (
    TextTrainSession,
    evaluate_text_checkpoint,
    is_text_checkpoint,
)
from nasp.errors import CheckpointError, ConfigError, DatasetError
from nasp.runtime import distributed
from nasp.runtime.batchnorm import convert_batchnorm
from nasp.runtime.device import autocast, resolve_device, resolve_memory_format, resolve_precision
from nasp.runtime.runs import RunDir
from nasp.spaces import (
    Genotype,
    builtin_genotypes,
    genotype_from_dict,
    is_genotype,
    resolve_genotype,
    space_of,
)
from nasp.tasks import Task, build_task

__all__ = ["TrainResult", "epoch_line", "evaluate_checkpoint", "resume", "task_of", "train",
           "validation_split"]


@dataclass
class TrainResult:
    """A finished training: ``net`` is the last epoch's model (``last.pt``), ``history`` the
    per-epoch records of ``metrics.jsonl``, ``best`` the epoch ``best.pt`` holds (``epoch``,
    ``val_acc``, ``val_loss``, ``test_acc``), None without a validation split."""

    run_dir: Path
    genotype: Genotype
    config: TrainConfig
    net: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None


def task_of(config: TrainConfig) -> Task:
    """The task training optimises: cross-entropy with ``label_smoothing``, plus
    ``auxiliary_weight`` times that of the auxiliary head (see
    :meth:`~nasp.tasks.classification.ClassificationTask.objective`)."""
    return build_task("classification", label_smoothing=config.label_smoothing,
                      auxiliary_weight=config.auxiliary_weight)


@torch.no_grad()
def evaluate_checkpoint(path: str | Path, dataset: str | None = None,
                        data_dir: str | Path | None = None, device: str = "auto",
                        batch_size: int = 256) -> dict[str, Any]:
    """Loss, top-1 and top-5 accuracy of a trained checkpoint on a data set's test split.

    ``dataset`` defaults to the one the checkpoint was trained on (and ``data_dir`` to the
    directory it was read from); its images must have the trained shape and class count.
    """
    if _is_text_checkpoint(path):  # a language model: validation and test perplexity
        return evaluate_text_checkpoint(path, data_dir, device)
    device = resolve_device(device)
    trained = load_trained(path, device)
    dataset = dataset or trained.config.dataset
    if data_dir is None and dataset == trained.config.dataset:
        data_dir = trained.config.data_dir
    test_set = load_dataset(dataset, data_dir, "test")
    if DataShape.of(test_set) != trained.shape:
        raise DatasetError(f"{dataset} has {DataShape.of(test_set).input_shape} images in "
                           f"{test_set.num_classes} classes, but {trained.path} was trained on "
                           f"{trained.shape.input_shape} images in {trained.shape.num_classes} "
                           f"classes; test it on data of that shape")
    batches = Batches(test_set, batch_size, device=device, shuffle=False)
    return {**task_of(trained.config).evaluate(trained.net, batches), "images": len(test_set),
            "dataset": test_set.name, "epoch": trained.epoch, "checkpoint": str(trained.path)}


def train(genotype: Genotype | str, config: TrainConfig, *, overwrite: bool = False,
          progress: bool = True, tensorboard: bool = False, plots: bool = True,
          log: Callable[[str], None] = print, quiet: bool = False) -> TrainResult:
    """Train ``genotype`` (a :class:`Genotype` or anything :func:`resolve_genotype` takes) from
    scratch as ``config`` says; write the run directory ``config.out`` (default
    ``runs/train-...``) and return the trained network and the per-epoch metrics."""
    named = isinstance(genotype, str) and genotype.strip().upper() in builtin_genotypes()
    label = genotype.strip().upper() if named else "cell"
    genotype = _as_genotype(genotype)
    if (not is_text_dataset(config.dataset)
            and getattr(space_of(genotype), "data_kind", "image") == "text"):
        raise ConfigError(f"the cell is a recurrent cell (of the {space_of(genotype).name} "
                          f"space), and --dataset {config.dataset} holds images: train it on a "
                          f"text corpus, e.g. --preset ptb-cpu or --preset ptb-paper")
    if is_text_dataset(config.dataset):  # a recurrent cell's language model
        return TrainResult(*TextTrainSession.start(
            config, label=label, overwrite=overwrite, genotype=genotype,
            output=Output(log, progress, plots, quiet=quiet)))
    return _TrainSession.start(config, label=label, overwrite=overwrite,
                               output=Output(log, progress, plots, tensorboard, quiet),
                               genotype=genotype)


def resume(run_dir: str | Path, *, genotype: Genotype | str | None = None,
           progress: bool = True, tensorboard: bool = False, plots: bool = True,
           log: Callable[[str], None] = print, quiet: bool = False,
           **changes: Any) -> TrainResult:
    """Continue the run in ``run_dir`` from its ``last.pt``, exactly as if never interrupted.

    The saved configuration and genotype are used. ``changes`` may set the options of
    :data:`~nasp.engine.reproducibility.RESUME_MAY_CHANGE` (move the run to another ``device``
    or ``data_dir``, change ``checkpoint_every``, ...); any other option given (not None) must
    equal the saved value, as must ``genotype`` if given, else :class:`ConfigError` says what
    differs.
    """
    run_dir = Path(run_dir)
    if not (run_dir / LAST).is_file():
        raise CheckpointError(f"--resume: {run_dir} holds no {LAST} to continue from; start the "
                              f"run without --resume (add --overwrite to replace what is there)")
    path, checkpoint = read_checkpoint(run_dir / LAST)
    config = saved_config(checkpoint["config"], f"the configuration in {path}")
    saved = genotype_from_dict(checkpoint["genotype"])
    differ = []
    if genotype is not None:
        genotype = _as_genotype(genotype)
        if genotype != saved:
            differ.append(f"the genotype ({genotype.compact()}; saved: {saved.compact()})")
    config = resumed_config(config, changes, run_dir, differ)
    if is_text_dataset(config.dataset):
        return TrainResult(*TextTrainSession.resume(
            run_dir, config, checkpoint, genotype=saved,
            output=Output(log, progress, plots, quiet=quiet)))
    return _TrainSession.resume(run_dir, config, checkpoint,
                                output=Output(log, progress, plots, tensorboard, quiet),
                                genotype=saved)


def _is_text_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` (a checkpoint or a run directory) holds a language model."""
    return is_text_checkpoint(read_checkpoint(path)[1])


def _as_genotype(genotype: Genotype | str) -> Genotype:
    """A genotype object (of any space) as it is; anything else through
    :func:`resolve_genotype`."""
    if is_genotype(genotype):
        return genotype
    return resolve_genotype(genotype)


def validation_split(ds: ImageDataset, subset: int | None, fraction: float, seed: int,
                     ) -> tuple[ImageDataset, ImageDataset | None]:
    """``(training images, validation images)`` of the training split ``ds``.

    Of ``n`` images (``subset``, or all of ``ds`` if None), ``fraction * n`` rounded (halves up;
    at least 1) are held out for validation and the rest train: the two parts of
    :func:`~nasp.data.stratified_split` ``(ds, [n_val, n - n_val], seed)``, so both hold every
    class in proportion, they are disjoint, and the same ``ds``, ``subset``, ``fraction`` and
    ``seed`` give the same parts in every process and every resumed run. ``fraction = 0``:
    ``(subset_of(ds, subset, seed), None)``, the training images of a run without the option.

    Raises :class:`DatasetError` when ``subset`` exceeds ``ds`` or no training image is left.
    """
    if not fraction:
        return subset_of(ds, subset, seed), None
    n = len(ds) if subset is None else subset
    n_val = max(1, int(fraction * n + 0.5))
    if n_val >= n:
        raise DatasetError(f"--val-fraction {fraction} of {n} training images leaves none to "
                           f"train on; use a smaller --val-fraction (0 = no validation split) or "
                           f"more images")
    val_set, train_set = stratified_split(ds, [n_val, n - n_val], seed)
    return train_set, val_set


def _load_data(config: TrainConfig) -> tuple[ImageDataset, ImageDataset | None, ImageDataset]:
    """``(training, validation or None, test)`` images of ``config``."""
    train_set = load_dataset(config.dataset, config.data_dir, "train")
    test_set = load_dataset(config.dataset, config.data_dir, "test")
    return (*validation_split(train_set, config.subset, config.val_fraction, config.seed),
            test_set)


class _TrainSession(RunSession):
    """The state of one training run: network, optimiser, schedule, batches, metrics."""

    kind, what, checkpoint_name = "train", "training", LAST
    loss_name, state_name = "the loss", "the weights"
    advice = "Lower --lr, use --precision fp32, or try another --seed."

    def __init__(self, config: TrainConfig,
                 data: tuple[ImageDataset, ImageDataset | None, ImageDataset],
                 device: torch.device, genotype: Genotype):
        super().__init__(config, device)
        self.genotype = genotype
        self.train_set, self.val_set, self.test_set = data
        self.shape = DataShape.of(self.train_set)
        self.task = task_of(config)
        memory_format = resolve_memory_format(config.memory_format, device)
        self.precision = resolve_precision(config.precision, device)
        self.net = build_network(genotype, config, self.shape).to(device,
                                                                  memory_format=memory_format)
        if config.deterministic and device.type == "cuda":
            use_deterministic_modules(self.net)
        self.net = convert_batchnorm(self.net, config.sync_bn)
        self.model = distributed.data_parallel(self.net)  # DDP under torchrun, else self.net
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=config.lr,
                                         momentum=config.momentum,
                                         weight_decay=config.weight_decay)
        if config.lr_schedule == "cosine":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                self.optimizer, T_max=config.epochs, eta_min=config.lr_min)
        else:
            self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer,
                                                                    config.lr_gamma)
        self.generator = torch.Generator().manual_seed(config.seed)
        channels_last = memory_format == torch.channels_last
        self.train_batches = Batches(self.train_set, config.batch_size, device=device,
                                     augment=True, cutout=config.cutout,
                                     generator=self.generator, channels_last=channels_last,
                                     shard=distributed.shard())
        self.train_stream = self.train_batches.forever()
        self.test_batches = Batches(distributed.part(self.test_set), 2 * config.batch_size,
                                    device=device, shuffle=False, channels_last=channels_last)
        self.val_batches = None if self.val_set is None else Batches(
            distributed.part(self.val_set), 2 * config.batch_size, device=device, shuffle=False,
            channels_last=channels_last)
        # the epoch best.pt holds (epoch 0: none yet); an older nasp's last.pt holds
        # {"epoch", "test_acc"} instead, kept as it is (it has no validation split)
        self.best: dict[str, Any] = {"epoch": 0, "val_acc": -1.0, "val_loss": math.inf,
                                     "test_acc": None}
        self.lr = 0.0  # the lr of the current epoch
        self.logger = None

    load_data = staticmethod(_load_data)

    @classmethod
    def check_data(cls, data: tuple[ImageDataset, ImageDataset | None, ImageDataset],
                   checkpoint: Mapping[str, Any], run_dir: Path) -> None:
        saved_shape = DataShape.from_record(checkpoint["data"])
        if DataShape.of(data[0]) != saved_shape:
            raise DatasetError(f"the data at hand ({DataShape.of(data[0])}) does not match the "
                               f"data {run_dir} was trained on ({saved_shape}); point --data-dir "
                               f"at the same data set")

    def write_inputs(self, run: RunDir) -> None:
        run.write_text("genotype.json", self.genotype.to_json() + "\n")

    # -- checkpoints -------------------------------------------------------------------------
    def watched(self) -> list[torch.Tensor]:
        return [*self.net.parameters(), *self.net.buffers()]

    def _model_state(self) -> dict[str, Any]:
        return {
            "kind": CHECKPOINT_KIND, "epoch": self.epoch, "step": self.step,
            "config": self.config.to_dict(),
            "genotype": self.genotype.to_dict(), "model": self.net.state_dict(),
            "data": {"dataset": self.train_set.name, "in_channels": self.shape.in_channels,
                     "image_size": list(self.shape.image_size),
                     "num_classes": self.shape.num_classes,
                     "classes": list(self.train_set.classes),
                     "mean": list(self.train_set.mean), "std": list(self.train_set.std)},
        }

    def state_dict(self, seconds: float, cpu_seconds: float) -> dict[str, Any]:
        return {**self._model_state(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": rng_state(self.device, self.generator),
                "data_order": self.train_stream.state_dict(),
                "partial": {**self.sums.state_dict(), "seconds": seconds},
                "history": self.history, "best": self.best}

    def load_state_dict(self, checkpoint: Mapping[str, Any]) -> None:
        """Weights, optimiser, schedule, random streams, position in the epoch, metrics. (A
        ``last.pt`` of an older nasp, written at an epoch's end without the position, continues
        at the next epoch just as exactly.)"""
        self.net.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        restore_rng_state(checkpoint["rng"], self.device, self.generator)
        if "data_order" in checkpoint:
            self.train_stream.load_state_dict(checkpoint["data_order"])
        self.restore_position(checkpoint["epoch"], checkpoint.get("step", 0),
                              checkpoint.get("partial"))
        self.history = list(checkpoint["history"])
        self.best = dict(checkpoint["best"])

    # -- the epochs --------------------------------------------------------------------------
    def begin_run(self, run: RunDir, output: Output) -> None:
        config = self.config
        self.logger = open_logger(run.file("tensorboard"), output.tensorboard)
        distributed.decorrelate_global_rng()  # torchrun: own drop-path masks per rank
        output.say(f"training {self.genotype.compact()}")
        if self.val_set is None:
            images = f"{len(self.train_set)} training images (no validation split)"
        else:
            images = (f"{len(self.train_set)} training + {len(self.val_set)} validation images "
                      f"(seed {config.seed})")
        output.say(f"data: {config.dataset}, {images}, {len(self.test_set)} test images of "
                   f"{'x'.join(map(str, self.shape.input_shape))}")
        output.say(f"network: {config.network}, {config.layers} cells, C {config.channels}, "
                   f"{parameter_count(self.net) / 1e6:.2f}M parameters, on {self.device}; "
                   f"run directory {run.path}")

    def end_run(self) -> None:
        self.logger.close()

    def begin_epoch(self) -> int:
        self.net.drop_path_prob = self.config.drop_path * self.epoch / self.config.epochs
        self.lr = self.optimizer.param_groups[0]["lr"]
        self.net.train()
        return len(self.train_batches)

    def train_step(self) -> tuple[torch.Tensor, int]:
        x, y = next(self.train_stream)
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.precision):
            total, loss, logits = self.task.objective(self.model(x), y)
        total.backward()
        if self.config.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.net.parameters(), self.config.grad_clip)
        self.optimizer.step()
        return torch.stack([loss.detach().float() * len(y),
                            self.task.correct(logits, y).float()]), len(y)

    def end_epoch(self, clock: EpochClock, steps: int) -> dict[str, Any]:
        """Step the schedule, validate and test; the epoch's record (``val_*`` keys only with a
        validation split)."""
        train_loss, train_acc = self.sums.means([self.sums.seen, self.sums.seen])
        self.scheduler.step()
        record = {"epoch": self.epoch + 1, "lr": self.lr, "drop_path": self.net.drop_path_prob,
                  "train_loss": train_loss, "train_acc": train_acc}
        if self.val_batches is not None:
            val = self.task.evaluate(self.net, self.val_batches)
            record.update(val_loss=val["loss"], val_acc=val["top1"], val_top5=val["top5"])
        test = self.task.evaluate(self.net, self.test_batches)
        record.update(test_loss=test["loss"], test_acc=test["top1"], test_top5=test["top5"])
        record["seconds"] = clock.seconds()
        return record

    def epoch_done(self, run: RunDir, record: dict[str, Any]) -> None:
        """Write best.pt if this epoch has the best validation accuracy so far (ties: the lower
        validation loss; then the earlier epoch). The test accuracy chooses nothing."""
        if "val_acc" not in record:
            return
        best = (self.best.get("val_acc", -1.0), -self.best.get("val_loss", math.inf))
        if (record["val_acc"], -record["val_loss"]) > best:
            self.best = {"epoch": self.epoch, "val_acc": record["val_acc"],
                         "val_loss": record["val_loss"], "test_acc": record["test_acc"]}
            run.save_torch(BEST, {**self._model_state(), "best": dict(self.best)})

    def report_epoch(self, record: dict[str, Any], log: Callable[[str], None]) -> None:
        scalars = {"loss/train": record["train_loss"], "accuracy/train": record["train_acc"],
                   "loss/test": record["test_loss"], "accuracy/test": record["test_acc"],
                   "accuracy/test_top5": record["test_top5"], "lr": record["lr"],
                   "drop_path": record["drop_path"]}
        if "val_acc" in record:
            scalars.update({"loss/val": record["val_loss"], "accuracy/val": record["val_acc"],
                            "accuracy/val_top5": record["val_top5"]})
        self.logger.scalars(scalars, self.epoch)
        seconds = [r["seconds"] for r in self.history]
        left = sum(seconds) / len(seconds) * (self.config.epochs - self.epoch)
        log(epoch_line(record, self.config.epochs, best=self.best["epoch"] == record["epoch"],
                       left=left))

    def finish(self, run: RunDir, output: Output) -> TrainResult:
        chosen = None if self.val_set is None else dict(self.best)
        if self.history:
            for line in self._summary(run):
                output.log(line)
        if output.plots:
            write_pictures(run.path, output.say)
            write_report(run.path, output.say)
        files = ["config.yaml", "genotype.json", "metrics.jsonl", LAST]
        files += [BEST] if run.file(BEST).is_file() else []
        output.log(f"run directory: {run.path} ({', '.join(files)})")
        return TrainResult(run.path, self.genotype, self.config, self.net, list(self.history),
                           chosen)

    def _summary(self, run: RunDir) -> list[str]:
        """The closing lines: time, size, the last model and the chosen one."""
        last = self.history[-1]
        seconds = sum(r["seconds"] for r in self.history)
        shape = "x".join(map(str, self.shape.input_shape))
        lines = [f"done: {last['epoch']} epochs in {duration(seconds)}; "
                 f"{parameter_count(self.net) / 1e6:.2f}M parameters, "
                 f"{count_si(flop_count(self.net, self.shape.input_shape))} FLOPs per {shape} "
                 f"image"]
        val = f", val acc {pct(last['val_acc'])}" if "val_acc" in last else ""
        lines.append(f"{LAST} (the last epoch, {last['epoch']}): test accuracy "
                     f"{pct(last['test_acc'])}{val}")
        best = self.best
        if self.val_set is not None:
            lines.append(f"{BEST} (epoch {best['epoch']}, the best val acc "
                         f"{pct(best['val_acc'])}): test accuracy {pct(best['test_acc'])}")
        elif run.file(BEST).is_file() and best.get("test_acc") is not None:
            lines.append(f"{BEST} (epoch {best['epoch']}) was chosen by its test accuracy by an "
                         f"older nasp, so its {pct(best['test_acc'])} is optimistic")
        else:
            lines.append(f"no {BEST}: --val-fraction 0 holds out no validation images to choose "
                         f"an epoch by")
        return lines
