"""Train a genotype's evaluation network from scratch, as the DARTS and NASP papers do.

Data: the training split of the data set (if ``subset`` is given, a seeded, class-stratified
sample of that many images, :func:`~nasp.data.subset_of` with ``config.seed``, which holds every
class in proportion whatever the order of the images) trains the network, augmented on the
device (random crop, flip where sensible, cutout); the test split is evaluated after every epoch.
Per epoch ``e = 0 .. epochs - 1``:

- drop-path probability ``p_e = drop_path * e / epochs`` (DARTS' linear ramp: 0 in the first
  epoch, never quite ``drop_path``);
- for each mini-batch, loss ``CE(logits, y) + auxiliary_weight * CE(aux_logits, y)`` (both with
  ``label_smoothing``), one SGD step (momentum, weight decay) after clipping the gradient norm to
  ``grad_clip``;
- the lr schedule steps once (cosine from ``lr`` to ``lr_min``, or times ``lr_gamma``).

Run directory: ``config.yaml``, ``environment.json``, ``genotype.json``, ``metrics.jsonl`` (one
object per epoch), ``last.pt`` (model, optimiser, schedule, every random state, the position in
the epoch and the metrics so far: a resumed run continues exactly as an uninterrupted one would)
written atomically at the end of every epoch and, with ``checkpoint_every = N > 0``, after every
N-th step, ``best.pt`` (the model of the epoch with the best test accuracy), and pictures at the
end. A mid-epoch ``last.pt`` has ``step > 0``: its ``epoch`` counts the completed epochs. As in
the search, no checkpoint is written while a loss or weight is NaN or infinite
(:class:`~nasp.engine.session.NonFiniteError`), and running out of memory is a
:class:`~nasp.engine.session.NotEnoughMemoryError` that suggests a smaller batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from nasp.config import TrainConfig
from nasp.core.measure import parameter_count
from nasp.data import Batches, ImageDataset, load_dataset, subset_of
from nasp.engine.checkpoints import (
    BEST,
    CHECKPOINT_KIND,
    LAST,
    DataShape,
    build_network,
    load_trained,
    read_checkpoint,
)
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
from nasp.engine.tensorboard import open_logger
from nasp.errors import CheckpointError, DatasetError
from nasp.runtime import distributed
from nasp.runtime.device import autocast, resolve_device, resolve_memory_format, resolve_precision
from nasp.runtime.runs import RunDir, default_run_dir
from nasp.spaces import (
    Genotype,
    builtin_genotypes,
    genotype_from_dict,
    is_genotype,
    resolve_genotype,
)

__all__ = [
    "TrainResult", "evaluate_checkpoint", "objective", "resume", "train",
]


@dataclass
class TrainResult:
    run_dir: Path
    genotype: Genotype
    config: TrainConfig
    net: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)


def objective(out: torch.Tensor | tuple[torch.Tensor, torch.Tensor], y: torch.Tensor,
              config: TrainConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(total, main loss, logits)`` of a network output: ``logits`` or ``(logits, aux)``.

    ``main = CE_eps(logits, y)`` and ``total = main + auxiliary_weight * CE_eps(aux, y)``, where
    ``CE_eps`` is the cross-entropy against labels smoothed by ``eps = label_smoothing``
    (target ``(1 - eps) * onehot(y) + eps / classes``).
    """
    logits, aux_logits = out if isinstance(out, tuple) else (out, None)
    loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
    if aux_logits is None:
        return loss, loss, logits
    aux_loss = F.cross_entropy(aux_logits, y, label_smoothing=config.label_smoothing)
    return loss + config.auxiliary_weight * aux_loss, loss, logits


@torch.no_grad()
def evaluate_checkpoint(path: str | Path, dataset: str | None = None,
                        data_dir: str | Path | None = None, device: str = "auto",
                        batch_size: int = 256) -> dict[str, Any]:
    """Loss, top-1 and top-5 accuracy of a trained checkpoint on a data set's test split.

    ``dataset`` defaults to the one the checkpoint was trained on (and ``data_dir`` to the
    directory it was read from); its images must have the trained shape and class count.
    """
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
    return {**evaluate_classifier(trained.net, batches), "images": len(test_set),
            "dataset": test_set.name, "epoch": trained.epoch, "checkpoint": str(trained.path)}


def train(genotype: Genotype | str, config: TrainConfig, *, overwrite: bool = False,
          progress: bool = True, tensorboard: bool = False, plots: bool = True,
          log: Callable[[str], None] = print) -> TrainResult:
    """Train ``genotype`` (a :class:`Genotype` or anything :func:`resolve_genotype` takes) from
    scratch as ``config`` says; write the run directory ``config.out`` (default
    ``runs/train-...``) and return the trained network and the per-epoch metrics."""
    named = isinstance(genotype, str) and genotype.strip().upper() in builtin_genotypes()
    label = genotype.strip().upper() if named else "cell"
    genotype = _as_genotype(genotype)
    dist = distributed.setup(config)  # torchrun: process group, this rank's device
    device = dist.device
    if not dist.is_main:  # distributed: only rank 0 prints, draws and logs
        log, progress, tensorboard, plots = distributed.silent, False, False, False
    seed_everything(config.seed)
    train_set, test_set = distributed.local_first(_load_data, config)
    out = Path(config.out) if config.out else default_run_dir("train", config.dataset, label)
    out = distributed.from_rank0(out)
    config = config.replace(out=str(out))
    with deterministic_mode(config.deterministic, device):
        session = _Session(genotype, config, train_set, test_set, device)
        run = distributed.run_dir(out, overwrite=overwrite)
        run.write_text("config.yaml", config.to_yaml())
        run.write_text("genotype.json", genotype.to_json() + "\n")
        run.append_json_list("environment.json",
                             environment(device, config.deterministic, "start"))
        result = session.run(run, progress=progress, tensorboard=tensorboard, plots=plots,
                             log=log)
    distributed.teardown(dist)
    return result


def resume(run_dir: str | Path, *, genotype: Genotype | str | None = None,
           progress: bool = True, tensorboard: bool = False, plots: bool = True,
           log: Callable[[str], None] = print, **changes: Any) -> TrainResult:
    """Continue the run in ``run_dir`` from its ``last.pt``, exactly as if never interrupted.

    The saved configuration and genotype are used. ``changes`` may set the options of
    :data:`~nasp.engine.session.RESUME_MAY_CHANGE` (move the run to another ``device`` or
    ``data_dir``, change ``checkpoint_every``, ...); any other option given (not None) must equal
    the saved value, as must ``genotype`` if given, else :class:`ConfigError` says what differs.
    """
    run_dir = Path(run_dir)
    if not (run_dir / LAST).is_file():
        raise CheckpointError(f"--resume: {run_dir} holds no {LAST} to continue from; start the "
                              f"run without --resume (add --overwrite to replace what is there)")
    path, checkpoint = read_checkpoint(run_dir / LAST)
    config = TrainConfig.from_dict(checkpoint["config"], f"the configuration in {path}")
    saved = genotype_from_dict(checkpoint["genotype"])
    differ = []
    if genotype is not None:
        genotype = _as_genotype(genotype)
        if genotype != saved:
            differ.append(f"the genotype ({genotype.compact()}; saved: {saved.compact()})")
    config = resumed_config(config, changes, run_dir, differ)
    dist = distributed.setup(config)  # torchrun: process group, this rank's device
    device = dist.device
    if not dist.is_main:  # distributed: only rank 0 prints, draws and logs
        log, progress, tensorboard, plots = distributed.silent, False, False, False
    train_set, test_set = distributed.local_first(_load_data, config)
    saved_shape = DataShape.from_record(checkpoint["data"])
    if DataShape.of(train_set) != saved_shape:
        raise DatasetError(f"the data at hand ({DataShape.of(train_set)}) does not match the data "
                           f"{run_dir} was trained on ({saved_shape}); point --data-dir at the "
                           f"same data set")
    with deterministic_mode(config.deterministic, device):
        session = _Session(saved, config, train_set, test_set, device)
        session.restore(checkpoint)
        run = distributed.run_dir(run_dir, resume=True)
        run.rewrite_metrics(session.history)
        run.append_json_list("environment.json",
                             environment(device, config.deterministic, "resume"))
        log(f"resuming {run_dir} at epoch {session.epoch + 1} of {config.epochs}, step "
            f"{session.step} of {len(session.train_batches)}")
        result = session.run(run, progress=progress, tensorboard=tensorboard, plots=plots,
                             log=log)
    distributed.teardown(dist)
    return result


def _as_genotype(genotype: Genotype | str) -> Genotype:
    """A genotype object (of any space) as it is; anything else through
    :func:`resolve_genotype`."""
    if is_genotype(genotype):
        return genotype
    return resolve_genotype(genotype)


def _load_data(config: TrainConfig) -> tuple[ImageDataset, ImageDataset]:
    train_set = load_dataset(config.dataset, config.data_dir, "train")
    test_set = load_dataset(config.dataset, config.data_dir, "test")
    return subset_of(train_set, config.subset, config.seed), test_set


class _Session:
    """The state of one training run: network, optimiser, schedule, batches, metrics."""

    def __init__(self, genotype: Genotype, config: TrainConfig, train_set: ImageDataset,
                 test_set: ImageDataset, device: torch.device):
        self.genotype = genotype
        self.config = config
        self.device = device
        self.train_set = train_set
        self.test_set = test_set
        self.shape = DataShape.of(train_set)
        memory_format = resolve_memory_format(config.memory_format, device)
        self.precision = resolve_precision(config.precision, device)
        self.net = build_network(genotype, config, self.shape).to(device,
                                                                  memory_format=memory_format)
        if config.deterministic and device.type == "cuda":
            use_deterministic_modules(self.net)
        self.net = distributed.convert_batchnorm(self.net, config.sync_bn)
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
        self.train_batches = Batches(train_set, config.batch_size, device=device, augment=True,
                                     cutout=config.cutout, generator=self.generator,
                                     channels_last=channels_last, shard=distributed.shard())
        self.train_stream = self.train_batches.forever()
        self.test_batches = Batches(distributed.part(test_set), 2 * config.batch_size,
                                    device=device, shuffle=False, channels_last=channels_last)
        self.epoch = 0          # epochs completed
        self.step = 0           # steps of the current epoch completed
        self.sums = EpochSums()
        self.seconds = 0.0      # time spent in the current epoch before this session
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {"epoch": 0, "test_acc": -1.0}
        self.saved_at: tuple[int, int] | None = None  # (epoch, step) of the last last.pt

    # -- checkpoints -------------------------------------------------------------------------
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

    def _full_state(self, seconds: float) -> dict[str, Any]:
        return {**self._model_state(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": rng_state(self.device, self.generator),
                "data_order": self.train_stream.state_dict(),
                "partial": {**self.sums.state_dict(), "seconds": seconds},
                "history": self.history, "best": self.best}

    def restore(self, checkpoint: dict[str, Any]) -> None:
        """Continue from a ``last.pt``: weights, optimiser, schedule, random streams, position
        in the epoch, metrics. (A ``last.pt`` of an older nasp, written at an epoch's end
        without the position, continues at the next epoch just as exactly.)"""
        try:
            self.net.load_state_dict(checkpoint["model"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            self.scheduler.load_state_dict(checkpoint["scheduler"])
            restore_rng_state(checkpoint["rng"], self.device, self.generator)
            if "data_order" in checkpoint:
                self.train_stream.load_state_dict(checkpoint["data_order"])
            self.epoch, self.step = checkpoint["epoch"], checkpoint.get("step", 0)
            self.sums = EpochSums.restored(checkpoint.get("partial"), self.device)
            self.seconds = checkpoint.get("partial", {}).get("seconds", 0.0)
            self.history = list(checkpoint["history"])
            self.best = dict(checkpoint["best"])
        except (KeyError, TypeError, RuntimeError, ValueError) as err:
            raise CheckpointError(f"the {LAST} to resume from is incomplete or damaged ({err}); "
                                  f"start the run again with --overwrite") from None
        self.saved_at = (self.epoch, self.step)

    def _kept(self) -> str:
        return last_good_state(Path(self.config.out) / LAST, self.saved_at)

    def _check_finite(self) -> None:
        """Raise :class:`NonFiniteError` unless the losses so far and the network's weights and
        buffers are finite (host syncs: only where the loop syncs anyway)."""
        check_finite(self.sums, [*self.net.parameters(), *self.net.buffers()],
                     epoch=self.epoch, step=self.step, steps=len(self.train_batches),
                     run="training", loss="the loss", state="the weights", kept=self._kept(),
                     advice="Lower --lr, use --precision fp32, or try another --seed.")

    def _checkpoint(self, run: RunDir, seconds: float) -> None:
        run.save_torch(LAST, self._full_state(seconds))
        self.saved_at = (self.epoch, self.step)

    # -- the loop ----------------------------------------------------------------------------
    def run(self, run: RunDir, *, progress: bool, tensorboard: bool, plots: bool,
            log: Callable[[str], None]) -> TrainResult:
        config = self.config
        logger = open_logger(run.file("tensorboard"), tensorboard)
        distributed.decorrelate_global_rng()  # torchrun: own drop-path masks per rank
        log(f"training {self.genotype.compact()}")
        log(f"on {config.dataset} ({len(self.train_set)} training, "
            f"{len(self.test_set)} test images of {self.shape.input_shape}), "
            f"{config.network} network with {config.layers} cells, C {config.channels}, "
            f"{parameter_count(self.net) / 1e6:.2f}M parameters, on {self.device}; "
            f"run directory {run.path}")
        sizes = {"batch_size": config.batch_size, "channels": config.channels,
                 "layers": config.layers}
        try:
            with run_failures("training", self._kept, sizes, self.device):
                while self.epoch < config.epochs:
                    self._finish_epoch(run, self._epoch(run, progress), logger, log)
        finally:
            logger.close()
        if self.history:
            last = self.history[-1]
            log(f"test accuracy {100 * last['test_acc']:.2f}% after {self.epoch} epochs (best "
                f"{100 * self.best['test_acc']:.2f}% at epoch {self.best['epoch']}); "
                f"{parameter_count(self.net) / 1e6:.2f}M parameters")
        if plots:
            write_pictures(run.path, log)
        log(f"run directory: {run.path} (config.yaml, genotype.json, metrics.jsonl, {LAST}, "
            f"{BEST})")
        return TrainResult(run.path, self.genotype, config, self.net, list(self.history))

    def _finish_epoch(self, run: RunDir, record: dict[str, Any], logger,
                      log: Callable[[str], None]) -> None:
        """Count the epoch done; write best.pt (if best), last.pt and the metrics; log."""
        config = self.config
        self.history.append(record)
        self.epoch, self.step, self.sums, self.seconds = self.epoch + 1, 0, EpochSums(), 0.0
        if record["test_acc"] > self.best["test_acc"]:
            self.best = {"epoch": self.epoch, "test_acc": record["test_acc"]}
            run.save_torch(BEST, self._model_state())
        self._checkpoint(run, 0.0)
        run.log_metrics(record)
        logger.scalars({"loss/train": record["train_loss"], "loss/test": record["test_loss"],
                        "accuracy/train": record["train_acc"], "accuracy/test": record["test_acc"],
                        "accuracy/test_top5": record["test_top5"], "lr": record["lr"],
                        "drop_path": record["drop_path"]}, self.epoch)
        log(f"epoch {self.epoch}/{config.epochs}  train loss {record['train_loss']:.3f} "
            f"acc {100 * record['train_acc']:.1f}%  test loss {record['test_loss']:.3f} "
            f"acc {100 * record['test_acc']:.1f}% top-5 "
            f"{100 * record['test_top5']:.1f}%  lr {record['lr']:.4f}  drop-path "
            f"{record['drop_path']:.3f}  {record['seconds']:.1f}s")

    def _epoch(self, run: RunDir, progress: bool) -> dict[str, Any]:
        """Run the rest of the current epoch (from ``self.step``; mid-epoch checkpoints every
        ``checkpoint_every`` steps) and test; return the epoch's record."""
        config = self.config
        started = time.perf_counter() - self.seconds
        self.net.drop_path_prob = config.drop_path * self.epoch / config.epochs
        lr = self.optimizer.param_groups[0]["lr"]
        self.net.train()
        steps, every = len(self.train_batches), config.checkpoint_every
        bar = tqdm(total=steps, initial=self.step, desc=f"epoch {self.epoch + 1}/{config.epochs}",
                   leave=False, disable=not progress, unit="step", dynamic_ncols=True)
        while self.step < steps:
            x, y = next(self.train_stream)
            self.optimizer.zero_grad(set_to_none=True)
            with autocast(self.device, self.precision):
                total, loss, logits = objective(self.model(x), y, config)
            total.backward()
            if config.grad_clip > 0:
                nn.utils.clip_grad_norm_(self.net.parameters(), config.grad_clip)
            self.optimizer.step()
            self.sums.add(torch.stack([loss.detach().float() * len(y),
                                       (logits.detach().argmax(1) == y).sum().float()]), len(y))
            self.step += 1
            bar.update(1)
            if progress and self.step % 10 == 1:
                sums = self.sums.sums.tolist()
                if not all(math.isfinite(v) for v in sums):
                    self._check_finite()
                bar.set_postfix(loss=f"{sums[0] / self.sums.seen:.3f}")
            if every and (self.epoch * steps + self.step) % every == 0 and self.step < steps:
                self._check_finite()
                self._checkpoint(run, time.perf_counter() - started)
        bar.close()
        self._check_finite()
        train_loss, train_acc = self.sums.means([self.sums.seen, self.sums.seen])
        self.scheduler.step()
        test = evaluate_classifier(self.net, self.test_batches)
        return {"epoch": self.epoch + 1, "lr": lr, "drop_path": self.net.drop_path_prob,
                "train_loss": train_loss, "train_acc": train_acc, "test_loss": test["loss"],
                "test_acc": test["top1"], "test_top5": test["top5"],
                "seconds": time.perf_counter() - started}
