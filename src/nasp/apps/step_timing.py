"""``nasp bench``: the cost of one search iteration, NASP against DARTS, on one supernet.

Every variant gets its own copy of the same seeded supernet and the same random batches, the same
memory format and precision. The batches follow the space's data kind: on an image space 3-channel
images of 10 classes; on a text space (a recurrent cell in a language model) windows of ``bptt``
random tokens over a ``vocab``-word vocabulary (:class:`~nasp.tasks.windows.TokenWindow`, starting
from a zero state) and their next-word targets, the loss the language-model task's. The variants:

- ``child``: the child network alone (the supernet in discrete mode at a fixed selection), one
  forward/backward and SGD step: the floor any search iteration must pay for its weight step;
- ``nasp``: a NASP iteration with the sparse architecture step (this library's default);
- ``nasp-reference``: a NASP iteration with the dense architecture step of the original code;
- ``darts``, ``darts2``: DARTS first and second order iterations.

NASP's architecture starts from a seeded uniform random ``A`` (not the all-ties 0.5, which would
select the cheapest op everywhere), and ``child`` uses its selection.

Time: after ``warmup`` untimed iterations of each variant, ``repeats`` rounds in which every
variant runs once, in turn (interleaved, so drifts of the machine hit all alike); the figure is
the median. Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` during one iteration minus
what was allocated before it; on the CPU, each variant runs in a fresh subprocess and reports the
growth of its peak resident set size (``VmHWM``) over one warm-up plus one timed iteration,
measured from just before the first iteration.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from nasp.config import preset
from nasp.runtime.device import resolve_device, resolve_memory_format
from nasp.spaces import DEFAULT_SPACE, SPACES, build_space
from nasp.strategies import build_strategy
from nasp.tasks import build_task
from nasp.tasks.windows import TokenWindow

__all__ = ["VARIANTS", "BenchSetup", "build_variant", "format_table", "random_batch", "run_bench"]

VARIANTS = {
    "child": "child network alone: forward, backward, SGD step",
    "nasp": "NASP, sparse architecture step (default)",
    "nasp-reference": "NASP, dense architecture step (original code)",
    "darts": "DARTS, first order",
    "darts2": "DARTS, second order",
}


@dataclass
class BenchSetup:
    """One supernet and its batches. ``image_size`` is used on image spaces, ``bptt`` and
    ``vocab`` on text spaces; ``primitives`` None: the space's own op set."""

    layers: int = 8
    channels: int = 16
    batch_size: int = 64
    image_size: int = 32
    device: str = "auto"
    primitives: str | None = "darts-7"
    memory_format: str = "auto"
    precision: str = "auto"
    seed: int = 0
    space: str = DEFAULT_SPACE
    bptt: int = 35
    vocab: int = 10_000

    @property
    def text(self) -> bool:
        """Whether the space's networks are language models (token windows, not images)."""
        return getattr(SPACES[self.space], "data_kind", "image") == "text"

    def describe(self) -> str:
        data = (f"bptt {self.bptt}, {self.vocab} words" if self.text
                else f"{self.image_size}x{self.image_size}")
        sizes = SPACES[self.space].describe_sizes(self.layers, self.channels)
        return f"{self.space}: {sizes}, batch {self.batch_size}, {data}"

    def args(self) -> list[str]:
        """Command-line options that rebuild this setup."""
        return [f"--{k.replace('_', '-')}={v}" for k, v in asdict(self).items()
                if v is not None]


def random_batch(setup: BenchSetup, generator: torch.Generator, device: torch.device,
                 memory_format: torch.memory_format = torch.contiguous_format) -> tuple[Any, Any]:
    """One random batch ``(x, y)`` of the setup's data kind: images ``(B, 3, S, S)`` and labels
    of 10 classes, or a :class:`TokenWindow` of ``(bptt, B)`` tokens from a zero state and the
    next word of each, time-major ``(bptt * B,)`` as :class:`~nasp.data.tokens.TokenStream`."""
    if setup.text:
        tokens = torch.randint(0, setup.vocab, (setup.bptt + 1, setup.batch_size),
                               generator=generator).to(device)
        return TokenWindow(tokens[:-1]), tokens[1:].reshape(-1)
    x = torch.randn(setup.batch_size, 3, setup.image_size, setup.image_size, generator=generator)
    y = torch.randint(0, 10, (setup.batch_size,), generator=generator)
    return x.to(device, memory_format=memory_format), y.to(device)


def build_variant(name: str, setup: BenchSetup) -> Callable[[], None]:
    """A function running one iteration of variant ``name`` (see the module docstring)."""
    strategy_name = {"child": "nasp", "nasp-reference": "nasp"}.get(name, name)
    # the space's cpu preset: its optimisers (e.g. DARTS's language-model SGD on a text space)
    config = preset("cpu", space=setup.space, strategy=strategy_name, layers=setup.layers,
                    channels=setup.channels, batch_size=setup.batch_size,
                    primitives=setup.primitives, memory_format=setup.memory_format,
                    precision=setup.precision, bptt=setup.bptt,
                    arch_mode="reference" if name == "nasp-reference" else "sparse")
    device = resolve_device(setup.device)
    memory_format = resolve_memory_format(setup.memory_format, device)
    torch.manual_seed(setup.seed)
    space = build_space(setup.space, config.primitives)
    if setup.text:
        net = space.build_supernet(1, setup.vocab, setup.layers, setup.channels).to(device)
        task = build_task("language-model")
    else:
        net = space.build_supernet(3, 10, setup.layers, setup.channels).to(
            device, memory_format=memory_format)
        task = None
    strategy = build_strategy(strategy_name, space, net, config,
                              **({} if task is None else {"task": task}))
    if strategy_name == "nasp":
        g = torch.Generator().manual_seed(setup.seed)
        with torch.no_grad():
            for a in strategy.arch.values():
                a.copy_(torch.rand(a.shape, generator=g))
        strategy.project()
    g = torch.Generator().manual_seed(setup.seed + 1)
    train, val = (random_batch(setup, g, device, memory_format) for _ in range(2))
    if name == "child":
        plans = strategy.child_plans()
        return lambda: strategy.weight_step(train, plans)
    return lambda: strategy.step(train, val)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_interleaved(fns: dict[str, Callable[[], None]], device: torch.device, repeats: int,
                      warmup: int) -> dict[str, list[float]]:
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    _sync(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def _peak_memory_cuda(fn: Callable[[], None], device: torch.device) -> int:
    fn()  # warm-up: optimiser state and caches exist before the measured iteration
    _sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    _sync(device)
    return torch.cuda.max_memory_allocated(device) - base


def _peak_rss_bytes() -> int:
    """This process's peak resident set size.

    Linux's ``VmHWM`` belongs to the process image, whereas ``ru_maxrss`` survives ``exec`` and
    would report the parent's peak in a subprocess; ``ru_maxrss`` is the fallback elsewhere.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, kilobytes on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _peak_memory_cpu(name: str, setup: BenchSetup) -> int:
    command = [sys.executable, "-m", "nasp.apps.step_timing", "--memory-of", name, *setup.args()]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_growth_bytes"]


def run_bench(setup: BenchSetup, variants: list[str] | None = None, repeats: int = 5,
              warmup: int = 2, memory: bool = True,
              log: Callable[[str], None] = lambda s: None) -> dict:
    """Time (and measure the memory of) each variant; returns a JSON-ready report."""
    variants = variants or list(VARIANTS)
    device = resolve_device(setup.device)
    log(f"building {len(variants)} variants: {setup.describe()}, on {device}")
    fns = {name: build_variant(name, setup) for name in variants}
    log(f"timing: {warmup} warm-up + {repeats} interleaved rounds")
    times = _time_interleaved(fns, device, repeats, warmup)
    records = []
    for name in variants:
        record = {"name": name, "description": VARIANTS[name],
                  "median_s": statistics.median(times[name]), "times_s": times[name]}
        if memory:
            log(f"peak memory of {name}")
            record["peak_memory_bytes"] = (_peak_memory_cuda(fns[name], device)
                                           if device.type == "cuda"
                                           else _peak_memory_cpu(name, setup))
        records.append(record)
    return {
        "setup": asdict(setup),
        "machine": {
            "device": (torch.cuda.get_device_name(device) if device.type == "cuda"
                       else platform.processor() or platform.machine()),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(),
        },
        "memory_method": ("CUDA max_memory_allocated over one iteration, minus the allocation "
                          "before it" if device.type == "cuda" else
                          "growth of peak RSS (VmHWM) over two iterations, each variant in "
                          "its own subprocess"),
        "repeats": repeats, "warmup": warmup, "variants": records,
    }


def format_table(report: dict) -> str:
    """The report as a text table with ratios to ``nasp``."""
    records = {r["name"]: r for r in report["variants"]}
    ref = records.get("nasp")
    lines = [f"{'variant':16} {'s/iter':>9} {'x nasp':>7} {'peak MiB':>9} {'x nasp':>7}  what"]
    for name, r in records.items():
        t_ratio = f"{r['median_s'] / ref['median_s']:.2f}" if ref else "-"
        mem = r.get("peak_memory_bytes")
        mem_s = f"{mem / 2**20:.0f}" if mem is not None else "-"
        m_ratio = (f"{mem / ref['peak_memory_bytes']:.2f}"
                   if ref and mem is not None and ref.get("peak_memory_bytes") else "-")
        lines.append(f"{name:16} {r['median_s']:9.3f} {t_ratio:>7} {mem_s:>9} {m_ratio:>7}  "
                     f"{r['description']}")
    lines.append(f"memory: {report['memory_method']}")
    return "\n".join(lines)


def _memory_child(argv: list[str]) -> None:
    """Subprocess entry: run one variant twice and print the growth of peak RSS as JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--memory-of", choices=list(VARIANTS), required=True)
    for key, value in asdict(BenchSetup()).items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value)
    parser.set_defaults(primitives=None)  # a setup's None: not among its arguments
    args = vars(parser.parse_args(argv))
    name = args.pop("memory_of")
    fn = build_variant(name, BenchSetup(**args))
    base = _peak_rss_bytes()
    fn()
    fn()
    print(json.dumps({"variant": name, "peak_growth_bytes": _peak_rss_bytes() - base}))


if __name__ == "__main__":
    _memory_child(sys.argv[1:])
