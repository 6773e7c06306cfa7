"""Data-parallel search and training on several processes: ``torchrun -m nasp search|train``.

Launch. ``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in each process;
:func:`setup` reads them, puts the process on ``cuda:LOCAL_RANK`` (CUDA, backend ``nccl``) or
the CPU (backend ``gloo``), initialises the default process group and :func:`teardown` destroys
it at the end. With no ``WORLD_SIZE > 1`` in the environment nothing is initialised and every
function here is a no-op, so a single-process run is unchanged. A process group the caller has
already initialised is used as it is (and left to the caller to destroy).

The global batch. ``batch_size`` is the global batch and must be a multiple of the number of
processes ``N``. Every rank draws the same permutation and the same augmentation random numbers
from the same seeded generator, for the whole global batch, and keeps its contiguous slice of
``batch_size / N`` rows (:class:`nasp.data.Batches` with ``shard=(rank, N)``). A final partial
batch is cut to a multiple of ``N`` rows (at most ``N - 1`` images per epoch are skipped; with
shuffling, different ones each epoch); one with fewer than ``N`` rows is skipped. All shards of a
step thus have the same size, and the mean over ranks of the per-rank mean losses is the mean
loss of the global batch: averaging the per-rank gradients gives exactly the one-process
gradient. Data sets are read (and downloaded) by local rank 0 of each node first
(:func:`local_first`), then by the other ranks.

Search. The strategies do steps ``DistributedDataParallel`` cannot see: the NASP architecture
step differentiates with ``torch.autograd.grad`` with respect to ``A_bar``, only the selected
ops of the supernet run in its weight step (most parameters unused), and DARTS second order makes
a virtual step and finite-difference Hessian-vector products with weights swapped in place. So
the search does not wrap the supernet in DDP; instead the strategies call, at the few points
where a gradient is complete, one explicit bucketed all-reduce that averages it over ranks
(:func:`average_gradients_` for the weight gradients before clipping, :func:`all_average` for
the architecture gradients before the Adam step, and, for DARTS second order, for the gradient
of the virtual step and the vector ``v`` of the Hessian-vector product). Every rank then applies
the same update to the same values: the weights, ``A`` and ``A_bar`` are identical on all ranks
after every step (gloo's and NCCL's all-reduce leave the same bits on every rank). Parameters a
step does not use have no gradient on any rank, since all ranks run the same discrete child.

Training from scratch wraps the child network in ``DistributedDataParallel``
(:func:`data_parallel`), which averages the gradients during the backward pass and broadcasts
the BatchNorm statistics from rank 0 at each forward. The global random stream (drop-path masks)
is made to differ between ranks (:func:`decorrelate_global_rng`).

BatchNorm over the global batch (``--sync-bn``): :mod:`nasp.runtime.batchnorm`.

Evaluation. Each rank evaluates its contiguous part of the evaluation split (:func:`part`) with
rank 0's BatchNorm statistics (:func:`broadcast_buffers_`), and the sums are all-reduced
(:func:`all_sum`), so the logged numbers are those of the whole split.

Files and printing. Only rank 0 writes the run directory and prints: :func:`run_dir` creates the
:class:`~nasp.runtime.runs.RunDir` on rank 0 (an unusable directory raises the same
:class:`~nasp.errors.RunDirError` on every rank) and gives the other ranks a stand-in that writes
nothing (direct writes to its paths land in a private temporary folder).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from nasp.errors import ConfigError, RunDirError
from nasp.runtime.device import resolve_device
from nasp.runtime.runs import RunDir

__all__ = [
    "Dist", "active", "all_average", "all_sum", "average_gradients_",
    "broadcast_", "broadcast_buffers_", "data_parallel",
    "decorrelate_global_rng", "from_rank0", "is_main", "launched", "local_first", "part", "rank",
    "run_dir", "setup", "shard", "silent", "teardown", "world_size",
]


# -- who am I -----------------------------------------------------------------------------------
def launched() -> bool:
    """Whether the environment says this is one of several processes (``WORLD_SIZE > 1``)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    """Whether a process group of more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0, or the only process: the one that writes files and prints."""
    return rank() == 0


def silent(message: str) -> None:
    """The ``log`` of the ranks other than 0: prints nothing."""


@dataclass(frozen=True)
class Dist:
    """This process's place in the run, as :func:`setup` found it."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"the environment variable {name}={value!r} is not an integer; "
                          f"launch with torchrun, which sets it") from None


def setup(config: Any) -> Dist:
    """Join (or start) the process group torchrun describes; the device this rank computes on.

    ``config`` is a search or train config: its ``device`` (``auto``, ``cuda`` or ``cpu``; under
    torchrun a CUDA device is always ``cuda:LOCAL_RANK``) and ``batch_size`` (the global batch,
    which must be a multiple of the number of processes) are checked before anything starts.
    Single process: no process group, the device of :func:`nasp.runtime.device.resolve_device`.
    """
    if active():
        world, me = dist.get_world_size(), dist.get_rank()
        local = _env_int("LOCAL_RANK", me)
    elif launched():
        world, me, local = _env_int("WORLD_SIZE", 1), _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    else:
        return Dist(0, 1, 0, resolve_device(config.device))
    if config.batch_size % world:
        raise ConfigError(f"--batch-size {config.batch_size} is the global batch, split evenly "
                          f"across the {world} processes; make it a multiple of {world}")
    device = _rank_device(config.device, local)
    if active():
        return Dist(me, world, local, device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(me, world, local, device, owns_group=True)


def _rank_device(name: str, local_rank: int) -> torch.device:
    """``cuda:LOCAL_RANK`` for ``auto`` (when CUDA is there) and ``cuda``; else the CPU."""
    device = resolve_device(name)
    if device.type != "cuda":
        return device
    if device.index is not None and device.index != local_rank:
        raise ConfigError(f"--device {name} names one GPU, but under torchrun each process uses "
                          f"the GPU of its LOCAL_RANK ({local_rank} here); pass --device cuda or "
                          f"auto")
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise ConfigError(f"torchrun started process LOCAL_RANK {local_rank} but this node has "
                          f"{count} GPU(s); use --nproc-per-node {count} or fewer")
    return torch.device("cuda", local_rank)


def teardown(d: Dist) -> None:
    """Destroy the process group if :func:`setup` created it."""
    if d.owns_group and dist.is_initialized():
        dist.destroy_process_group()


# -- data ---------------------------------------------------------------------------------------
def local_first(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, called first by local rank 0 of each node and then, after a
    barrier, by the other ranks: a data set is downloaded once per node, not by every process
    at the same time. In a single process simply ``fn(*args, **kwargs)``."""
    if not active():
        return fn(*args, **kwargs)
    first = _env_int("LOCAL_RANK", rank()) == 0
    result = fn(*args, **kwargs) if first else None
    dist.barrier()
    return result if first else fn(*args, **kwargs)


def shard() -> tuple[int, int] | None:
    """``(rank, world size)`` for :class:`nasp.data.Batches`, or None in a single process."""
    return (rank(), world_size()) if active() else None


def part(ds):
    """This rank's contiguous part of an evaluation split (all of it in a single process).

    Parts differ in size by at most one image; their union is ``ds``.
    """
    if not active():
        return ds
    n, world, me = len(ds), world_size(), rank()
    if n < world:
        raise ConfigError(f"the evaluation split of {ds.name} has {n} images, fewer than the "
                          f"{world} processes; use fewer processes or more data")
    return ds.take(slice(me * n // world, (me + 1) * n // world))


# -- collectives --------------------------------------------------------------------------------
def _flat_collective(tensors: Iterable[torch.Tensor], op: Callable[[torch.Tensor], None]) -> None:
    """Apply ``op`` in place to the concatenation of ``tensors`` (one buffer per dtype and
    device), then copy the result back into them. Works for any memory layout."""
    groups: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.dtype, t.device), []).append(t)
    for ts in groups.values():  # insertion order: the same on every rank
        flat = torch.cat([t.reshape(-1) for t in ts])
        op(flat)
        offset = 0
        for t in ts:
            t.copy_(flat[offset:offset + t.numel()].view(t.shape))
            offset += t.numel()


def _average_flat(flat: torch.Tensor) -> None:
    dist.all_reduce(flat)
    flat.div_(dist.get_world_size())


@torch.no_grad()
def average_gradients_(params: Iterable[torch.Tensor]) -> None:
    """Replace each ``p.grad`` by its mean over ranks (one bucketed all-reduce; no-op in a
    single process). Parameters without a gradient are skipped: all ranks run the same graph, so
    they are the same ones everywhere."""
    if active():
        _flat_collective([p.grad for p in params if p.grad is not None], _average_flat)


@torch.no_grad()
def all_average(x):
    """The mean over ranks of a tensor, a sequence or a mapping of tensors (new tensors, same
    structure; ``x`` itself in a single process)."""
    if not active():
        return x
    if isinstance(x, torch.Tensor):
        return all_average([x])[0]
    if isinstance(x, Mapping):
        return dict(zip(x, all_average(list(x.values()))))
    out = [t.detach().clone() for t in x]
    _flat_collective(out, _average_flat)
    return out


@torch.no_grad()
def all_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum over ranks of ``t`` (a new tensor; ``t`` itself in a single process)."""
    if not active():
        return t
    t = t.detach().clone()
    dist.all_reduce(t)
    return t


@torch.no_grad()
def broadcast_(tensors: Iterable[torch.Tensor], src: int = 0) -> None:
    """Overwrite ``tensors`` on every rank with rank ``src``'s values (no-op single process)."""
    if active():
        _flat_collective(list(tensors), lambda flat: dist.broadcast(flat, src))


def broadcast_buffers_(module: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank, as DDP does."""
    broadcast_([b for b in module.buffers() if b.is_floating_point()])


def from_rank0(obj: Any) -> Any:
    """Rank 0's value of a picklable object (e.g. a default run directory with a time stamp)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# -- models -------------------------------------------------------------------------------------
def data_parallel(module: nn.Module) -> nn.Module:
    """``module`` wrapped in ``DistributedDataParallel`` under torchrun, else ``module``."""
    if not active():
        return module
    first = next(module.parameters())
    ids = [first.device.index] if first.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def decorrelate_global_rng() -> None:
    """Give ranks 1.. their own global random stream (derived from the shared one), so that
    random choices per sample (drop-path masks) are independent between ranks' slices."""
    if active() and rank() > 0:
        torch.manual_seed(int(torch.randint(2 ** 62, ())) + rank())


# -- run directory ------------------------------------------------------------------------------
class _OtherRankRunDir(RunDir):
    """The run directory as ranks other than 0 see it: its methods write nothing, and paths
    from :meth:`file` point into a private temporary folder removed with this object."""

    def __init__(self, path: str | os.PathLike):  # noqa: D107 - no checks, nothing created
        self.path = Path(path)
        self._scratch = Path(tempfile.mkdtemp(prefix=f"nasp-rank{rank()}-"))
        weakref.finalize(self, shutil.rmtree, self._scratch, True)

    def file(self, name: str) -> Path:
        return self._scratch / name

    def write_bytes(self, name: str, data: bytes) -> Path:
        return self.file(name)

    def save_torch(self, name: str, obj: Any) -> Path:
        return self.file(name)

    def append_json_list(self, name: str, item: Any) -> Path:
        return self.file(name)

    def log_metrics(self, record: dict[str, Any]) -> None:
        pass


def run_dir(path: str | os.PathLike, *, overwrite: bool = False, resume: bool = False) -> RunDir:
    """:class:`~nasp.runtime.runs.RunDir` on rank 0 (or a single process); a stand-in that writes
    nothing on the other ranks. If rank 0 cannot use the directory, every rank raises the same
    :class:`~nasp.runtime.runs.RunDirError`."""
    if not active():
        return RunDir(path, overwrite=overwrite, resume=resume)
    run, error = None, None
    if rank() == 0:
        try:
            run = RunDir(path, overwrite=overwrite, resume=resume)
        except RunDirError as err:
            error = str(err)
    error = from_rank0(error)
    if error is not None:
        raise RunDirError(error)
    return run if run is not None else _OtherRankRunDir(path)
