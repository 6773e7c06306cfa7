"""The run engine on its own: a toy run (a linear regression, no search space, no image data)
through RunSession's life cycle: epochs, mid-epoch checkpoints, exact resume, the finiteness
check and its message."""

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from nasp.engine.reproducibility import restore_rng_state, rng_state
from nasp.engine.session import Output, RunSession
from nasp.errors import NonFiniteError

pytestmark = pytest.mark.usefixtures("one_thread")

QUIET = Output(log=lambda line: None, progress=False, plots=False)


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    """The options the engine reads of a configuration."""

    out: str | None = None
    seed: int = 0
    dataset: str = "toy"
    device: str = "cpu"
    deterministic: bool = False
    batch_size: int = 4
    channels: int = 1
    layers: int = 1
    epochs: int = 3
    checkpoint_every: int = 0

    def replace(self, **changes: Any) -> "ToyConfig":
        return dataclasses.replace(self, **changes)

    def to_yaml(self) -> str:
        return "".join(f"{k}: {v}\n" for k, v in dataclasses.asdict(self).items())


class Stop(Exception):
    """A run killed at a chosen step."""


class ToySession(RunSession):
    """Least squares with SGD on 16 random points; each step draws a batch of 4 indices from
    the run's generator (so an inexact resume would draw other batches)."""

    kind, what, checkpoint_name = "toy", "the toy run", "toy.pt"
    stop_at: tuple[int, int] | None = None    # (epoch, step) to raise Stop before
    poison_at: tuple[int, int] | None = None  # (epoch, step) whose loss is NaN

    def __init__(self, config, data, device):
        super().__init__(config, device)
        self.x, self.y = data
        self.net = nn.Linear(3, 1)  # initialised from the seeded global generator
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=0.1, momentum=0.9)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.train_batches = range(4)  # 4 steps per epoch

    @staticmethod
    def load_data(config):
        g = torch.Generator().manual_seed(123)
        return torch.randn(16, 3, generator=g), torch.randn(16, 1, generator=g)

    def begin_epoch(self) -> int:
        return 4

    def train_step(self):
        if (self.epoch, self.step) == self.stop_at:
            raise Stop
        i = torch.randint(16, (4,), generator=self.generator)
        loss = (self.net(self.x[i]) - self.y[i]).square().mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        if (self.epoch, self.step) == self.poison_at:
            loss = loss * float("nan")
        return torch.stack([loss.detach() * 4]), 4

    def end_epoch(self, clock, steps):
        (loss,) = self.sums.means([self.sums.seen])
        return {"epoch": self.epoch + 1, "loss": loss, "seconds": clock.seconds()}

    def watched(self):
        return list(self.net.parameters())

    def state_dict(self, seconds, cpu_seconds):
        return {"epoch": self.epoch, "step": self.step, "net": self.net.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "rng": rng_state(self.device, self.generator),
                "partial": {**self.sums.state_dict(), "seconds": seconds},
                "history": self.history}

    def load_state_dict(self, checkpoint):
        self.net.load_state_dict(checkpoint["net"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        restore_rng_state(checkpoint["rng"], self.device, self.generator)
        self.restore_position(checkpoint["epoch"], checkpoint["step"], checkpoint["partial"])
        self.history = list(checkpoint["history"])

    def finish(self, run, output):
        return {k: v.clone() for k, v in self.net.state_dict().items()}


def start(out: Path, **changes):
    return ToySession.start(ToyConfig(out=str(out), **changes), label="toy", overwrite=False,
                            output=QUIET)


def losses(out: Path):
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("stop_at", [(1, 3), (2, 0), (0, 3)])
def test_a_run_stopped_after_a_checkpoint_resumes_exactly(tmp_path, monkeypatch, stop_at):
    """Checkpoints after every 3rd step of the run (steps 3, 6, 9 of 12) and at epoch ends;
    a run killed at ``stop_at`` resumes from the last one and ends exactly as one that never
    stopped: the same weights bit for bit, the same metrics."""
    whole = start(tmp_path / "whole", checkpoint_every=3)
    monkeypatch.setattr(ToySession, "stop_at", stop_at)
    with pytest.raises(Stop):
        start(tmp_path / "killed", checkpoint_every=3)
    monkeypatch.setattr(ToySession, "stop_at", None)
    checkpoint = torch.load(tmp_path / "killed" / "toy.pt")
    position = checkpoint["epoch"] * 4 + checkpoint["step"]
    assert position == max(p for p in (3, 4, 6, 8, 9) if p <= stop_at[0] * 4 + stop_at[1])
    config = ToyConfig(out=str(tmp_path / "killed"), checkpoint_every=3)
    resumed = ToySession.resume(tmp_path / "killed", config, checkpoint, output=QUIET)
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    assert losses(tmp_path / "killed") == losses(tmp_path / "whole")
    assert len(losses(tmp_path / "whole")) == 3


def test_a_different_seed_ends_elsewhere(tmp_path):
    """(The comparison above can fail: another seed gives other weights.)"""
    a, b = start(tmp_path / "a"), start(tmp_path / "b", seed=1)
    assert not torch.equal(a["weight"], b["weight"])


def test_a_nan_loss_stops_the_run_before_the_next_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(ToySession, "poison_at", (1, 1))  # epoch 2, step 2
    with pytest.raises(NonFiniteError) as err:
        start(tmp_path / "run", checkpoint_every=3)
    message = str(err.value)
    assert "the toy run diverged: the loss became NaN or infinite at epoch 2, step 2" in message
    assert "(of 4 steps per epoch)" in message
    # step 6 (epoch 2, step 2) would have been checkpointed: the check refused it
    assert f"{tmp_path / 'run' / 'toy.pt'} still holds the last good state, from the end of " \
           f"epoch 1." in message
    checkpoint = torch.load(tmp_path / "run" / "toy.pt")
    assert (checkpoint["epoch"], checkpoint["step"]) == (1, 0)
    assert len(losses(tmp_path / "run")) == 1
