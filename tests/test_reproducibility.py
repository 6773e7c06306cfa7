"""Reproducibility: a run's config.yaml replays it, deterministic mode, random states, and the
environment record."""

import json
import os
import random
import re
import subprocess

import numpy as np
import pytest
import torch

import nasp
from nasp.apps.cli import main
from nasp.core.mixed import CellPlan
from nasp.engine import reproducibility as common
from nasp.engine.reproducibility import (
    deterministic_mode,
    restore_rng_state,
    rng_state,
    source_commit,
    use_deterministic_modules,
)
from nasp.spaces import ChildNetwork
from nasp.spaces.darts_cnn.genotype import BUILTIN_GENOTYPES
from nasp.strategies import NASP

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["search", "--preset", "tiny", "--subset", "64", "--batch-size", "8", "--epochs", "2",
        "--device", "cpu", "--no-progress", "--no-plots"]


def test_config_yaml_replays_the_search(tmp_path, capsys, monkeypatch):
    first, replay = tmp_path / "first", tmp_path / "replay"
    seen = []
    step = NASP.step

    def recording_step(self, train, val):
        seen.append(torch.are_deterministic_algorithms_enabled())
        return step(self, train, val)

    monkeypatch.setattr(NASP, "step", recording_step)
    assert main([*TINY, "--seed", "5", "--init-noise", "0.001", "--deterministic",
                 "--out", str(first)]) == 0
    assert seen and all(seen) and not torch.are_deterministic_algorithms_enabled()
    # the file alone says everything: no preset, no other option than where to write
    assert main(["search", "--config", str(first / "config.yaml"), "--out", str(replay),
                 "--no-progress", "--no-plots"]) == 0
    assert (replay / "genotype.json").read_text() == (first / "genotype.json").read_text()
    a, b = torch.load(first / "arch.pt"), torch.load(replay / "arch.pt")
    assert all(torch.equal(a[t], b[t]) for t in a)
    config = (replay / "config.yaml").read_text()
    assert config == (first / "config.yaml").read_text().replace(str(first), str(replay))
    assert "deterministic: true" in config and "init_noise: 0.001" in config
    # and a different seed really searches differently (the comparison can fail)
    assert main([*TINY, "--seed", "6", "--init-noise", "0.001", "--out",
                 str(tmp_path / "other")]) == 0
    other = torch.load(tmp_path / "other" / "arch.pt")
    assert not all(torch.equal(a[t], other[t]) for t in a)


def test_environment_is_recorded(tmp_path):
    out = tmp_path / "run"
    assert main([*TINY, "--epochs", "1", "--deterministic", "--out", str(out)]) == 0
    (record,) = json.loads((out / "environment.json").read_text())
    assert record["event"] == "start" and record["deterministic"] is True
    assert (record["torch"], record["numpy"], record["nasp"]) == (
        torch.__version__, np.__version__, nasp.__version__)
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", record["python"])
    assert record["commit"] == "unknown" or re.fullmatch(r"[0-9a-f]{40}", record["commit"])
    assert record["device"] == "cpu" and record["threads"] >= 1


def test_source_commit_is_the_checkouts_or_unknown(monkeypatch):
    package = os.path.dirname(nasp.__file__)
    try:
        head = subprocess.run(["git", "-C", package, "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        tracked = subprocess.run(["git", "-C", package, "ls-files", "--error-unmatch",
                                  "__init__.py"], capture_output=True).returncode == 0
    except (OSError, subprocess.CalledProcessError):
        head, tracked = None, False
    assert source_commit()["commit"] == (head if tracked else "unknown")

    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(common.subprocess, "run", no_git)
    assert source_commit() == {"commit": "unknown", "modified": None}


def test_random_states_round_trip_through_a_checkpoint(tmp_path):
    generator = torch.Generator().manual_seed(3)
    common.seed_everything(11)
    np.random.normal()  # a cached Gaussian is part of NumPy's state
    torch.save(rng_state(torch.device("cpu"), generator), tmp_path / "rng.pt")
    draws = (random.random(), np.random.normal(), np.random.rand(), torch.rand(3),
             torch.rand(2, generator=generator))
    common.seed_everything(99)
    generator.manual_seed(99)
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True), torch.device("cpu"),
                      generator)
    again = (random.random(), np.random.normal(), np.random.rand(), torch.rand(3),
             torch.rand(2, generator=generator))
    assert draws[:3] == again[:3]
    assert torch.equal(draws[3], again[3]) and torch.equal(draws[4], again[4])


def test_deterministic_mode_sets_and_restores_the_settings(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    cudnn = torch.backends.cudnn
    before = (torch.are_deterministic_algorithms_enabled(), cudnn.deterministic,
              cudnn.benchmark)
    with deterministic_mode(True, torch.device("cuda")):  # only flags: no CUDA needed
        assert torch.are_deterministic_algorithms_enabled()
        assert cudnn.deterministic and not cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert (torch.are_deterministic_algorithms_enabled(), cudnn.deterministic,
            cudnn.benchmark) == before
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
    with deterministic_mode(False, torch.device("cuda")):
        assert torch.are_deterministic_algorithms_enabled() == before[0]
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ


def test_deterministic_modules_replace_adaptive_pooling_with_the_same_mean(tiny):
    space, net, train, _ = tiny
    plans = {t: CellPlan("discrete", selection=s) for t, s in
             space.selection_of(space.derive({t: torch.zeros(shape) for t, shape in
                                              space.arch_shapes().items()})).items()}
    before = net(train[0], plans)
    state = net.state_dict()
    assert use_deterministic_modules(net) == 1
    assert not any(isinstance(m, torch.nn.AdaptiveAvgPool2d) for m in net.modules())
    assert net.state_dict().keys() == state.keys()
    torch.testing.assert_close(net(train[0], plans), before)
    child = ChildNetwork(BUILTIN_GENOTYPES["DARTS_V2"], 3, 5, 3, 4, auxiliary=True)
    assert use_deterministic_modules(child) == 1
