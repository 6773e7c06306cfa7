"""Named starting configurations of a search (:class:`Preset`, per search space)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from nasp.config.search import SearchConfig
from nasp.errors import ConfigError


@dataclass(frozen=True)
class Preset:
    """A named starting configuration of a search, per search space.

    ``shared`` holds the values of every space; ``spaces`` maps a space to the values that are
    its own, which replace the shared ones of the same option (a space without an entry takes
    the shared values alone). Options named in neither keep :class:`SearchConfig`'s defaults.
    ``about`` says in a few words what the preset is for (``nasp search --help``).
    """

    about: str
    shared: dict[str, Any] = dataclasses.field(default_factory=dict)
    spaces: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def values(self, space: str) -> dict[str, Any]:
        """The preset's options on ``space``: the shared values, then the space's own."""
        return {**self.shared, **self.spaces.get(space, {})}


PRESETS: dict[str, Preset] = {
    "tiny": Preset("seconds: tests and smoke runs",
                   dict(dataset="digits", subset=256, layers=3, channels=4, epochs=2,
                        batch_size=32)),
    "cpu": Preset("digits on a laptop CPU in a minute or two"),
    "paper": Preset(
        "the search setting of the space's paper: NASP's and DARTS's on darts, that of the "
        "NAS-Bench-201 paper's DARTS baseline on nb201",
        # NASP and DARTS on the DARTS space: CIFAR-10, 8 cells, C 16, 50 epochs, batch 64 (the
        # optimisers are SearchConfig's defaults, the DARTS code's)
        dict(dataset="cifar10", layers=8, channels=16, epochs=50, batch_size=64),
        spaces={
            # The NAS-Bench-201 paper's one-shot baselines (Dong & Yang, ICLR 2020), as
            # AutoDL-Projects runs them (github.com/D-X-Y/AutoDL-Projects): the network is
            # the benchmark's own, N 5 cells per stage and C 16 (scripts-search/NAS-Bench-201-
            # algos/DARTS-V1.sh: --channel 16 --num_cells 5). The weights
            # (configs/nas-benchmark/algos/DARTS.config): SGD, lr 0.025 cosine down to
            # eta_min 0.001 over 50 epochs, no warm-up, momentum 0.9, nesterov, weight decay
            # 5e-4, batch 64; gradient clipping 5 (exps/NAS-Bench-201-algos/DARTS-V1.py's
            # default). The architecture (DARTS-V1.sh and DARTS-V1.py): Adam, lr 3e-4, weight
            # decay 1e-3, betas (0.5, 0.999). Data: CIFAR-10's 50,000 training images in two
            # disjoint halves of 25,000 (configs/nas-benchmark/cifar-split.txt, a fixed random
            # split), one for the weights and one for the architecture. Differences here: the
            # two halves are a seeded, class-stratified split (nasp.data.search_split),
            # and the weights' SGD is plain momentum (SearchConfig has no nesterov option).
            # GDAS.config is the same but for 240 epochs.
            "nb201": dict(dataset="cifar10", layers=5, channels=16, epochs=50, batch_size=64,
                          w_lr=0.025, w_lr_min=0.001, w_momentum=0.9, w_weight_decay=5e-4,
                          grad_clip=5.0, a_lr=3e-4, a_weight_decay=1e-3, a_betas=(0.5, 0.999)),
        }),
    "faithful": Preset(
        "NASP exactly as its paper and released code: the paper preset's data and network, no "
        "warm-up, the cell derived from softmax(A), every weight decayed each step",
        # the NASP paper (Yao et al., AAAI 2020) and xujinfan/NASP-codes: A = 0.5 (no noise),
        # Adam 3e-4 / (0.5, 0.999) / 1e-3, SGD 0.025 cosine to 0.001, momentum 0.9, weight decay
        # 3e-4, clip 5 (SearchConfig's defaults); Algorithm 2; genotype() on softmax(A); every
        # parameter has a zeroed gradient each step. On nb201 (not in the paper) the benchmark's
        # network, N 5, C 16.
        dict(dataset="cifar10", layers=8, channels=16, epochs=50, batch_size=64,
             strategy="nasp", warmup_epochs=0, nasp_cell="softmax", unselected_weights="decay",
             arch_update="lazy", init_noise=0.0, a_lr=3e-4),
        spaces={"nb201": dict(layers=5, channels=16)}),
}
"""The search presets by name; ``nasp search --preset NAME`` starts from one."""


def preset(name: str, **overrides: Any) -> SearchConfig:
    """The named preset on the space of ``overrides`` (default: :class:`SearchConfig`'s),
    with ``overrides`` applied (None values ignored)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    space = overrides.get("space") or SearchConfig.space
    return SearchConfig(**PRESETS[name].values(space)).replace(**overrides)


def describe_preset(name: str, space: str) -> str:
    """What the named preset is on ``space`` in a few words, such as ``cifar10, 8 cells, C 16,
    50 epochs, batch 64``; options other than the data and the size and schedule of the search
    are named when they differ from :class:`SearchConfig`'s defaults."""
    values = preset(name, space=space).to_dict()
    defaults = SearchConfig(space=space).to_dict()
    cells = (f"N {values['layers']} cells per stage" if space == "nb201"
             else f"{values['layers']} cells")
    parts = [values["dataset"] + ("" if values["subset"] is None
                                  else f" ({values['subset']} images)"),
             cells, f"C {values['channels']}", f"{values['epochs']} epochs",
             f"batch {values['batch_size']}"]
    shown = {"space", "dataset", "subset", "layers", "channels", "epochs", "batch_size"}
    parts += [f"{key} {value}" for key, value in values.items()
              if key not in shown and value != defaults[key]]
    return ", ".join(parts)
