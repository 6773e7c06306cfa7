"""Exact resume: batch streams, mid-epoch checkpoints of search and train, a search killed with
SIGKILL, and the refusals of --resume."""

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nasp import Genotype, preset, train_preset
from nasp.apps.cli import main
from nasp.data import Batches, ImageDataset
from nasp.engine.checkpoints import LAST
from nasp.engine.search import CHECKPOINT, resume_search, search
from nasp.engine.train import resume, train
from nasp.errors import CheckpointError, ConfigError, RunInterrupted
from nasp.runtime.runs import RunDir

pytestmark = pytest.mark.usefixtures("one_thread")

QUIET = dict(progress=False, plots=False, log=lambda line: None)
SRC = Path(__file__).resolve().parents[1] / "src"


def tiny_search(tmp_path, name, subset=64, **changes):
    """4 steps of 8 images per epoch on the digits (``subset / 16`` steps in general)."""
    return preset("tiny", subset=subset, batch_size=8, device="cpu", out=str(tmp_path / name),
                  **changes)


def interrupt_after_checkpoint(monkeypatch, name, when):
    """Make the run stop (KeyboardInterrupt) right after writing checkpoint ``name`` for which
    ``when(contents)`` holds, as a kill at that moment would."""
    save = RunDir.save_torch

    def save_then_stop(self, file, obj):
        path = save(self, file, obj)
        if file == name and when(obj):
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(RunDir, "save_torch", save_then_stop)


def metrics(run):
    lines = Path(run, "metrics.jsonl").read_text().splitlines()
    timings = ("seconds", "cpu_seconds")
    return [{k: v for k, v in json.loads(line).items() if k not in timings} for line in lines]


def assert_same_arch(a, b):
    a = a if isinstance(a, dict) else torch.load(a)
    b = b if isinstance(b, dict) else torch.load(b)
    assert a.keys() == b.keys()
    for t in a:
        assert torch.equal(a[t], b[t]), t


def test_batch_stream_continues_exactly_from_a_saved_position():
    g = torch.Generator().manual_seed(0)
    ds = ImageDataset("ids", torch.randint(0, 256, (10, 1, 4, 4), dtype=torch.uint8),
                      torch.arange(10), tuple(map(str, range(10))), mean=(0.5,), std=(0.25,),
                      flip=True, crop_padding=1)
    first = Batches(ds, 4, augment=True, cutout=2, generator=g).forever()
    second = Batches(ds, 3, augment=True, generator=g).forever()  # shares the generator
    for _ in range(4):  # into the second epoch of the first stream
        next(first), next(second)
    state = (first.state_dict(), second.state_dict(), g.get_state())
    expected = [(next(first), next(second)) for _ in range(5)]

    g2 = torch.Generator()
    again = Batches(ds, 4, augment=True, cutout=2, generator=g2).forever()
    again_second = Batches(ds, 3, augment=True, generator=g2).forever()
    again.load_state_dict(state[0])
    again_second.load_state_dict(state[1])
    g2.set_state(state[2])
    assert again.position == 1
    for (a, b), (x, y) in zip(expected, [(next(again), next(again_second)) for _ in range(5)]):
        for u, v in zip((*a, *b), (*x, *y)):
            assert torch.equal(u, v)
    with pytest.raises(ValueError, match="position"):
        again.load_state_dict({"order": state[0]["order"], "position": 9})
    with pytest.raises(ValueError, match="order"):
        again.load_state_dict({"order": torch.arange(7), "position": 0})


@pytest.mark.parametrize("strategy, subset, epochs, checkpoint_every, at, extra", [
    ("nasp", 64, 2, 3, (0, 3), {}), ("random", 64, 2, 3, (0, 3), {}),
    ("random", 64, 2, 3, (1, 2), {}), ("darts", 32, 2, 1, (1, 1), {}),
    ("darts2", 32, 3, 1, (1, 1), {}),
    # resumed inside the warm-up: the sampled paths (and the later path-mixing draws) come
    # from the restored path generator
    ("nasp", 64, 2, 3, (0, 3), {"warmup_epochs": 1, "path_mix": 0.5}),
    ("random-ws", 64, 2, 3, (1, 2), {"random_samples": 4})])
def test_search_resumed_mid_epoch_equals_an_uninterrupted_search(tmp_path, monkeypatch,
                                                                 strategy, subset, epochs,
                                                                 checkpoint_every, at, extra):
    """Random search trains a fresh candidate each epoch: resuming in the first epoch must keep
    training candidate 1, resuming in the second must not restart candidate 2 again. DARTS and
    DARTS2 (2 steps per epoch, to keep them short) resume in the second epoch, with momentum
    buffers that DARTS2's virtual step reads; DARTS2 runs a third epoch, whose lr (its
    virtual-step size) comes from the restored lr schedule."""
    config = dict(epochs=epochs, checkpoint_every=checkpoint_every, strategy=strategy,
                  subset=subset, **extra)
    straight = search(tiny_search(tmp_path, "straight", **config), **QUIET)

    # subset 64: 4 steps per epoch, checkpoints after global steps 3 (epoch 1, step 3),
    # 4 (end of epoch 1), 6 (epoch 2, step 2); subset 32: 2 steps, a checkpoint after each
    interrupt_after_checkpoint(monkeypatch, CHECKPOINT,
                               lambda c: (c["epoch"], c["step"]) == at)
    with pytest.raises(KeyboardInterrupt):
        search(tiny_search(tmp_path, "resumed", **config), **QUIET)
    monkeypatch.undo()
    assert torch.load(tmp_path / "resumed" / CHECKPOINT)["step"] == at[1]
    assert not (tmp_path / "resumed" / "arch.pt").exists()
    torch.manual_seed(123)  # whatever happened to the global random state in between
    resumed = resume_search(tmp_path / "resumed", **QUIET)

    assert resumed.genotype == straight.genotype
    assert_same_arch(tmp_path / "straight" / "arch.pt", tmp_path / "resumed" / "arch.pt")
    a, b = straight.strategy.net.state_dict(), resumed.strategy.net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert metrics(tmp_path / "straight") == metrics(tmp_path / "resumed")
    assert len(metrics(tmp_path / "resumed")) == epochs
    events = [e["event"] for e in json.loads((tmp_path / "resumed" /
                                              "environment.json").read_text())]
    assert events == ["start", "resume"]


def test_train_resumed_mid_epoch_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    config = dict(subset=96, channels=4, epochs=2, cutout=3, drop_path=0.3, checkpoint_every=2,
                  device="cpu")  # 3 steps of 32 per epoch: checkpoints at steps 2, 4, 6
    straight = train("DARTS_V2", train_preset("tiny", out=str(tmp_path / "straight"), **config),
                     **QUIET)
    interrupt_after_checkpoint(monkeypatch, LAST, lambda c: c["epoch"] == 1 and c["step"] == 1)
    with pytest.raises(KeyboardInterrupt):
        train("DARTS_V2", train_preset("tiny", out=str(tmp_path / "resumed"), **config), **QUIET)
    monkeypatch.undo()
    torch.manual_seed(7)
    resumed = resume(tmp_path / "resumed", **QUIET)
    a, b = straight.net.state_dict(), resumed.net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert metrics(straight.run_dir) == metrics(resumed.run_dir)


def test_resume_refusals_keep_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["search", "--preset", "tiny", "--subset", "32", "--batch-size", "8", "--epochs",
            "1", "--device", "cpu", "--no-progress", "--no-plots"]
    assert main([*args, "--out", str(out)]) == 0
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def fails(argv, *needles):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        for needle in needles:
            assert needle in err, (needle, err)

    fails([*args, "--out", str(out)], "already holds a run", "--resume", "--overwrite")
    fails(["search", "--resume", str(out), "--epochs", "5"], "--epochs 5 (saved: 1)")
    fails(["search", "--resume", str(out), "--preset", "tiny"], "--preset")
    fails(["search", "--resume"], "--resume RUN_DIR")
    fails(["search", "--resume", str(tmp_path / "empty")], "no checkpoint.pt")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / CHECKPOINT).write_bytes(b"not a checkpoint")
    fails(["search", "--resume", str(tmp_path / "junk")], "not a readable PyTorch checkpoint")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # allowed changes, on a finished run: nothing is searched again, the result stays
    assert main(["search", "--resume", str(out), "--checkpoint-every", "2", "--no-progress",
                 "--no-plots", "--device", "cpu"]) == 0
    assert len(metrics(out)) == 1
    assert (out / "genotype.json").read_bytes() == before["genotype.json"]
    with pytest.raises(ConfigError, match="--seed 4"):
        resume_search(out, seed=4, **QUIET)
    with pytest.raises(CheckpointError, match="no last.pt"):
        resume(out, **QUIET)


def kill_after_checkpoint(child: subprocess.Popen, checkpoint: Path,
                          after_step: int = 0) -> tuple[int, int]:
    """SIGKILL the search ``child`` right after it writes a ``checkpoint`` past ``after_step``
    (it is paused with SIGSTOP while each new checkpoint is read); ``(epoch, step)`` of that
    checkpoint. Fails the test when the search ends first."""
    killed_at, seen = None, None
    try:
        while killed_at is None and child.poll() is None:
            time.sleep(0.01)
            try:
                stat = checkpoint.stat()
            except FileNotFoundError:
                continue
            if (stat.st_ino, stat.st_mtime_ns) == seen:  # each write renames a new file in
                continue
            child.send_signal(signal.SIGSTOP)
            stat = checkpoint.stat()
            seen = (stat.st_ino, stat.st_mtime_ns)
            state = torch.load(checkpoint, weights_only=True)
            if state["step"] > after_step:
                child.send_signal(signal.SIGKILL)
                killed_at = (state["epoch"], state["step"])
            else:
                child.send_signal(signal.SIGCONT)
    finally:
        if child.poll() is None and killed_at is None:
            child.kill()
        _, err = child.communicate()
    assert killed_at is not None, f"the search ended before a mid-epoch checkpoint: {err}"
    return killed_at


def test_a_search_killed_mid_epoch_and_resumed_ends_as_an_uninterrupted_one(tmp_path):
    """The real thing: ``nasp search`` in a subprocess, SIGKILL right after a mid-epoch
    checkpoint, ``nasp search --resume``; same genotype and bit-identical A as a straight run.

    To catch a mid-epoch checkpoint without assuming any speed, the child is paused (SIGSTOP)
    while its checkpoint is read, and killed only when that checkpoint is from mid-epoch.
    """
    out = tmp_path / "killed"
    args = ["--preset", "tiny", "--subset", "64", "--batch-size", "8", "--epochs", "2",
            "--checkpoint-every", "1", "--deterministic", "--device", "cpu", "--no-progress",
            "--no-plots"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])]), "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-m", "nasp", "search", *args, "--out", str(out)],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    killed_at = kill_after_checkpoint(child, out / CHECKPOINT)
    assert child.returncode == -signal.SIGKILL
    assert not (out / "arch.pt").exists()

    resumed = subprocess.run([sys.executable, "-m", "nasp", "search", "--resume", str(out),
                              "--no-progress", "--no-plots"], env=env, capture_output=True,
                             text=True, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert f"at epoch {killed_at[0] + 1}, step {killed_at[1]}" in resumed.stdout

    straight = search(preset("tiny", subset=64, batch_size=8, epochs=2, deterministic=True,
                             device="cpu", out=str(tmp_path / "straight")), **QUIET)
    assert Genotype.load(out / "genotype.json") == straight.genotype
    assert_same_arch(out / "arch.pt", tmp_path / "straight" / "arch.pt")
    assert metrics(out) == metrics(tmp_path / "straight")
    assert not list(out.glob(".*.tmp"))


def ctrl_c_at(monkeypatch, session, calls):
    """Make ``session``'s ``calls``-th step (counted from 1 over the whole run) raise
    KeyboardInterrupt, as Ctrl-C in the middle of that step would."""
    step, count = session.train_step, []

    def step_or_stop(self):
        count.append(1)
        if len(count) == calls:
            raise KeyboardInterrupt
        return step(self)

    monkeypatch.setattr(session, "train_step", step_or_stop)


def interrupted_message(capsys):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


def test_ctrl_c_says_what_was_kept_and_the_command_that_goes_on(tmp_path, monkeypatch, capsys):
    from nasp.engine.search import _SearchSession
    from nasp.engine.train import _TrainSession

    out = tmp_path / "my run"  # a space: the command must quote it
    args = ["--preset", "tiny", "--subset", "64", "--batch-size", "8", "--epochs", "2",
            "--checkpoint-every", "3", "--device", "cpu", "--no-progress", "--no-plots"]
    ctrl_c_at(monkeypatch, _SearchSession, 6)  # checkpoints after steps 3 and 4 (end of epoch 1)
    assert main(["search", *args, "--out", str(out)]) == 130
    monkeypatch.undo()
    line = interrupted_message(capsys)
    assert line == (f"nasp search: the search was interrupted; {out / CHECKPOINT} keeps it as "
                    f"of the end of epoch 1; continue with: nasp search --resume '{out}' "
                    f"--no-progress --no-plots")
    assert torch.load(out / CHECKPOINT)["epoch"] == 1
    command = shlex.split(line.split("continue with: ")[1])
    assert main(command[1:]) == 0
    assert len(metrics(out)) == 2 and (out / "genotype.json").is_file()

    ctrl_c_at(monkeypatch, _SearchSession, 3)  # a mid-epoch checkpoint after step 2
    with pytest.raises(RunInterrupted) as info:
        search(tiny_search(tmp_path, "api", checkpoint_every=2), **QUIET)
    assert isinstance(info.value, KeyboardInterrupt)
    assert (info.value.saved_at, info.value.run_dir) == ((0, 2), str(tmp_path / "api"))
    assert str(info.value).endswith("keeps it as of epoch 1, step 2")
    monkeypatch.undo()

    train_out = tmp_path / "train"
    train_args = ["train", "DARTS_V2", "--preset", "tiny", "--subset", "64", "--channels", "4",
                  "--epochs", "2", "--device", "cpu", "--no-progress", "--no-plots", "--out",
                  str(train_out)]
    ctrl_c_at(monkeypatch, _TrainSession, 1)  # before any checkpoint
    assert main(train_args) == 130
    monkeypatch.undo()
    line = interrupted_message(capsys)
    assert line == (f"nasp train: training was interrupted before its first checkpoint, so "
                    f"{train_out} holds nothing to resume from; start it again with: nasp "
                    f"{shlex.join(train_args)} --overwrite")
    steps = 2  # 64 images in batches of 32
    ctrl_c_at(monkeypatch, _TrainSession, steps + 1)
    assert main(shlex.split(line.split("start it again with: ")[1])[1:]) == 130
    monkeypatch.undo()
    line = interrupted_message(capsys)
    assert line.endswith(f"{train_out / LAST} keeps it as of the end of epoch 1; continue "
                         f"with: nasp train --resume --out {train_out} --no-progress --no-plots")
    assert main(shlex.split(line.split("continue with: ")[1])[1:]) == 0
    assert len(metrics(train_out)) == 2
