"""Data-parallel search and training (nasp.runtime.distributed): 2 CPU processes with gloo.

One module-scoped run of 2 spawned processes does all the multi-process work and saves what it
saw; the tests compare the ranks with each other and with the same work done in one process.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from nasp import preset, train, train_preset
from nasp.config import SearchConfig
from nasp.data import Batches, ImageDataset
from nasp.engine.search import search
from nasp.errors import ConfigError, RunDirError
from nasp.runtime import distributed
from nasp.runtime.batchnorm import convert_batchnorm
from nasp.runtime.runs import RunDir
from nasp.spaces import DartsCNNSpace
from nasp.strategies import build_strategy

WORLD = 2
GLOBAL_BATCH = 8
TIMEOUT = 240  # seconds: a hang fails the test instead of blocking the suite
STRATEGIES = ("nasp", "darts", "darts2")
#: steps with each rank's own BatchNorm statistics after which the ranks are compared (the
#: other strategies are compared after their one step below)
STEPS = {"nasp": 3}
#: batch statistics in the 1-rank vs 2-rank comparison: synchronised, or absent (eval mode)
BATCH_STATS = {"nasp": "sync", "darts": "sync", "darts2": "absent"}


# -- work done the same way in one process and on each rank ----------------------------------

def _untimed(record: dict) -> dict:
    """A metrics record without its timings, which differ between processes."""
    return {k: v for k, v in record.items() if k not in ("seconds", "cpu_seconds")}

def _global_batch(step: int, which: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 * step + which)
    return (torch.randn(GLOBAL_BATCH, 3, 8, 8, generator=g, dtype=torch.float64),
            torch.randint(0, 5, (GLOBAL_BATCH,), generator=g))


def _strategy_steps(name: str, steps: int, rows: slice, bn: str = "local") -> dict:
    """``steps`` steps of a tiny float64 supernet (3 cells, C 4, 8x8 RGB, 5 classes) on rows
    ``rows`` of fixed global batches; the resulting architecture, weights and buffers. ``bn``:
    BatchNorm with the statistics of the rank's rows (``local``), of the global batch
    (``sync``), or with fixed running statistics (``absent``: eval mode)."""
    torch.manual_seed(0)
    space = DartsCNNSpace("darts-7")
    net = convert_batchnorm(space.build_supernet(3, 5, layers=3, channels=4)
                                        .double(), bn == "sync")
    net.train(bn != "absent")
    noise = {"init_noise": 1e-3} if name == "nasp" else {}  # an option of NASP alone
    config = SearchConfig(layers=3, channels=4, strategy=name, device="cpu", **noise)
    strategy = build_strategy(name, space, net, config)
    for step in range(steps):
        (xt, yt), (xv, yv) = _global_batch(step, 0), _global_batch(step, 1)
        strategy.step((xt[rows], yt[rows]), (xv[rows], yv[rows]))
    return {"arch": {t: a.detach().clone() for t, a in strategy.arch.items()},
            "params": [p.detach().clone() for p in net.parameters()],
            "buffers": [b.detach().clone() for b in net.buffers() if b.is_floating_point()]}


def _search_config(out: Path):
    return preset("tiny", epochs=1, subset=64, batch_size=32, init_noise=1e-3, device="cpu",
                  sync_bn=True, out=str(out))


def _quiet_search(config):
    result = search(config, progress=False, plots=False, log=lambda s: None)
    return {"arch": {t: a.detach().clone() for t, a in result.strategy.arch.items()},
            "history": [_untimed(r) for r in result.history],
            "run_dir": str(result.run_dir)}


def _worker(rank: int, tmp: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank,
                            world_size=WORLD)
    mine = slice(rank * GLOBAL_BATCH // WORLD, (rank + 1) * GLOBAL_BATCH // WORLD)
    saw = {"rank": rank, "shard": distributed.shard()}
    for name in STRATEGIES:
        if name in STEPS:
            saw[f"steps-{name}"] = _strategy_steps(name, STEPS[name], mine)
        saw[f"one-{name}"] = _strategy_steps(name, 1, mine, BATCH_STATS[name])
    saw["part"] = distributed.part(_dataset(5)).labels.tolist()
    saw["search"] = _quiet_search(_search_config(Path(tmp) / "search"))
    try:
        distributed.run_dir(Path(tmp) / "search")
    except RunDirError as err:
        saw["run_dir_error"] = str(err)
    trained = train("DARTS_V2", train_preset("tiny", epochs=1, subset=64, device="cpu",
                                             out=str(Path(tmp) / "train")),
                    progress=False, plots=False, log=lambda s: None)
    saw["train"] = {"params": [p.detach().clone() for p in trained.net.parameters()],
                    "history": [_untimed(r) for r in trained.history]}
    torch.save(saw, Path(tmp) / f"rank{rank}.pt")
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """What each of the 2 ranks saw (a list indexed by rank)."""
    tmp = tmp_path_factory.mktemp("dist")
    context = mp.start_processes(_worker, args=(str(tmp),), nprocs=WORLD, join=False,
                                 start_method="spawn")
    deadline = time.monotonic() + TIMEOUT
    try:
        while not context.join(timeout=5):
            if time.monotonic() > deadline:
                pytest.fail(f"the {WORLD} processes did not finish in {TIMEOUT} s")
    finally:
        for p in context.processes:
            if p.is_alive():
                p.kill()
    return tmp, [torch.load(tmp / f"rank{r}.pt") for r in range(WORLD)]


def _assert_close(a, b, **tol):
    for t in a["arch"]:
        torch.testing.assert_close(a["arch"][t], b["arch"][t], **tol)
    for key in ("params", "buffers"):
        assert len(a[key]) == len(b[key])
        for x, y in zip(a[key], b[key]):
            torch.testing.assert_close(x, y, **tol)


# -- several processes ------------------------------------------------------------------------
@pytest.mark.parametrize("name", STRATEGIES)
def test_every_rank_holds_the_same_architecture_and_weights(ranks, name):
    _, (r0, r1) = ranks
    key = f"steps-{name}" if name in STEPS else f"one-{name}"
    a, b = r0[key], r1[key]
    for t in a["arch"]:
        assert torch.equal(a["arch"][t], b["arch"][t]), t
    assert all(torch.equal(x, y) for x, y in zip(a["params"], b["params"]))
    if name in STEPS:  # the ranks did see different data: their own BatchNorm statistics differ
        assert not all(torch.equal(x, y) for x, y in zip(a["buffers"], b["buffers"]))
    # and the architecture did move away from its start
    start = _strategy_steps(name, 0, slice(None))
    assert not all(torch.equal(a["arch"][t], start["arch"][t]) for t in a["arch"])


@pytest.mark.parametrize("name", STRATEGIES)
def test_two_rank_step_equals_one_rank_step_on_the_global_batch(ranks, name, one_thread):
    _, (r0, r1) = ranks
    stats = "absent" if BATCH_STATS[name] == "absent" else "local"  # plain BatchNorm
    reference = _strategy_steps(name, 1, slice(None), stats)
    start = _strategy_steps(name, 0, slice(None), stats)
    for r in (r0, r1):
        _assert_close(r[f"one-{name}"], reference, rtol=1e-9, atol=1e-12)
    # the step changed the weights by far more than the tolerance
    moved = max((p - q).abs().max().item() for p, q in zip(reference["params"],
                                                           start["params"]))
    assert moved > 1e-4


def test_search_loop_on_two_ranks_matches_one_process(ranks, tmp_path, one_thread):
    _, (r0, r1) = ranks
    a, b = r0["search"], r1["search"]
    assert a["history"] == b["history"]  # logged numbers are global, the same everywhere
    for t in a["arch"]:
        assert torch.equal(a["arch"][t], b["arch"][t])
    assert a["run_dir"] == b["run_dir"]
    # with synchronised BatchNorm the 2-rank search is the 1-process search
    single = _quiet_search(_search_config(tmp_path / "single"))
    two = r0["search"]
    for t in single["arch"]:
        torch.testing.assert_close(two["arch"][t], single["arch"][t], rtol=1e-5, atol=1e-6)
    (s,), (d,) = single["history"], two["history"]
    assert s["genotype"] == d["genotype"]
    for k in ("train_loss", "train_acc", "arch_loss", "child_val_loss", "child_val_acc"):
        assert d[k] == pytest.approx(s[k], rel=1e-4, abs=1e-6), k


def test_only_rank_zero_writes_the_run_directory(ranks):
    tmp, (r0, r1) = ranks
    run = tmp / "search"
    assert sorted(p.name for p in run.iterdir()) == ["arch.pt", "checkpoint.pt", "config.yaml",
                                                     "environment.json", "genotype.json",
                                                     "genotypes.json", "metrics.jsonl"]
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    assert len(json.loads((run / "environment.json").read_text())) == 1  # one start, rank 0's
    # a used directory is refused on every rank with rank 0's message
    assert "already holds a run" in r0["run_dir_error"]
    assert r1["run_dir_error"] == r0["run_dir_error"]


def test_train_with_ddp_on_two_ranks(ranks):
    tmp, (r0, r1) = ranks
    a, b = r0["train"], r1["train"]
    assert all(torch.equal(x, y) for x, y in zip(a["params"], b["params"]))
    assert a["history"] == b["history"] and len(a["history"]) == 1
    assert 0 <= a["history"][0]["test_acc"] <= 1
    run = tmp / "train"
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    assert (run / "last.pt").is_file() and (run / "best.pt").is_file()


def test_evaluation_parts_make_up_the_split(ranks):
    _, (r0, r1) = ranks
    assert r0["shard"] == (0, 2) and r1["shard"] == (1, 2)
    assert r0["part"] + r1["part"] == _dataset(5).labels.tolist()
    assert len(r0["part"]) == 2


# -- one process ------------------------------------------------------------------------------
def _dataset(n: int) -> ImageDataset:
    g = torch.Generator().manual_seed(n)
    return ImageDataset("random", torch.randint(0, 256, (n, 3, 8, 8), generator=g,
                                                dtype=torch.uint8),
                        torch.arange(n) % 3, ("a", "b", "c"), (0.5,) * 3, (0.25,) * 3,
                        flip=True, crop_padding=2)


@pytest.mark.parametrize("world", [2, 3])
def test_shards_make_up_the_global_batches(world):
    ds = _dataset(21)  # batches of 6: 6, 6, 6 and a last one of 3

    def epoch(shard):
        batches = Batches(ds, 6, augment=True, cutout=3, shard=shard,
                          generator=torch.Generator().manual_seed(7))
        return [b for _ in range(2) for b in batches], len(batches)

    whole, n = epoch(None)
    parts = [epoch((r, world)) for r in range(world)]
    assert [len(p[0]) for p in parts] == [2 * n] * world  # the last batch (3 rows) is kept
    for i, (x, y) in enumerate(whole):
        kept = len(y) - len(y) % world
        xs = torch.cat([p[0][i][0] for p in parts])
        ys = torch.cat([p[0][i][1] for p in parts])
        assert len(ys) == kept and all(len(p[0][i][1]) == kept // world for p in parts)
        assert torch.equal(xs, x[:kept]) and torch.equal(ys, y[:kept])


def test_a_final_batch_smaller_than_the_world_is_skipped():
    batches = Batches(_dataset(13), 6, shard=(1, 2), shuffle=False)  # 6, 6, 1
    assert len(batches) == 2 and len(list(batches)) == 2
    with pytest.raises(ValueError, match="dividing batch_size"):
        Batches(_dataset(13), 6, shard=(0, 4))


def test_single_process_is_unchanged(tmp_path):
    d = distributed.setup(SearchConfig(device="cpu"))
    assert (d.rank, d.world_size, d.owns_group, d.device) == (0, 1, False, torch.device("cpu"))
    assert distributed.shard() is None
    t = torch.ones(3)
    assert distributed.all_average(t) is t and distributed.all_sum(t) is t
    assert type(distributed.run_dir(tmp_path / "r")) is RunDir
    net = torch.nn.Sequential(torch.nn.BatchNorm2d(2))
    assert convert_batchnorm(net, True) is net
    assert type(net[0]) is torch.nn.BatchNorm2d


def test_global_batch_must_split_evenly(monkeypatch):
    for name, value in {"WORLD_SIZE": "3", "RANK": "0", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="--batch-size 32 .* multiple of 3"):
        distributed.setup(SearchConfig(batch_size=32, device="cpu"))
    assert not dist.is_initialized()


# -- torchrun end to end ----------------------------------------------------------------------
def _torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={WORLD}", "-m", "nasp", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)


def test_torchrun_search(tmp_path):
    found = _torchrun("search", "--preset", "tiny", "--epochs", "1", "--subset", "64",
                      "--device", "cpu", "--no-progress", "--no-plots", "--sync-bn",
                      "--out", str(tmp_path / "s"), cwd=tmp_path)
    assert found.returncode == 0, found.stderr[-3000:]
    assert found.stdout.count("epoch 1/1") == 1  # only rank 0 prints
    assert len((tmp_path / "s" / "metrics.jsonl").read_text().splitlines()) == 1
    assert "sync_bn: true" in (tmp_path / "s" / "config.yaml").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # nothing else written
