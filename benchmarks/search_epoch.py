"""Where the time of a NASP search epoch goes: data, architecture step, weight step, evaluation.

Runs the search loop's own pieces (the CIFAR-10 search split resident on the device, Batches with
on-device augmentation, the NASP strategy) for ``--steps`` iterations at the paper's search size,
timing each part, and projects a full epoch (25,000 / batch steps plus the child evaluation on the
architecture half). On CUDA every part is synchronised before it is timed.

    python benchmarks/search_epoch.py --data-dir ../shared/data --steps 40 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from nasp.config import SearchConfig
from nasp.data import Batches, load_dataset, search_split
from nasp.runtime.device import resolve_device, resolve_memory_format
from nasp.spaces import build_space
from nasp.strategies import build_strategy
from nasp.tasks.classification import evaluate_classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--eval-batches", type=int, default=20)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--memory-format", default="auto")
    parser.add_argument("--json")
    args = parser.parse_args()

    device = resolve_device(args.device)
    memory_format = resolve_memory_format(args.memory_format, device)
    cl = memory_format == torch.channels_last
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    t0 = time.perf_counter()
    data = load_dataset("cifar10", args.data_dir, "train")
    train_half, val_half = search_split(data)
    g = torch.Generator().manual_seed(0)
    train = Batches(train_half, args.batch_size, device=device, augment=True, generator=g,
                    channels_last=cl)
    val = Batches(val_half, args.batch_size, device=device, augment=True, generator=g,
                  channels_last=cl).forever()
    load_s = time.perf_counter() - t0

    torch.manual_seed(0)
    config = SearchConfig(dataset="cifar10", layers=args.layers, channels=args.channels,
                          batch_size=args.batch_size, epochs=50,
                          memory_format=args.memory_format)
    space = build_space("darts", config.primitives)
    net = space.build_supernet(3, 10, args.layers, args.channels).to(
        device, memory_format=memory_format)
    strategy = build_strategy("nasp", space, net, config)

    parts = {"data": [], "arch": [], "weight": []}
    batches = iter(train)
    for step in range(args.steps + 2):  # the first two are warm-up
        sync()
        a = time.perf_counter()
        tb, vb = next(batches), next(val)
        sync()
        b = time.perf_counter()
        strategy.arch_step(vb)
        sync()
        c = time.perf_counter()
        strategy.weight_step(tb, strategy.child_plans())
        sync()
        d = time.perf_counter()
        if step >= 2:
            parts["data"].append(b - a)
            parts["arch"].append(c - b)
            parts["weight"].append(d - c)

    eval_batches = Batches(val_half.take(slice(0, args.eval_batches * 2 * args.batch_size)),
                           2 * args.batch_size, device=device, shuffle=False, channels_last=cl)
    sync()
    t = time.perf_counter()
    plans = strategy.child_plans()
    evaluate_classifier(net, eval_batches, forward=lambda x: net(x, plans))
    sync()
    eval_per_image = (time.perf_counter() - t) / len(eval_batches.dataset)

    steps_per_epoch = len(train)
    per_step = {k: statistics.median(v) for k, v in parts.items()}
    epoch = {k: v * steps_per_epoch for k, v in per_step.items()}
    epoch["eval"] = eval_per_image * len(val_half)
    total = sum(epoch.values())
    report = {
        "device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "layers": args.layers, "channels": args.channels, "batch_size": args.batch_size,
        "memory_format": str(memory_format), "timed_steps": args.steps,
        "steps_per_epoch": steps_per_epoch, "dataset_load_s": load_s,
        "median_step_s": per_step, "projected_epoch_s": epoch, "projected_epoch_total_s": total,
        "share": {k: v / total for k, v in epoch.items()},
    }
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
