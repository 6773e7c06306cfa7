"""``nasp profile``: the per-op latency table of ``--max-latency``, measured on a device.

Every candidate op of every edge of every cell of a space's evaluation network (its
:attr:`~nasp.spaces.base.SearchSpace.evaluation_sizes`, one image of the data set's shape) is
built as that network builds it and timed alone (eval mode, no gradient, the median of
``repeats`` runs after two warm-up runs): on the CPU or a CUDA device with PyTorch, or with ONNX
Runtime (the op exported to ONNX, run on its CPU provider). The table's entry of edge ``e`` and
op ``k`` of cell type ``t`` is the sum over the cells of type ``t``; the constant is the time of
the all-``none`` network less its ``none`` ops. A network's latency is modelled as the constant
plus its ops' entries (:mod:`nasp.spaces.costs`): a model, not a measurement of the whole
network (kernel fusion, caches and the additions between ops are not seen alone).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nasp.data import DATASET_SHAPES, known_shape
from nasp.errors import ConfigError
from nasp.runtime.atomic import atomic_write_text
from nasp.runtime.device import resolve_device
from nasp.runtime.extras import require
from nasp.spaces import DEFAULT_SPACE, SPACES, build_space
from nasp.spaces.costs import EdgeSites, latency_record, make_op

__all__ = ["add_profile_parser", "profile_space", "time_module"]

BACKENDS = ("cpu", "cuda", "onnxruntime")


def time_module(net: nn.Module, input_shape: tuple[int, ...], device: str,
                repeats: int) -> float:
    """Median milliseconds of one forward pass of ``net`` on one input of ``input_shape``."""
    net = net.eval()
    x = torch.zeros(1, *input_shape)
    if device == "onnxruntime":
        ort = require("onnxruntime", "export", "nasp profile --device onnxruntime")
        buffer = io.BytesIO()
        with warnings.catch_warnings():  # tracer warnings about shape checks: one fixed shape
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (x,), buffer, dynamo=False)
        session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        feed = {name: x.numpy()}

        def run() -> None:
            session.run(None, feed)
    else:
        target = torch.device(device)
        net, x = net.to(target), x.to(target)
        sync = torch.cuda.synchronize if target.type == "cuda" else (lambda: None)

        def run() -> None:
            with torch.no_grad():
                net(x)
            sync()
    for _ in range(2):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def profile_space(sites: EdgeSites, device: str, repeats: int,
                  say: Callable[[str], None] = print) -> tuple[dict[str, list[list[float]]], float]:
    """Per cell type, per edge, per op milliseconds, and the constant (see the module
    docstring)."""
    measured: dict[tuple, float] = {}
    for s in sites.sites:
        for name in sites.primitives[s.cell_type]:
            key = (name, s.channels, s.stride, s.input_shape)
            if key not in measured:
                with torch.random.fork_rng(devices=[]):
                    measured[key] = time_module(make_op(name, s), s.input_shape, device, repeats)
    say(f"timed {len(measured)} distinct ops")
    edges = {t: 1 + max(s.edge for s in sites.sites if s.cell_type == t) for t in sites.primitives}
    ops_ms = {t: [[0.0] * len(names) for _ in range(edges[t])]
              for t, names in sites.primitives.items()}
    nones = 0.0
    for s in sites.sites:
        names = sites.primitives[s.cell_type]
        for k, name in enumerate(names):
            ops_ms[s.cell_type][s.edge][k] += measured[(name, s.channels, s.stride,
                                                        s.input_shape)]
        nones += measured[("none", s.channels, s.stride, s.input_shape)]
    with torch.random.fork_rng(devices=[]):
        whole = time_module(sites.baseline(), sites.input_shape, device, repeats)
    return ops_ms, max(whole - nones, 0.0)


def add_profile_parser(sub) -> None:
    """``nasp profile``: write the per-op latency table of ``--max-latency``."""
    p = sub.add_parser(
        "profile", help="measure the per-op latency table of --max-latency on a device",
        description="Time every candidate op of every edge of the space's evaluation network "
                    "(its training sizes, one image) on the device, and write the table that "
                    "`nasp search --max-latency MS --latency-table PATH` reads. The network's "
                    "latency is modelled as a constant plus the chosen ops' times.")
    p.add_argument("--space", default=DEFAULT_SPACE, choices=sorted(SPACES))
    p.add_argument("--primitives", default=None, help="op set (default: the space's)")
    p.add_argument("--dataset", default="digits",
                   help="the data set whose image shape and classes the network takes "
                        "(default digits; as nasp search --dataset)")
    p.add_argument("--device", default="cpu",
                   help="cpu (default), cuda, cuda:N, or onnxruntime (ONNX Runtime's CPU "
                        "provider; needs the export extra)")
    p.add_argument("--repeats", type=int, default=20, help="timed runs per op (median)")
    p.add_argument("--out", required=True, metavar="PATH", help="the JSON file to write")
    p.set_defaults(func=_cmd_profile)


def _cmd_profile(args: argparse.Namespace) -> int:
    cls = SPACES[args.space]
    primitives = args.primitives or cls.default_primitives
    try:
        space = build_space(args.space, primitives)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    shape = known_shape(args.dataset)
    if shape is None:
        raise ConfigError(f"--dataset {args.dataset}: nasp profile needs a named data set of "
                          f"known image shape ({', '.join(DATASET_SHAPES)})")
    device = args.device
    if device != "onnxruntime":
        device = str(resolve_device(device))
    if args.repeats < 1:
        raise ConfigError(f"--repeats must be at least 1, got {args.repeats}")
    sites = space.edge_sites(shape.input_shape, shape.num_classes)
    print(f"nasp profile: {args.space} ({primitives}), {sites.about}, on {device}")
    ops_ms, constant = profile_space(sites, device, args.repeats)
    extra: dict[str, Any] = {"device": device, "torch": torch.__version__,
                             "repeats": args.repeats}
    record = latency_record(sites, ops_ms, constant, args.space, primitives, **extra)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(record, indent=1) + "\n")
    cheapest = constant + sum(min(row) for rows in ops_ms.values() for row in rows)
    print(f"wrote {out}: constant {constant:.3f} ms; the cheapest cell {cheapest:.3f} ms "
          f"(per image, modelled)")
    return 0
