"""Named starting configurations of a search (:class:`Preset`), with each space's own values."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from nasp.config.search import SearchConfig
from nasp.errors import ConfigError
from nasp.spaces import SPACES

__all__ = ["PRESETS", "Preset", "describe_preset", "preset"]


@dataclass(frozen=True)
class Preset:
    """A named starting configuration of a search, per search space.

    ``shared`` holds the values of every space. Each space declares its own values of the
    preset (its :attr:`~nasp.spaces.base.SearchSpace.presets` under the preset's name: network
    sizes, the optimisers of the space's paper), which replace the shared ones of the same
    option; ``spaces`` maps a space to further values of its own given here (for a preset the
    spaces do not know, e.g. one a user adds). A space without values of its own takes the
    shared values alone; options named nowhere keep :class:`SearchConfig`'s defaults.
    ``about`` says in a few words what the preset is for (``nasp search --help``).
    """

    about: str
    shared: dict[str, Any] = dataclasses.field(default_factory=dict)
    spaces: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def values(self, space: str, name: str | None = None) -> dict[str, Any]:
        """The preset's options on ``space``: the shared values, then those the space declares
        for the preset ``name``, then the space's own here."""
        declared = SPACES[space].presets.get(name, {}) if name and space in SPACES else {}
        return {**self.shared, **declared, **self.spaces.get(space, {})}


PRESETS: dict[str, Preset] = {
    "tiny": Preset("seconds: tests and smoke runs",
                   dict(dataset="digits", subset=256, epochs=2, batch_size=32)),
    "cpu": Preset("digits on a laptop CPU in a minute or two"),
    # the search setting of NASP and DARTS on CIFAR-10: 50 epochs, batch 64 (the sizes and any
    # other setting of a space's paper: the space's presets)
    "paper": Preset("the search setting of the space's paper",
                    dict(dataset="cifar10", epochs=50, batch_size=64)),
    "faithful": Preset(
        "NASP exactly as its paper and released code: the paper preset's data and network, no "
        "warm-up, the cell derived from softmax(A), every weight decayed each step",
        # the NASP paper (Yao et al., AAAI 2020) and xujinfan/NASP-codes: A = 0.5 (no noise),
        # Adam 3e-4 / (0.5, 0.999) / 1e-3, SGD 0.025 cosine to 0.001, momentum 0.9, weight decay
        # 3e-4, clip 5 (SearchConfig's defaults); Algorithm 2; genotype() on softmax(A); every
        # parameter has a zeroed gradient each step.
        dict(dataset="cifar10", epochs=50, batch_size=64, strategy="nasp", warmup_epochs=0,
             nasp_cell="softmax", unselected_weights="decay", arch_update="lazy",
             init_noise=0.0, a_lr=3e-4)),
}
"""The search presets by name; ``nasp search --preset NAME`` starts from one."""


def preset(name: str, **overrides: Any) -> SearchConfig:
    """The named preset on the space of ``overrides`` (default: :class:`SearchConfig`'s),
    with ``overrides`` applied (None values ignored)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    space = overrides.get("space") or SearchConfig.space
    values = {**PRESETS[name].values(space, name), "space": space}  # checked on its own space
    return SearchConfig(**values).replace(**overrides)


def describe_preset(name: str, space: str) -> str:
    """What the named preset is on ``space`` in a few words, such as ``cifar10, 8 cells, C 16,
    50 epochs, batch 64``; options other than the data and the size and schedule of the search
    are named when they differ from :class:`SearchConfig`'s defaults."""
    values = preset(name, space=space).to_dict()
    defaults = SearchConfig(space=space, layers=values["layers"],  # sizes: always shown
                            channels=values["channels"], dataset=values["dataset"]).to_dict()
    parts = [values["dataset"] + ("" if values["subset"] is None
                                  else f" ({values['subset']} images)"),
             SPACES[space].describe_sizes(values["layers"], values["channels"]),
             f"{values['epochs']} epochs", f"batch {values['batch_size']}"]
    shown = {"space", "dataset", "subset", "layers", "channels", "epochs", "batch_size"}
    parts += [f"{key} {value}" for key, value in values.items()
              if key not in shown and value != defaults[key]]
    return ", ".join(parts)
