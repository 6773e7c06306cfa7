"""Search presets per search space: the library's preset() and the CLI's --preset/--space."""

import os
import subprocess
import sys

import yaml

from nasp import preset
from nasp.apps.cli import main
from nasp.config import PRESETS

# the NAS-Bench-201 paper's DARTS baseline (AutoDL-Projects, see the comment in PRESETS)
NB201_SEARCH = dict(dataset="cifar10", layers=5, channels=16, epochs=50, batch_size=64,
                    w_lr=0.025, w_lr_min=0.001, w_momentum=0.9, w_weight_decay=5e-4,
                    grad_clip=5.0, a_lr=3e-4, a_weight_decay=1e-3, a_betas=(0.5, 0.999))


def _values(config, names):
    return {name: getattr(config, name) for name in names}


def test_paper_is_per_space():
    """On nb201 the benchmark's network and the NAS-Bench-201 paper's search setting; on darts
    the NASP/DARTS setting as before; options given win over either."""
    config = preset("paper", space="nb201")
    assert config.space == "nb201" and config.primitives == "nb201"
    assert _values(config, NB201_SEARCH) == NB201_SEARCH
    for config in (preset("paper"), preset("paper", space="darts")):
        assert _values(config, ["space", "primitives", "dataset", "layers", "channels",
                                "epochs", "batch_size", "w_weight_decay"]) == dict(
            space="darts", primitives="darts-7", dataset="cifar10", layers=8, channels=16,
            epochs=50, batch_size=64, w_weight_decay=3e-4)
    config = preset("paper", space="nb201", layers=3, w_weight_decay=1e-4)
    assert (config.layers, config.channels, config.w_weight_decay) == (3, 16, 1e-4)


def test_a_space_without_its_own_values_takes_the_shared_ones(monkeypatch):
    from nasp.config import Preset

    monkeypatch.setitem(PRESETS, "mine", Preset(
        "a test", dict(layers=4, channels=6, epochs=3), spaces={"nb201": dict(layers=3)}))
    darts, nb201 = preset("mine"), preset("mine", space="nb201")
    assert (darts.layers, darts.channels, darts.epochs) == (4, 6, 3)
    assert (nb201.layers, nb201.channels, nb201.epochs) == (3, 6, 3)


def test_cli_paper_on_nb201_writes_the_nb201_setting(tmp_path):
    """`nasp search --preset paper --space nb201` resolves to the benchmark's network and search
    setting; only the data and the budget are cut down here (digits, 64 images, one epoch)."""
    out = tmp_path / "run"
    cut = dict(dataset="digits", subset=64, epochs=1, batch_size=8)
    assert main(["search", "--preset", "paper", "--space", "nb201", "--dataset", "digits",
                 "--subset", "64", "--epochs", "1", "--batch-size", "8", "--device", "cpu",
                 "--out", str(out), "--no-progress", "--no-plots"]) == 0
    written = yaml.safe_load((out / "config.yaml").read_text())
    written["a_betas"] = tuple(written["a_betas"])
    expected = {**NB201_SEARCH, **cut, "space": "nb201", "primitives": "nb201"}
    assert {name: written[name] for name in expected} == expected


def test_search_help_says_what_each_preset_is_per_space():
    result = subprocess.run([sys.executable, "-m", "nasp", "search", "--help"],
                            capture_output=True, text=True, env={**os.environ}, check=True)
    text = " ".join(result.stdout.split())
    assert "darts: cifar10, 8 cells, C 16, 50 epochs, batch 64;" in text
    assert "nb201: cifar10, N 5 cells per stage, C 16, 50 epochs, batch 64, w_weight_decay " \
           "0.0005" in text
