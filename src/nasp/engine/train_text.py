"""Train a recurrent cell's language model from scratch on a text corpus, as DARTS's
``rnn/train.py`` does (the ``ptb-paper`` preset; ``ptb-cpu`` for a CPU).

The network is the cell's space's evaluation network, ``build_evaluation_network(genotype, 1,
vocab, layers, channels)`` (a :class:`~nasp.tasks.TokenWindow` in, log-probabilities out, the
TAR penalty beside them in training mode); ``config.dropouts`` (name -> probability) and
``config.slowness`` replace its own where given.

- data: the training split (its first ``subset`` tokens if given), batchified with
  ``batch_size``, in windows of AWD-LSTM's variable length (``bptt``, ``bptt_rule``;
  :class:`~nasp.data.TokenStream`), the hidden state carried across windows, from zeros at each
  epoch (one pass); the validation split evaluates (batch :data:`EVAL_BATCH`, windows of
  ``bptt``, from zeros) after every epoch; the test split only in ``nasp test``
  (:func:`evaluate_text_checkpoint`: batch 1, as DARTS);
- each step: loss ``nll + TAR`` (:class:`~nasp.tasks.LanguageModelTask`), the gradient norm
  clipped to ``grad_clip``, SGD (``lr`` times the window's length over ``bptt``, ``momentum``,
  ``weight_decay``); no lr schedule;
- averaged SGD: once more than ``nonmono`` epochs are recorded and the epoch's validation loss
  exceeds the least of those before the last ``nonmono``, SGD becomes ASGD (``t0 = 0``,
  ``lambd = 0``, same lr and weight decay), and from then on the averaged weights are the ones
  evaluated and kept; ``nonmono = 0``: never;
- pictures at the end (:func:`~nasp.engine.pictures.write_pictures`: the cell, ``curves.png``
  with the perplexities, ``timing.png``) unless ``plots`` is off;
- ``best.pt``: the (averaged) weights of the epoch with the lowest validation loss;
  ``last.pt``: everything to continue exactly (optimiser kind and state, both random streams,
  the stream's position, window lengths and carried state, the validation losses so far).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nasp.config import TrainConfig, train_preset
from nasp.core.measure import parameter_count
from nasp.data import Corpus, TokenStream, batchify, fixed_windows, load_corpus
from nasp.data.text import VOCAB_SIZES
from nasp.engine.checkpoints import BEST, CHECKPOINT_KIND, LAST, read_checkpoint, saved_config
from nasp.engine.pictures import write_pictures
from nasp.engine.reproducibility import restore_rng_state, rng_state
from nasp.engine.session import EpochClock, Output, RunSession
from nasp.engine.train_console import count_si, duration
from nasp.errors import CheckpointError, ConfigError, DatasetError, GenotypeError
from nasp.runtime import distributed
from nasp.runtime.device import resolve_device
from nasp.runtime.runs import RunDir
from nasp.spaces import Genotype, genotype_from_dict, resolve_genotype, space_of
from nasp.tasks import LanguageModelTask, TokenWindow, perplexity

__all__ = ["EVAL_BATCH", "TEST_BATCH", "TextTrainSession", "TrainedLanguageModel",
           "build_language_model", "evaluate_text_checkpoint", "is_text_checkpoint",
           "language_model_info", "load_language_model"]

#: Batch sizes of the validation and test evaluations (DARTS's ``eval_batch_size``, ``test``).
EVAL_BATCH, TEST_BATCH = 10, 1


def build_language_model(genotype: Genotype, config: TrainConfig, vocab: int) -> nn.Module:
    """The evaluation network of a recurrent ``genotype`` for ``vocab`` words, sized by
    ``config`` (``layers``, ``channels`` = hidden units), with ``config.dropouts`` and
    ``config.slowness`` applied."""
    space = space_of(genotype)
    if getattr(space, "data_kind", "image") != "text":
        raise ConfigError(f"--dataset {config.dataset} is a text corpus, and the cell to train "
                          f"is an image cell (of the {space.name} space): train a recurrent "
                          f"cell on it, or train this one on images")
    try:
        space.check_sizes(config.layers, config.channels)
    except ValueError as err:
        raise ConfigError(f"{err} (the {space.name} space's network)") from None
    net = space.build_evaluation_network(genotype, 1, vocab, config.layers, config.channels)
    if config.dropouts:
        try:
            net.dropouts = dataclasses.replace(net.dropouts, **config.dropouts)
        except TypeError:
            names = [f.name for f in dataclasses.fields(net.dropouts)]
            raise ConfigError(f"dropouts {sorted(config.dropouts)}: the {space.name} network's "
                              f"dropouts are {', '.join(names)}") from None
    if config.slowness is not None:
        net.slowness = config.slowness
    return net


def _splits(corpus: Corpus, config: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    n = config.subset
    return (corpus.train, corpus.valid) if n is None else (corpus.train[:n], corpus.valid)


def _corpus_record(corpus: Corpus) -> dict[str, Any]:
    return {"dataset": corpus.name, "vocab": corpus.vocab_size,
            "tokens": [corpus.train.numel(), corpus.valid.numel(), corpus.test.numel()]}


def _load_corpus(config: TrainConfig) -> Corpus:
    return load_corpus(config.dataset, config.data_dir)


class TextTrainSession(RunSession):
    """One training run of a language model (see the module docstring)."""

    kind, what, checkpoint_name = "train", "training", LAST
    loss_name, state_name = "the loss", "the weights"
    advice = "Lower --lr (or grad_clip in a --config file), or try another --seed."

    def __init__(self, config: TrainConfig, data: Corpus, device: torch.device,
                 genotype: Genotype):
        super().__init__(config, device)
        if distributed.world_size() > 1:
            raise ConfigError("training on a text corpus runs in one process: start it without "
                              "torchrun")
        self.genotype, self.corpus = genotype, data
        self.task = LanguageModelTask()
        self.net = build_language_model(genotype, config, data.vocab_size).to(device)
        self.optimizer = self._sgd()
        self.averaging = False  # ASGD since the switch
        self.generator = torch.Generator().manual_seed(config.seed)
        train, valid = _splits(data, config)
        self.train_stream = TokenStream(batchify(train, config.batch_size).to(device),
                                        config.bptt, self.generator, rule=config.bptt_rule,
                                        window=TokenWindow)
        self.train_batches = self.train_stream
        self.val_windows = list(fixed_windows(batchify(valid, EVAL_BATCH).to(device),
                                              config.bptt))
        self.val_losses: list[float] = []  # per epoch, the switch rule's memory
        self.best: dict[str, Any] = {"epoch": 0, "val_loss": math.inf}
        self.lr = config.lr

    load_data = staticmethod(_load_corpus)

    @classmethod
    def check_data(cls, data: Corpus, checkpoint: Mapping[str, Any], run_dir: Path) -> None:
        saved = checkpoint.get("data", {})
        if {k: saved.get(k) for k in ("vocab", "tokens")} != {
                k: _corpus_record(data)[k] for k in ("vocab", "tokens")}:
            raise DatasetError(f"the corpus at hand ({_corpus_record(data)}) is not the one "
                               f"{run_dir} was trained on ({saved}); point --data-dir at the "
                               f"same corpus")

    def write_inputs(self, run: RunDir) -> None:
        run.write_text("genotype.json", self.genotype.to_json() + "\n")

    # -- the optimiser and its averaged weights ----------------------------------------------
    def _sgd(self) -> torch.optim.Optimizer:
        c = self.config
        return torch.optim.SGD(self.net.parameters(), lr=c.lr, momentum=c.momentum,
                               weight_decay=c.weight_decay)

    def _switch_to_asgd(self) -> None:
        c = self.config
        self.optimizer = torch.optim.ASGD(self.net.parameters(), lr=c.lr, t0=0, lambd=0.0,
                                          weight_decay=c.weight_decay)
        self.averaging = True

    @contextmanager
    def averaged(self) -> Iterator[None]:
        """Within the block, under ASGD, the parameters hold their averages (``ax``)."""
        if not self.averaging:
            yield
            return
        saved = []
        with torch.no_grad():
            for p in self.net.parameters():
                saved.append(p.detach().clone())
                ax = self.optimizer.state.get(p, {}).get("ax")
                if ax is not None:
                    p.copy_(ax)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, s in zip(self.net.parameters(), saved):
                    p.copy_(s)

    # -- checkpoints -------------------------------------------------------------------------
    def watched(self) -> list[torch.Tensor]:
        return [*self.net.parameters(), *self.net.buffers()]

    def _model_state(self) -> dict[str, Any]:
        return {"kind": CHECKPOINT_KIND, "epoch": self.epoch, "step": self.step,
                "config": self.config.to_dict(), "genotype": self.genotype.to_dict(),
                "model": self.net.state_dict(), "data": _corpus_record(self.corpus)}

    def state_dict(self, seconds: float, cpu_seconds: float) -> dict[str, Any]:
        return {**self._model_state(),
                "optimizer": {"kind": "asgd" if self.averaging else "sgd",
                              "state": self.optimizer.state_dict()},
                "rng": rng_state(self.device, self.generator),
                "data_order": self.train_stream.state_dict(),
                "partial": {**self.sums.state_dict(), "seconds": seconds,
                            "cpu_seconds": cpu_seconds},
                "history": self.history, "best": self.best, "val_losses": self.val_losses}

    def load_state_dict(self, checkpoint: Mapping[str, Any]) -> None:
        self.net.load_state_dict(checkpoint["model"])
        if checkpoint["optimizer"]["kind"] == "asgd":
            self._switch_to_asgd()
        self.optimizer.load_state_dict(checkpoint["optimizer"]["state"])
        restore_rng_state(checkpoint["rng"], self.device, self.generator)
        self.train_stream.load_state_dict(checkpoint["data_order"])
        self.restore_position(checkpoint["epoch"], checkpoint["step"], checkpoint["partial"])
        self.history = list(checkpoint["history"])
        self.best = dict(checkpoint["best"])
        self.val_losses = [float(v) for v in checkpoint["val_losses"]]

    # -- the epochs --------------------------------------------------------------------------
    def begin_run(self, run: RunDir, output: Output) -> None:
        c = self.config
        output.say(f"training {self.genotype.compact()}")
        output.say(f"data: {c.dataset}, {self.train_stream.data.numel()} training tokens in "
                   f"{c.batch_size} streams, {sum(y.numel() for _, y in self.val_windows)} "
                   f"validation tokens, {self.corpus.vocab_size} words; bptt {c.bptt} "
                   f"({c.bptt_rule})")
        output.say(f"network: {c.layers} cell(s), {c.channels} units, "
                   f"{count_si(parameter_count(self.net))} parameters, on {self.device}; run "
                   f"directory {run.path}")

    def begin_epoch(self) -> int:
        self.net.train()
        return self.train_stream.begin_pass()

    def train_step(self) -> tuple[torch.Tensor, int]:
        window, targets = next(self.train_stream)
        groups = self.optimizer.param_groups
        for g in groups:
            g["lr"] = self.lr * window.steps / self.config.bptt
        self.optimizer.zero_grad(set_to_none=True)
        total, loss, log_probs = self.task.objective(self.net(window), targets)
        total.backward()
        if self.config.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.net.parameters(), self.config.grad_clip)
        self.optimizer.step()
        for g in groups:
            g["lr"] = self.lr
        n = targets.numel()
        return torch.stack([loss.detach().float() * n,
                            self.task.correct(log_probs, targets).float()]), n

    def end_epoch(self, clock: EpochClock, steps: int) -> dict[str, Any]:
        """Validate (the averaged weights under ASGD); switch to ASGD when validation stalls."""
        train_loss, train_acc = self.sums.means([self.sums.seen, self.sums.seen])
        with self.averaged():
            val = self.task.evaluate(self.net, self.val_windows)
        record = {"epoch": self.epoch + 1, "lr": self.lr,
                  "optimizer": "asgd" if self.averaging else "sgd",
                  "train_loss": train_loss, "train_ppl": perplexity(train_loss),
                  "train_acc": train_acc, "val_loss": val["loss"], "val_ppl": val["ppl"],
                  "val_acc": val["top1"]}
        n = self.config.nonmono
        if (not self.averaging and n and len(self.val_losses) > n
                and val["loss"] > min(self.val_losses[:-n])):
            self._switch_to_asgd()
            record["switched_to_asgd"] = True
        self.val_losses.append(val["loss"])
        record["seconds"] = clock.seconds()
        return record

    def epoch_done(self, run: RunDir, record: dict[str, Any]) -> None:
        """Keep the (averaged) weights of the lowest validation loss in best.pt."""
        if record["val_loss"] < self.best["val_loss"]:
            self.best = {"epoch": record["epoch"], "val_loss": record["val_loss"],
                         "val_ppl": record["val_ppl"]}
            with self.averaged():
                run.save_torch(BEST, {**self._model_state(), "best": dict(self.best)})

    def report_epoch(self, record: dict[str, Any], log: Callable[[str], None]) -> None:
        best = "*" if self.best["epoch"] == record["epoch"] else " "
        seconds = [r["seconds"] for r in self.history]
        left = sum(seconds) / len(seconds) * (self.config.epochs - self.epoch)
        switched = "  -> asgd" if record.get("switched_to_asgd") else ""
        log(f"epoch {record['epoch']}/{self.config.epochs}  {record['optimizer']}  train "
            f"{self.task.format({'loss': record['train_loss']})}  val "
            f"{self.task.format({'ppl': record['val_ppl']})}{best}  "
            f"{duration(record['seconds'])}  left {duration(left)}{switched}")

    def finish(self, run: RunDir, output: Output) -> tuple:
        """The closing lines; ``(run_dir, genotype, config, net, history, best)``, the fields
        of :class:`~nasp.engine.train.TrainResult`."""
        if self.history:
            last, best = self.history[-1], self.best
            seconds = sum(r["seconds"] for r in self.history)
            output.log(f"done: {last['epoch']} epochs in {duration(seconds)}; "
                       f"{count_si(parameter_count(self.net))} parameters")
            output.log(f"{LAST} (epoch {last['epoch']}): val ppl {last['val_ppl']:.2f}; {BEST} "
                       f"(epoch {best['epoch']}, the lowest val loss): val ppl "
                       f"{best['val_ppl']:.2f}")
            output.log(f"test perplexity: nasp test {run.path / BEST}")
        if output.plots:
            write_pictures(run.path, output.say)
        return (run.path, self.genotype, self.config, self.net, list(self.history),
                dict(self.best))


@dataclasses.dataclass
class TrainedLanguageModel:
    """A language model rebuilt from a ``nasp train --dataset ptb`` checkpoint, in eval mode:
    the network, its genotype and configuration, the checkpoint's contents and file."""

    net: nn.Module
    genotype: Genotype
    config: TrainConfig
    checkpoint: dict[str, Any]
    path: Path


def is_text_checkpoint(checkpoint: Mapping[str, Any]) -> bool:
    """Whether the contents of a ``nasp train`` checkpoint are a language model's."""
    return isinstance(checkpoint.get("data"), dict) and "vocab" in checkpoint["data"]


def load_language_model(path: str | Path, device: str | torch.device = "cpu"
                        ) -> TrainedLanguageModel:
    """The language model of checkpoint ``path`` (or of ``path/last.pt``) on ``device``, sized
    by the vocabulary it records (no corpus is read)."""
    path, checkpoint = read_checkpoint(path)
    try:
        config = saved_config(checkpoint["config"], f"the configuration in {path}")
        genotype = genotype_from_dict(checkpoint["genotype"])
        net = build_language_model(genotype, config, checkpoint["data"]["vocab"])
        net.load_state_dict(checkpoint["model"])
    except (KeyError, TypeError, RuntimeError, GenotypeError) as err:
        raise CheckpointError(f"checkpoint {path} is incomplete or damaged ({err}); use another "
                              f"one, or train again") from None
    return TrainedLanguageModel(net.to(device).eval(), genotype, config, checkpoint, path)


@torch.no_grad()
def evaluate_text_checkpoint(path: str | Path, data_dir: str | Path | None = None,
                             device: str = "auto") -> dict[str, Any]:
    """Validation (batch :data:`EVAL_BATCH`) and test (batch :data:`TEST_BATCH`) loss and
    perplexity of a language model's checkpoint, each split from a zero state in windows of
    its ``bptt``: ``val_loss``, ``val_ppl``, ``test_loss``, ``test_ppl``, ``epoch``,
    ``checkpoint``, ``dataset``."""
    device = resolve_device(device)
    trained = load_language_model(path, device)
    path, config, checkpoint = trained.path, trained.config, trained.checkpoint
    corpus = load_corpus(config.dataset, data_dir if data_dir is not None else config.data_dir)
    if checkpoint["data"].get("vocab") != corpus.vocab_size:
        raise DatasetError(f"{path} was trained on {checkpoint['data'].get('vocab')} words, "
                           f"the corpus at hand has {corpus.vocab_size}; point --data-dir "
                           f"at the same corpus")
    net = trained.net
    task = LanguageModelTask()
    result: dict[str, Any] = {"checkpoint": str(path), "epoch": checkpoint["epoch"],
                              "dataset": config.dataset}
    for split, batch in (("val", EVAL_BATCH), ("test", TEST_BATCH)):
        ids = corpus.valid if split == "val" else corpus.test
        m = task.evaluate(net, fixed_windows(batchify(ids, batch).to(device), config.bptt))
        result.update({f"{split}_loss": m["loss"], f"{split}_ppl": m["ppl"],
                       f"{split}_acc": m["top1"]})
    return result


def language_model_info(spec: str | Path, *, layers: int | None = None,
                        channels: int | None = None, vocab: int | None = None
                        ) -> dict[str, Any] | None:
    """``parameters`` of the language model of a recurrent cell or trained checkpoint ``spec``
    (with ``genotype``, ``config``, ``vocab``), or None when ``spec`` is not one (an image
    cell: :func:`~nasp.engine.checkpoints.model_info`). A cell takes the ``ptb-paper`` preset at
    its space's paper's sizes and Penn Treebank's 10,000 words; a checkpoint its own; the
    arguments given override them. Built on the ``meta`` device: no memory, no arithmetic."""
    path = Path(spec)
    if path.suffix == ".pt" or (path.is_dir() and (path / LAST).is_file()):
        path, checkpoint = read_checkpoint(path)
        data = checkpoint.get("data")
        if not (isinstance(data, dict) and "vocab" in data):
            return None
        config = saved_config(checkpoint["config"], f"the configuration in {path}")
        genotype, words = genotype_from_dict(checkpoint["genotype"]), data["vocab"]
    else:
        genotype = resolve_genotype(spec)
        space = space_of(genotype)
        if getattr(space, "data_kind", "image") != "text":
            return None
        config = train_preset("ptb-paper", **space.evaluation_sizes)
        words = VOCAB_SIZES[config.dataset]
    config = config.replace(layers=layers, channels=channels)
    words = vocab or words
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        net = build_language_model(genotype, config, words)
    return {"parameters": parameter_count(net), "genotype": genotype, "config": config,
            "vocab": words}
