"""The search loop: epochs of strategy steps, evaluation of the discrete child, run files.

Data: the training split of the data set is cut in two halves as in DARTS: the first trains the
network weights, the second the architecture (and evaluates the current child after each epoch).
Both halves stay on the compute device; augmentation runs there per batch. The architecture half
is read through one persistent, cycling iterator.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from nasp import distributed
from nasp.config import SearchConfig
from nasp.data import Batches, load_dataset, search_split
from nasp.device import resolve_memory_format
from nasp.genotype import Genotype
from nasp.loops.common import evaluate_classifier, seed_everything
from nasp.runs import default_run_dir
from nasp.spaces import build_space
from nasp.strategies import Strategy, build_strategy
from nasp.viz import write_pictures

__all__ = ["SearchResult", "search"]


@dataclass
class SearchResult:
    genotype: Genotype
    run_dir: Path
    history: list[dict] = field(default_factory=list)
    strategy: Strategy | None = None


def search(config: SearchConfig, *, overwrite: bool = False, progress: bool = True,
           plots: bool = True, log: Callable[[str], None] = print) -> SearchResult:
    """Run a whole search as ``config`` says; write the run directory; return the genotype.

    Under torchrun, data-parallel over the processes (:mod:`nasp.distributed`): only rank 0
    writes the run directory and prints; every rank returns the same result."""
    dist = distributed.setup(config)  # torchrun: process group, this rank's device
    device = dist.device
    if not dist.is_main:  # distributed: only rank 0 prints and draws
        log, progress, plots = distributed.silent, False, False
    seed_everything(config.seed)
    data = distributed.local_first(load_dataset, config.dataset, config.data_dir, "train")
    train_half, val_half = search_split(data, config.subset)
    out = Path(config.out) if config.out else default_run_dir("search", config.dataset,
                                                               config.strategy)
    out = distributed.from_rank0(out)
    config = config.replace(out=str(out))
    space = build_space(config.space, config.primitives)
    memory_format = resolve_memory_format(config.memory_format, device)
    net = space.build_supernet(data.in_channels, data.num_classes, config.layers,
                               config.channels).to(device, memory_format=memory_format)
    net = distributed.convert_batchnorm(net, config.sync_bn)
    strategy = build_strategy(config.strategy, space, net, config)
    run = distributed.run_dir(out, overwrite=overwrite)
    run.write_text("config.yaml", config.to_yaml())

    generator = torch.Generator().manual_seed(config.seed)
    channels_last = memory_format == torch.channels_last
    train_batches = Batches(train_half, config.batch_size, device=device, augment=True,
                            cutout=config.cutout, generator=generator,
                            channels_last=channels_last, shard=distributed.shard())
    val_stream = Batches(val_half, config.batch_size, device=device, augment=True,
                         cutout=config.cutout, generator=generator,
                         channels_last=channels_last, shard=distributed.shard()).forever()
    eval_batches = Batches(distributed.part(val_half), 2 * config.batch_size, device=device,
                           shuffle=False, channels_last=channels_last)
    log(f"searching {config.strategy} on {config.dataset} ({len(train_half)} + {len(val_half)} "
        f"images, {tuple(data.images.shape[1:])}) with {config.layers} cells, C {config.channels},"
        f" primitives {config.primitives}, on {device}; run directory {out}")

    history = []
    for epoch in range(config.epochs):
        started = time.perf_counter()
        lr = strategy.lr
        sums = None
        seen = 0
        bar = tqdm(train_batches, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False,
                   disable=not progress, unit="step", dynamic_ncols=True)
        for step, train in enumerate(bar):
            m = strategy.step(train, next(val_stream))
            values = torch.stack([m["train_loss"] * len(train[1]),
                                  m["train_correct"].to(m["train_loss"].dtype), m["arch_loss"]])
            sums = values if sums is None else sums + values
            seen += len(train[1])
            if progress and step % 10 == 0:
                bar.set_postfix(loss=f"{sums[0].item() / seen:.3f}")
        bar.close()
        steps = len(train_batches)
        sums = distributed.all_average(sums)  # equal shards: the global batch means
        train_loss, train_acc, arch_loss = (sums / torch.tensor(
            [seen, seen, steps], device=sums.device)).tolist()
        strategy.end_epoch()
        plans = strategy.child_plans()
        child = evaluate_classifier(net, eval_batches, forward=lambda x, p=plans: net(x, p))
        child_loss, child_acc = child["loss"], child["top1"]
        genotype = strategy.genotype()
        record = {
            "epoch": epoch + 1, "lr": lr, "train_loss": train_loss, "train_acc": train_acc,
            "arch_loss": arch_loss, "child_val_loss": child_loss, "child_val_acc": child_acc,
            "seconds": time.perf_counter() - started, "genotype": genotype.to_dict(),
            "arch": {t: a.detach().cpu().tolist() for t, a in strategy.arch.items()},
        }
        history.append(record)
        run.log_metrics(record)
        run.save_torch("checkpoint.pt", {"epoch": epoch + 1, "config": config.to_dict(),
                                         "strategy": strategy.state_dict()})
        log(f"epoch {epoch + 1}/{config.epochs}  train loss {train_loss:.3f} acc "
            f"{100 * train_acc:.1f}%  arch loss {arch_loss:.3f}  child val loss "
            f"{child_loss:.3f} acc {100 * child_acc:.1f}%  lr {lr:.4f}  "
            f"{record['seconds']:.1f}s  {genotype.compact()}")

    genotype = strategy.genotype()
    run.save_torch("arch.pt", {t: a.detach().cpu() for t, a in strategy.arch.items()})
    genotype.save(run.file("genotype.json"))
    if plots:
        write_pictures(out, log)
    log(f"genotype: {genotype}")
    log(f"run directory: {out} (config.yaml, metrics.jsonl, checkpoint.pt, arch.pt, "
        f"genotype.json)")
    distributed.teardown(dist)
    return SearchResult(genotype, out, history, strategy)
