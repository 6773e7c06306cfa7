"""Run-level failures: a loss or weight going NaN, running out of memory, a full disk while a
checkpoint is written. Each is one paragraph with exit code 2, and nothing written is lost."""

import errno
import json
import os

import pytest
import torch

from nasp.apps.cli import main
from nasp.data import Batches
from nasp.engine.checkpoints import LAST
from nasp.engine.search import CHECKPOINT, resume_search
from nasp.errors import NonFiniteError, NotEnoughMemoryError, RunWriteError
from nasp.runtime.runs import RunDir
from nasp.strategies import NASP

pytestmark = pytest.mark.usefixtures("one_thread")

# 4 steps of 8 images per epoch
TINY = ["search", "--preset", "tiny", "--subset", "64", "--batch-size", "8", "--device", "cpu",
        "--no-progress", "--no-plots"]


def fails(capsys, argv, *needles):
    """Run the command; it must exit 2 with one paragraph holding every needle."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def at_step(monkeypatch, k, action):
    """Call ``action(strategy)`` at the ``k``-th NASP step (1-based) of the process, before it
    runs; ``action`` may return a replacement result."""
    step = NASP.step
    calls = [0]

    def patched(self, train, val):
        calls[0] += 1
        if calls[0] == k:
            action(self)
        return step(self, train, val)

    monkeypatch.setattr(NASP, "step", patched)


def poison(strategy):
    with torch.no_grad():
        next(strategy.net.parameters()).fill_(float("nan"))


def assert_finite_checkpoint(path, epoch, step):
    state = torch.load(path, weights_only=True)
    assert (state["epoch"], state["step"]) == (epoch, step)
    tensors = [*state["strategy"]["net"].values(), *state["strategy"]["arch"].values()]
    assert all(torch.isfinite(t).all() for t in tensors if t.is_floating_point())


@pytest.mark.parametrize("progress", [False, True])
def test_nan_loss_stops_the_search_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch,
                                                                      capsys, progress):
    out = tmp_path / "run"
    at_step(monkeypatch, 6, poison)  # epoch 2, step 2
    argv = [*TINY, "--epochs", "3", "--out", str(out)]
    if progress:
        argv.remove("--no-progress")
    fails(capsys, argv, "diverged", "NaN or infinite at epoch 2, step 2",
          "last good state, from the end of epoch 1")
    assert_finite_checkpoint(out / CHECKPOINT, 1, 0)
    assert [json.loads(line)["epoch"] for line in
            (out / "metrics.jsonl").read_text().splitlines()] == [1]
    assert not (out / "arch.pt").exists() and not (out / "genotype.json").exists()


def test_no_checkpoint_is_written_after_a_step_that_broke_the_weights(tmp_path, monkeypatch,
                                                                      capsys):
    out = tmp_path / "run"
    step = NASP.step

    def breaks_after_step_3(self, train, val):
        m = step(self, train, val)
        if not hasattr(self, "_steps"):
            self._steps = 0
        self._steps += 1
        if self._steps == 3:  # the loss of step 3 was finite; the weights are not any more
            poison(self)
        return m

    monkeypatch.setattr(NASP, "step", breaks_after_step_3)
    fails(capsys, [*TINY, "--epochs", "1", "--checkpoint-every", "1", "--out", str(out)],
          "weights or architecture parameters became NaN or infinite by epoch 1, step 3",
          "from epoch 1, step 2")
    assert_finite_checkpoint(out / CHECKPOINT, 0, 2)


def test_nan_loss_in_training_from_scratch(tmp_path, monkeypatch, capsys):
    out = tmp_path / "train"
    calls = [0]
    forward = Batches._batch

    def nan_images_in_the_third_training_batch(self, rows):
        x, y = forward(self, rows)
        if self.augment:  # a training batch, not a test batch
            calls[0] += 1
            if calls[0] == 3:
                x.fill_(float("nan"))
        return x, y

    monkeypatch.setattr(Batches, "_batch", nan_images_in_the_third_training_batch)
    fails(capsys, ["train", "DARTS_V2", "--preset", "tiny", "--subset", "64", "--channels", "4",
                   "--batch-size", "32", "--epochs", "3", "--device", "cpu", "--no-progress",
                   "--no-plots", "--out", str(out)],
          # 2 training batches per epoch: the third is the first of epoch 2
          "training diverged", "epoch 2, step 1", "last good state, from the end of epoch 1")
    state = torch.load(out / LAST, weights_only=True)
    assert state["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in state["model"].values()
               if t.is_floating_point())


@pytest.mark.parametrize("error, batch, expected", [
    (RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough "
                  "memory: you tried to allocate 4294967296 bytes."), "8",
     ["an allocation of 4.00 GiB failed", "try --batch-size 4"]),
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "1",
     ["try --channels 2 or fewer --layers"]),
])
def test_out_of_memory_says_what_would_fit(tmp_path, monkeypatch, capsys, error, batch,
                                           expected):
    out = tmp_path / "run"

    def run_out(strategy):
        raise error

    at_step(monkeypatch, 6, run_out)
    subset = "64" if batch == "8" else "8"  # 4 steps per epoch either way
    argv = [*TINY, "--epochs", "2", "--batch-size", batch, "--subset", subset, "--out",
            str(out)]
    fails(capsys, argv, "ran out of memory on cpu", f"--batch-size {batch}", *expected,
          "last good state, from the end of epoch 1")
    assert_finite_checkpoint(out / CHECKPOINT, 1, 0)


def test_other_runtime_errors_are_not_disguised(tmp_path, monkeypatch):
    def broken(strategy):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    at_step(monkeypatch, 1, broken)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        main([*TINY, "--epochs", "1", "--out", str(tmp_path / "run")])


def fill_disk_on(monkeypatch, name, nth):
    """The ``nth`` atomic write of run file ``name`` fails at fsync with ENOSPC (after its data
    went to the temporary file, as a disk filling up mid-write would)."""
    import nasp.runtime.atomic as atomic

    temporary = {}
    writes = [0]
    mkstemp, fsync = atomic.tempfile.mkstemp, os.fsync

    def recording_mkstemp(*args, **kwargs):
        fd, path = mkstemp(*args, **kwargs)
        temporary[fd] = path
        return fd, path

    def writing(fd):  # fd numbers are reused: check that it is still that temporary file
        path = temporary.get(fd)
        return (path is not None and os.path.basename(path).startswith(f".{name}.")
                and os.path.exists(path) and os.path.samestat(os.fstat(fd), os.stat(path)))

    def full_fsync(fd):
        if writing(fd):
            writes[0] += 1
            if writes[0] == nth:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return fsync(fd)

    monkeypatch.setattr(atomic.tempfile, "mkstemp", recording_mkstemp)
    monkeypatch.setattr(atomic.os, "fsync", full_fsync)


def test_full_disk_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, monkeypatch,
                                                                     capsys):
    out = tmp_path / "run"
    fill_disk_on(monkeypatch, CHECKPOINT, 2)  # the end of epoch 2
    fails(capsys, [*TINY, "--epochs", "3", "--out", str(out)],
          f"could not write {out / CHECKPOINT}", os.strerror(errno.ENOSPC), "the disk is full",
          f"previous {CHECKPOINT} is unchanged", "--resume")
    assert_finite_checkpoint(out / CHECKPOINT, 1, 0)
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.undo()
    result = resume_search(out, progress=False, plots=False, log=lambda s: None)
    assert [r["epoch"] for r in result.history] == [1, 2, 3]


def test_full_disk_while_logging_metrics_keeps_the_earlier_lines(tmp_path, monkeypatch):
    run = RunDir(tmp_path / "run")
    run.log_metrics({"epoch": 1})
    before = run.file("metrics.jsonl").read_text()

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(RunWriteError, match="metrics.jsonl keeps its earlier lines"):
        run.log_metrics({"epoch": 2, "loss": 0.5})
    assert run.file("metrics.jsonl").read_text() == before


def test_output_directory_holding_a_run_is_refused_without_resume_or_overwrite(tmp_path,
                                                                                capsys):
    out = tmp_path / "run"
    assert main([*TINY, "--epochs", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    fails(capsys, [*TINY, "--epochs", "1", "--out", str(out)], f"--out {out} already holds a run",
          "--resume", "--overwrite")
    fails(capsys, [*TINY, "--epochs", "1", "--out", str(out), "--overwrite", "--resume"],
          "--resume")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_errors_are_user_errors():
    from nasp.apps.cli import USER_ERRORS

    for error in (NonFiniteError, NotEnoughMemoryError, RunWriteError):
        assert issubclass(error, USER_ERRORS)
