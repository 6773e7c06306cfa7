"""The trained model: the evaluation network of a genotype, its checkpoints, its size.

``nasp train`` writes two checkpoints into its run directory, ``last.pt`` (everything needed to
resume) and, when it holds out a validation split, ``best.pt`` (the weights of the epoch with the
best validation accuracy). Both hold the genotype, the :class:`~nasp.config.TrainConfig` and the
data shape, so :func:`load_trained` rebuilds the network from the file alone. Files are read with
``torch.load(weights_only=True)``: loading a checkpoint never runs code from it.

Checkpoints of an older nasp lack the configuration keys added since (:data:`OLDER_DEFAULTS`);
:func:`saved_config` reads them as the values that older nasp trained with.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nasp.config import TrainConfig, train_preset
from nasp.core.measure import flop_count, parameter_count
from nasp.data import DATASET_SHAPES, DataShape, known_shape, load_dataset
from nasp.errors import CheckpointError, ConfigError, GenotypeError
from nasp.spaces import Genotype, genotype_from_dict, resolve_genotype, space_of

__all__ = [
    "BEST",
    "CHECKPOINT_KIND",
    "LAST",
    "CheckpointError",
    "TrainedModel",
    "build_network",
    "data_shape",
    "load_trained",
    "model_info",
    "read_checkpoint",
    "saved_config",
]

LAST = "last.pt"
BEST = "best.pt"
CHECKPOINT_KIND = "nasp-train"

#: TrainConfig keys added after the first checkpoints were written, with the value that means
#: what the older nasp did: no validation split (it trained on every training image).
OLDER_DEFAULTS: dict[str, Any] = {"val_fraction": 0.0}


IMAGENET_SHAPE = DataShape(3, (224, 224), 1000)


def data_shape(dataset: str | None = None, *, network: str = "cifar",
               data_dir: str | os.PathLike | None = None, base: DataShape | None = None,
               in_channels: int | None = None, image_size: int | None = None,
               num_classes: int | None = None) -> DataShape:
    """The data shape of ``dataset``, else ``base``, with any of the given fields overriding it.

    A named data set's shape comes from :func:`nasp.data.known_shape` without reading any data;
    ``folder`` is read from ``data_dir``. With neither a data set nor ``base``: CIFAR-10's shape,
    or ImageNet's (3x224x224, 1000 classes) for ``network="imagenet"``.
    """
    if dataset is not None:
        key = dataset.strip().lower().replace("_", "-")
        shape = known_shape(key) or DataShape.of(load_dataset(key, data_dir, "train"))
    elif base is not None:
        shape = base
    else:
        shape = IMAGENET_SHAPE if network == "imagenet" else DATASET_SHAPES["cifar10"]
    for name, value in (("in_channels", in_channels), ("image_size", image_size),
                        ("classes", num_classes)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, "
                              f"got {value!r}")
    return DataShape(in_channels or shape.in_channels,
                     (image_size, image_size) if image_size else shape.image_size,
                     num_classes or shape.num_classes)


def build_network(genotype: Genotype, config: TrainConfig, shape: DataShape) -> nn.Module:
    """The evaluation network of ``genotype`` as ``config`` sizes it, for data of ``shape``: its
    space's :meth:`~nasp.spaces.base.SearchSpace.build_evaluation_network`.

    The auxiliary head (``auxiliary_weight > 0``) and the ImageNet stem (``network``) are asked
    for; a space whose network has none (NAS-Bench-201's: ``layers`` cells per stage, no
    auxiliary head, no drop-path) ignores them. Sizes the space cannot build are a
    :class:`ConfigError`.
    """
    space = space_of(genotype)
    try:
        space.check_sizes(config.layers, config.channels)
    except ValueError as err:
        raise ConfigError(f"{err} (the {space.name} space's network)") from None
    return space.build_evaluation_network(
        genotype, shape.in_channels, shape.num_classes, config.layers, config.channels,
        auxiliary=config.auxiliary_weight > 0, imagenet=config.network == "imagenet")


def load_checkpoint_file(path: Path, hint: str) -> Any:
    """``torch.load`` of ``path`` (weights only, to the CPU); a file torch cannot read is a
    :class:`CheckpointError` whose message ends with ``hint`` (what to do)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile,
            ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({first}); "
                              f"{hint}") from None


def read_checkpoint(path: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """``(file, contents)`` of a ``nasp train`` checkpoint; a run directory means its last.pt."""
    path = Path(path)
    hint = f"pass the {BEST} or {LAST} that nasp train writes into its run directory"
    if path.is_dir():
        if not (path / LAST).is_file():
            raise CheckpointError(f"directory {path} holds no {LAST}, so it is not a nasp train "
                                  f"run directory; {hint}")
        path = path / LAST
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; {hint}")
    data = load_checkpoint_file(path, hint)
    if not isinstance(data, dict) or data.get("kind") != CHECKPOINT_KIND:
        if isinstance(data, dict) and "strategy" in data:
            raise CheckpointError(
                f"{path} is a search checkpoint, not a trained model; train the searched cell "
                f"first with: nasp train {path.parent}")
        raise CheckpointError(f"{path} was not written by nasp train; {hint}")
    return path, data


def saved_config(config: Any, source: str) -> TrainConfig:
    """The :class:`TrainConfig` of a checkpoint's (or a record's) ``config`` mapping; keys it
    lacks because an older nasp wrote it take their :data:`OLDER_DEFAULTS` (so an old run
    resumes as it started), the others their defaults. ``source`` names it in errors."""
    if isinstance(config, dict):
        config = {**OLDER_DEFAULTS, **config}
    return TrainConfig.from_dict(config, source)


@dataclass
class TrainedModel:
    """A network rebuilt from a ``nasp train`` checkpoint, in eval mode."""

    net: nn.Module
    genotype: Genotype
    config: TrainConfig
    shape: DataShape
    data: dict[str, Any]
    epoch: int
    path: Path


def load_trained(path: str | os.PathLike, device: str | torch.device = "cpu") -> TrainedModel:
    """The trained network of checkpoint ``path`` (or of ``path/last.pt``) on ``device``."""
    path, checkpoint = read_checkpoint(path)
    try:
        genotype = genotype_from_dict(checkpoint["genotype"])
        config = saved_config(checkpoint["config"], f"the configuration in {path}")
        data = checkpoint["data"]
        shape = DataShape.from_record(data)
        net = build_network(genotype, config, shape)
        net.load_state_dict(checkpoint["model"])
    except (KeyError, TypeError, RuntimeError, GenotypeError) as err:
        raise CheckpointError(f"checkpoint {path} is incomplete or damaged ({err}); "
                              f"use another one, or train again") from None
    return TrainedModel(net.to(device).eval(), genotype, config, shape, data,
                        checkpoint["epoch"], path)


def model_info(spec: str | os.PathLike, *, layers: int | None = None,
               channels: int | None = None, network: str | None = None,
               dataset: str | None = None, data_dir: str | os.PathLike | None = None,
               in_channels: int | None = None, image_size: int | None = None,
               num_classes: int | None = None) -> dict[str, Any]:
    """Size of the evaluation network of a genotype or checkpoint ``spec``.

    A checkpoint (a ``.pt`` file or a train run directory) gives the sizes it was trained with;
    a genotype (see :func:`~nasp.spaces.resolve_genotype`) takes the ``paper`` train preset with
    the sizes of its space's paper (:attr:`~nasp.spaces.base.SearchSpace.evaluation_sizes`: 20
    cells, C 36 for a DARTS cell). Any argument given overrides them. Returns
    ``parameters`` (auxiliary head excluded), ``flops`` (:func:`~nasp.core.measure.flop_count`,
    one image), the genotype, the config and the data shape used.
    """
    path = Path(spec)
    if path.suffix == ".pt" or (path.is_dir() and (path / LAST).is_file()):
        trained = load_trained(path)
        genotype, config, base = trained.genotype, trained.config, trained.shape
    else:
        genotype = resolve_genotype(spec)
        config, base = train_preset("paper", **space_of(genotype).evaluation_sizes), None
    config = config.replace(layers=layers, channels=channels, network=network)
    shape = data_shape(dataset, network=config.network, data_dir=data_dir, base=base,
                       in_channels=in_channels, image_size=image_size, num_classes=num_classes)
    net = build_network(genotype, config, shape)
    return {"parameters": parameter_count(net), "flops": flop_count(net, shape.input_shape),
            "genotype": genotype, "config": config, "shape": shape}
