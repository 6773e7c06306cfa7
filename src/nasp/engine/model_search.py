"""The search of a user's own model: ``nasp.search(model, train_data, val_data, ...)``.

The model holds ``nasp.nn`` choices (:mod:`nasp.nn`); its space
(:func:`nasp.spaces.model_space`, one architecture row per label) is searched by the same
strategies (NASP, DARTS first and second order, random search, random search with weight
sharing) and the same run engine as the built-in spaces: :class:`_ModelSearchSession` is the
search session (:class:`~nasp.engine.search._SearchSession`: steps, epochs, child evaluation,
checkpoints, exact resume, ``metrics.jsonl``) with three things of its own:

- data: the user's training data trains the weights, the validation data the architecture and
  the per-epoch evaluation, both in memory as given (:mod:`nasp.data.tensors`: no
  normalisation or augmentation), in batches of ``batch_size``;
- task: cross-entropy classification, or the user's ``loss_fn``
  (:class:`~nasp.tasks.loss_function.LossFunctionTask`);
- output: ``arch.json``, the plain mapping ``{label: choice}`` (also ``genotype.json``,
  ``arch.pt``, ``genotypes.json`` as any search), the pictures and ``report.html`` of any search
  (:func:`~nasp.engine.pictures.write_pictures`; there is no cell to draw: the report shows the
  chosen option per label as a table); of the collapse diagnostics those of the architecture
  weights (entropy, changed choices: the others speak of the built-in op sets).

``config.yaml`` holds the run's options; its ``space``, ``primitives``, ``dataset``, ``layers``,
``channels``, ``subset`` and ``cutout`` do not apply. ``searched.json`` says what was searched:
the space's layout (:meth:`describe`: per label its kind, options and their names), from which
``nasp plot`` and ``nasp report`` rebuild the space without the model
(:func:`nasp.spaces.described_space`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nasp.config import SearchConfig
from nasp.core.measure import flop_count, parameter_count
from nasp.data.tensors import TensorBatches, TensorData, as_tensor_data
from nasp.engine.diagnostics import Diagnostics
from nasp.engine.reproducibility import resumed_config, use_deterministic_modules
from nasp.engine.search import (
    BATCHNORM_IMAGES,
    CHECKPOINT,
    _SearchSession,
    read_search_checkpoint,
)
from nasp.engine.search import search as search_config
from nasp.engine.search_console import legend
from nasp.engine.session import EpochClock, Output, RunSession
from nasp.errors import ConfigError, DatasetError
from nasp.runtime.runs import RunDir, default_run_dir
from nasp.spaces import Genotype, SearchSpace, model_space
from nasp.strategies import build_strategy
from nasp.tasks import ClassificationTask, Task
from nasp.tasks.loss_function import LossFunctionTask

__all__ = ["search", "search_model"]


class _WeightDiagnostics(Diagnostics):
    """The collapse diagnostics that apply to a model's choices: the entropy of every label's
    weights and the choices changed (:meth:`Diagnostics.measure_weights`); the parameter-free
    count names built-in ops and the op correlation hooks the built-in mixed edge."""

    def __init__(self, space: SearchSpace, arch: Mapping[str, torch.Tensor]):
        # no network or batch: the op correlation, which would run them, is not measured
        super().__init__(space, nn.Identity(), torch.zeros(()), arch)

    def measure(self, arch: Mapping[str, torch.Tensor], genotype: Any) -> dict[str, Any]:
        return self.measure_weights(arch)


class _ModelSearchSession(_SearchSession):
    """The search session over a user's model and in-memory data (see the module docstring)."""

    def __init__(self, config: SearchConfig, data: Any, device: torch.device, *,
                 space: SearchSpace, train: TensorData, val: TensorData, task: Task):
        RunSession.__init__(self, config, device)
        self.data = train
        self.val_data = val
        self.space = space
        self.bench = None
        self.net = space.build_supernet().to(device)
        if config.deterministic and device.type == "cuda":
            use_deterministic_modules(self.net)
        self.task = task
        self.strategy = build_strategy(config.strategy, space, self.net, config, task=task)
        self.generator = torch.Generator().manual_seed(config.seed)
        size = config.batch_size
        self.train_batches = TensorBatches(train, size, device=device, generator=self.generator)
        self.train_stream = self.train_batches.forever()
        self.val_stream = TensorBatches(val, size, device=device,
                                        generator=self.generator).forever()
        self.eval_batches = TensorBatches(val, 2 * size, device=device, shuffle=False)
        self.strategy.set_evaluator(self._evaluate)
        self.diagnostics = _WeightDiagnostics(space, self.strategy.arch)
        self.lr = 0.0
        self.batchnorm_batches = None if self.strategy.val_measure != "supernet" else \
            TensorBatches(train.take(slice(0, BATCHNORM_IMAGES)), size, device=device,
                          shuffle=False)
        self.start_genotype = self.strategy.genotype()
        self.cell_shown = False

    @staticmethod
    def load_data(config: SearchConfig) -> None:
        return None  # the data comes with the call (inputs), already in memory

    @classmethod
    def check_data(cls, data: Any, checkpoint: Mapping[str, Any], run_dir: Path) -> None:
        return None  # checked in load_state_dict, where the data is at hand

    def load_state_dict(self, checkpoint: Mapping[str, Any]) -> None:
        saved = checkpoint.get("data", {})
        if (saved.get("images"), saved.get("shape")) != (len(self.data),
                                                         list(self.data.images.shape[1:])):
            raise DatasetError(f"train_data ({len(self.data)} samples of "
                               f"{tuple(self.data.images.shape[1:])}) is not the data "
                               f"{self.config.out}/{CHECKPOINT} was searched on "
                               f"({saved.get('images')} samples of "
                               f"{tuple(saved.get('shape') or ())}); resume with the same data")
        super().load_state_dict(checkpoint)

    def write_inputs(self, run: RunDir) -> None:
        searched = {**self.space.describe(),
                    "train_samples": len(self.data), "val_samples": len(self.val_data),
                    "note": "config.yaml's space, primitives, dataset, data_dir, layers, "
                            "channels, subset and cutout do not apply to this run"}
        run.write_text("searched.json", json.dumps(searched, indent=2) + "\n")

    def begin_run(self, run: RunDir, output: Output) -> None:
        output.say(f"searching {self.config.strategy} on your model ({len(self.space.cell_types)}"
                   f" choice labels: {', '.join(self.space.cell_types)}; {len(self.data)} + "
                   f"{len(self.val_data)} samples) on {self.device}; run directory {run.path}")
        bn = 0 if self.batchnorm_batches is None else len(self.batchnorm_batches.dataset)
        measured = "accuracy (the loss where loss_fn's output is not class scores)" \
            if isinstance(self.task, LossFunctionTask) else "accuracy"
        for line in legend(self.strategy, None, len(self.val_data), bn, measured):
            output.say(line)

    def end_epoch(self, clock: EpochClock, steps: int) -> dict[str, Any]:
        record = super().end_epoch(clock, steps)
        if record.get("child_val_loss") is not None and record.get("child_val_acc") is None:
            record["train_acc"] = None  # a loss without accuracies (a regression)
        return record

    next_line = "  next: nasp.fix(model, arch) gives the plain network of the architecture"

    def write_results(self, run: RunDir, genotype: Genotype) -> None:
        run.write_text("arch.json", json.dumps(dict(genotype.plain()), indent=2) + "\n")

    def data_shape(self) -> tuple[tuple[int, ...], int]:
        return tuple(self.data.images.shape[1:]), 0

    def evaluation_size(self, genotype: Genotype) -> dict[str, Any]:
        """As the built-in spaces' evaluation network: the network ``nasp.fix`` gives."""
        net = self.space.build_evaluation_network(genotype)
        return {"parameters": parameter_count(net),
                "flops": flop_count(net, self.data_shape()[0]),
                "sizes": self.space.describe_sizes(0, 0)}


def search_model(model: nn.Module, train_data: Any, val_data: Any, strategy: str = "nasp", *,
                 epochs: int = 10, batch_size: int | None = None,
                 loss_fn: Callable[[Any, torch.Tensor], torch.Tensor] | None = None,
                 run_dir: str | Path | None = None, seed: int = 0, resume: bool = False,
                 overwrite: bool = False, progress: bool = True, plots: bool = True,
                 log: Callable[[str], None] = print, quiet: bool = False,
                 **options: Any) -> dict[str, Any]:
    """Search the ``nasp.nn`` choices of ``model``; return the architecture ``{label: choice}``.

    ``train_data`` trains the weights, ``val_data`` the architecture (and measures each epoch's
    child): each a pair of tensors ``(x, y)``, a ``Dataset`` or a ``DataLoader`` of ``(x, y)``,
    read into memory (:func:`~nasp.data.tensors.as_tensor_data`). ``strategy``: ``nasp``,
    ``darts``, ``darts2``, ``random`` or ``random-ws``. ``batch_size``: default the training
    DataLoader's, else 64. ``loss_fn(output, target)``: default cross-entropy. ``options``: any
    other option of a search run or of the strategy (``w_lr``, ``a_lr``, ``device``,
    ``precision``, ``random_samples``, ...; as in ``config.yaml``).

    The run directory (``run_dir``, default ``runs/search-model-STRATEGY-TIME``) gets what every
    search writes (``config.yaml``, ``metrics.jsonl``, ``checkpoint.pt``, pictures) and
    ``arch.json``. ``resume=True`` continues the search in ``run_dir`` from its checkpoint
    (with the same model and data), exactly as if it had not stopped. The search trains the
    model's own weights in place; :func:`nasp.fix` then gives the plain network.
    """
    train = as_tensor_data(train_data, "train_data")
    val = as_tensor_data(val_data, "val_data")
    if batch_size is None:
        batch_size = getattr(train_data, "batch_size", None) or 64
    first = next(model.parameters(), None)
    example = train.images[:2].to(first.device if first is not None else "cpu")
    space = model_space(model, example)
    task = ClassificationTask() if loss_fn is None else LossFunctionTask(loss_fn)
    given = sorted(k for k in ("max_params", "max_flops", "max_latency", "latency_table")
                   if options.get(k) is not None)
    if given:
        raise ConfigError(f"{', '.join(given)}: {space.budget_note}; leave the budget out")
    output = Output(log, progress, plots, quiet=quiet)
    inputs = {"space": space, "train": train, "val": val, "task": task}
    run = Path(run_dir) if run_dir is not None else None
    if resume and run is not None and (run / CHECKPOINT).is_file():
        checkpoint = read_search_checkpoint(run)
        saved = SearchConfig.from_dict(checkpoint["config"],
                                       f"the configuration in {run / CHECKPOINT}")
        changes = {"strategy": strategy, "epochs": epochs, "batch_size": batch_size,
                   "seed": seed, **options}
        config = resumed_config(saved, changes, run)
        result = _ModelSearchSession.resume(run, config, checkpoint, output=output, **inputs)
    else:
        out = run if run is not None else default_run_dir("search", "model", strategy)
        config = SearchConfig(strategy=strategy, epochs=epochs, batch_size=batch_size, seed=seed,
                              out=str(out), **{"memory_format": "contiguous", **options})
        result = _ModelSearchSession.start(config, label=strategy, overwrite=overwrite,
                                           output=output, **inputs)
    return result.genotype.plain()


def search(target: Any, *args: Any, **kwargs: Any) -> Any:
    """``nasp.search``: ``search(config)`` runs a search of a built-in space as
    :func:`nasp.engine.search.search` (a :class:`~nasp.config.SearchConfig`);
    ``search(model, train_data, val_data, ...)`` searches a model's ``nasp.nn`` choices
    (:func:`search_model`)."""
    if isinstance(target, nn.Module):
        return search_model(target, *args, **kwargs)
    return search_config(target, *args, **kwargs)
