"""The search on a text corpus: a recurrent space's language model on Penn Treebank, as DARTS's
``rnn/train_search.py`` runs it.

It is the search of :mod:`nasp.engine.search` (strategy steps, child evaluation, checkpoints,
exact resume, console, pictures) with text data instead of images:

- data: the corpus's training split, :func:`~nasp.data.batchify` d with ``batch_size``, trains the
  weights, read in windows of variable length (``bptt``, ``bptt_rule``:
  :class:`~nasp.data.TokenStream`); one epoch is one pass over it, every pass starting from a
  zero hidden state. The architecture steps read the VALIDATION split, batchified with the same
  batch size, in windows of ``bptt`` (DARTS's ``search_data``; DARTS indexes it at the training
  position modulo its length, this stream walks it in passes of its own). Each stream carries its
  own hidden state from window to window, detached;
- ``subset = N``: only the first N tokens of the training and of the validation split;
- the lr of each weight step is the schedule's times ``seq_len / bptt`` (the window's length,
  as DARTS), restored after the step; gradients clipped to ``grad_clip``;
- the child (and for DARTS the supernet, and the child with BatchNorm statistics recomputed on
  the first :data:`BATCHNORM_WINDOWS` training windows, state carried) is evaluated on the whole
  validation split in windows of ``bptt`` with batch :data:`EVAL_BATCH` (DARTS's), from zeros:
  ``*_val_loss``, ``*_val_ppl`` (perplexity), ``*_val_acc`` (next-word top-1); the console shows
  perplexities (:class:`~nasp.tasks.LanguageModelTask`);
- the checkpoint holds both streams' positions, window lengths and carried states.

The network is the space's ``build_supernet(1, vocab, layers, channels)``: the input is a
:class:`~nasp.tasks.TokenWindow`; ``channels`` is the hidden (and embedding) size. One process
(no data-parallel text search).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from nasp.config import SearchConfig
from nasp.core.measure import parameter_count
from nasp.data import Corpus, TokenStream, batchify, fixed_windows, load_corpus
from nasp.engine.diagnostics import Diagnostics
from nasp.engine.reproducibility import use_deterministic_modules
from nasp.engine.search import CHECKPOINT, SESSIONS, _SearchSession
from nasp.engine.search_console import legend
from nasp.engine.session import EpochClock, Output, RunSession
from nasp.errors import ConfigError, DatasetError
from nasp.runtime import distributed
from nasp.runtime.runs import RunDir
from nasp.spaces import Genotype, build_space, open_benchmark
from nasp.strategies import build_strategy
from nasp.tasks import TokenWindow, build_task, perplexity

__all__ = ["BATCHNORM_WINDOWS", "EVAL_BATCH", "CarriedWindows", "TextSearchSession"]

#: The batch size of the validation split's evaluation (DARTS's ``eval_batch_size``).
EVAL_BATCH = 10
#: Training windows (of ``bptt`` steps, the search's batch) a child's BatchNorm statistics are
#: recomputed on (a strategy with ``val_measure = "supernet"``: DARTS).
BATCHNORM_WINDOWS = 10


class CarriedWindows:
    """``(TokenWindow, targets)`` of fixed windows, each iteration from a zero state, each
    window starting from the state the network left in the one before (re-iterable)."""

    def __init__(self, pairs: Iterable[tuple[torch.Tensor, torch.Tensor]]):
        self.pairs = list(pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self) -> Iterator[tuple[TokenWindow, torch.Tensor]]:
        previous = None
        for tokens, targets in self.pairs:
            window = TokenWindow(tokens, None if previous is None else previous.next_state())
            yield window, targets
            previous = window


def _load_corpus(config: SearchConfig) -> Corpus:
    return load_corpus(config.dataset, config.data_dir)


def _tokens(corpus: Corpus) -> list[int]:
    return [corpus.train.numel(), corpus.valid.numel(), corpus.test.numel()]


class TextSearchSession(_SearchSession):
    """A search on a text corpus (see the module docstring)."""

    def __init__(self, config: SearchConfig, data: Corpus, device: torch.device):
        RunSession.__init__(self, config, device)
        if distributed.world_size() > 1:
            raise ConfigError("a search on a text corpus runs in one process: start it without "
                              "torchrun")
        self.data = data
        self.space = build_space(config.space, config.primitives)
        self.bench = open_benchmark(config, self.space)
        n = config.subset
        train, valid = (data.train, data.valid) if n is None else (data.train[:n], data.valid[:n])
        self.net = self.space.build_supernet(1, data.vocab_size, config.layers,
                                             config.channels).to(device)
        if config.deterministic and device.type == "cuda":
            use_deterministic_modules(self.net)
        self.task = build_task("language-model")
        self.strategy = build_strategy(config.strategy, self.space, self.net, config,
                                       task=self.task)
        self.generator = torch.Generator().manual_seed(config.seed)
        batch = config.batch_size
        self.train_stream = TokenStream(batchify(train, batch).to(device), config.bptt,
                                        self.generator, rule=config.bptt_rule,
                                        window=TokenWindow)
        self.train_batches = self.train_stream  # its len: the windows of the epoch's pass
        self.val_stream = TokenStream(batchify(valid, batch).to(device), config.bptt,
                                      self.generator, rule="fixed", window=TokenWindow)
        eval_data = batchify(valid, min(EVAL_BATCH, valid.numel() // 2)).to(device)
        self.eval_batches = list(fixed_windows(eval_data, config.bptt))
        self.eval_tokens = sum(y.numel() for _, y in self.eval_batches)
        self.strategy.set_evaluator(self._evaluate)
        first = next(fixed_windows(self.val_stream.data, config.bptt))[0]
        self.diagnostics = Diagnostics(self.space, self.net, TokenWindow(first),
                                       self.strategy.arch)
        self.lr = 0.0
        windows = list(fixed_windows(self.train_stream.data, config.bptt))[:BATCHNORM_WINDOWS]
        self.batchnorm_batches = (None if self.strategy.val_measure != "supernet"
                                  else CarriedWindows(windows))
        self.start_genotype = self.strategy.genotype()
        self.cell_shown = False

    load_data = staticmethod(_load_corpus)

    @classmethod
    def check_data(cls, data: Corpus, checkpoint: Mapping[str, Any], run_dir: Path) -> None:
        saved = checkpoint.get("data", {})
        if (saved.get("tokens"), saved.get("vocab")) != (_tokens(data), data.vocab_size):
            raise DatasetError(f"the corpus at hand ({_tokens(data)} tokens in train/valid/test, "
                               f"{data.vocab_size} words) is not the one {run_dir / CHECKPOINT} "
                               f"was searched on ({saved.get('tokens')} tokens, "
                               f"{saved.get('vocab')} words); point --data-dir at the same "
                               f"corpus")

    def data_record(self) -> dict[str, Any]:
        return {"tokens": _tokens(self.data), "vocab": self.data.vocab_size}

    def data_shape(self) -> tuple[tuple[int, ...], int]:
        return (), self.data.vocab_size  # no input shape; the vocabulary

    def evaluation_size(self, genotype: Genotype) -> dict[str, Any]:
        """Parameters of the cell's language model at the space's paper's sizes (built on the
        ``meta`` device: no memory, no random number)."""
        sizes = dict(self.space.evaluation_sizes)
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            net = self.space.build_evaluation_network(genotype, 1, self.data.vocab_size,
                                                      sizes["layers"], sizes["channels"])
        return {"parameters": parameter_count(net), "layers": sizes["layers"],
                "channels": sizes["channels"], "sizes": self.space.describe_sizes(**sizes)}

    def begin_run(self, run: RunDir, output: Output) -> None:
        config, n = self.config, self.config.batch_size
        sizes = self.space.describe_sizes(config.layers, config.channels)
        output.say(f"searching {config.strategy} on {config.dataset} "
                   f"({self.train_stream.data.numel()} + {self.val_stream.data.numel()} tokens "
                   f"in {n} streams, {self.data.vocab_size} words, bptt {config.bptt} "
                   f"{config.bptt_rule}) with {sizes}, primitives {config.primitives}, on "
                   f"{self.device}; run directory {run.path}")
        bn = 0 if self.batchnorm_batches is None else sum(
            y.numel() for _, y in self.batchnorm_batches.pairs)
        for line in legend(self.strategy, self.bench, self.eval_tokens, bn, task=self.task):
            output.say(line)

    def begin_epoch(self) -> int:
        steps = super().begin_epoch()
        return self.train_stream.begin_pass() if steps else 0

    def train_step(self) -> tuple[torch.Tensor, int]:
        """One strategy step; the weights' lr scaled by the window's length over ``bptt``."""
        window, targets = train = next(self.train_stream)
        groups = self.strategy.w_optim.param_groups
        saved = [g["lr"] for g in groups]
        for g, lr in zip(groups, saved):
            g["lr"] = lr * window.steps / self.config.bptt
        try:
            m = self.strategy.step(train, next(self.val_stream))
        finally:
            for g, lr in zip(groups, saved):
                g["lr"] = lr
        n = targets.numel()
        return torch.stack([m["train_loss"] * n, m["train_correct"].to(m["train_loss"].dtype),
                            m["arch_loss"]]), n

    def end_epoch(self, clock: EpochClock, steps: int) -> dict[str, Any]:
        """The image search's record, with the perplexity of every loss measured."""
        record = super().end_epoch(clock, steps)
        for key in ("train", "child_val", "supernet_val", "child_bn_val"):
            if f"{key}_loss" in record:
                record[f"{key}_ppl"] = perplexity(record[f"{key}_loss"])
        return record


SESSIONS["text"] = TextSearchSession
