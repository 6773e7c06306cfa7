"""What the language-model tests share: a tiny written corpus, and a tiny recurrent supernet
honouring the contract of :mod:`nasp.tasks.windows` on a fake space registered only by the tests
(``fake-rnn``: NAS-Bench-201's 6 edges and 5 ops, each edge mapping a hidden vector)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from nasp.core.mixed import CellPlan
from nasp.spaces import NB201Space
from nasp.spaces.nb201.genotype import NB201Genotype

WORDS = [f"w{i}" for i in range(12)]


def write_corpus(folder: Path, lines=(40, 12, 8), seed: int = 0) -> Path:
    """A corpus of random sentences of 1-8 words (train, valid, test line counts)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in zip(("train", "valid", "test"), lines):
        text = "".join(" " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8))) + " \n"
                       for _ in range(n))
        (folder / f"{name}.txt").write_text(text)
    return folder


@dataclass
class Dropouts:
    output: float = 0.0


# ops of an edge by index: none, identity, tanh(Wh), relu(Wh), sigmoid(Wh)
class FakeRNNSupernet(nn.Module):
    """``h_t = tanh(node_3)`` of a DAG of 6 mixed edges over ``s0 = tanh(W [e(x_t), h_{t-1}])``;
    log-softmax decoder; output dropout; TAR penalty ``slowness * mean((h_{t+1} - h_t)^2)``."""

    def __init__(self, vocab: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.embed = nn.Embedding(vocab, hidden)
        self.w0 = nn.Linear(2 * hidden, hidden)
        self.edges = nn.ModuleList(nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(3))
                                   for _ in range(6))
        self.decoder = nn.Linear(hidden, vocab)
        self.dropouts = Dropouts()
        self.slowness = 0.0

    def _edge(self, e: int, s: torch.Tensor, k: int) -> torch.Tensor:
        if k == 0:
            return torch.zeros_like(s)
        if k == 1:
            return s
        return (torch.tanh, torch.relu, torch.sigmoid)[k - 2](self.edges[e][k - 2](s))

    def _mixed(self, e: int, s: torch.Tensor, plan) -> torch.Tensor:
        if plan.mode == "discrete":
            k = plan.selection[e]
            return torch.zeros_like(s) if k <= 0 else self._edge(e, s, k)
        return sum(plan.weights[e, k] * self._edge(e, s, k) for k in range(5))

    def forward(self, x, plans=None):
        plan = plans["cell"] if plans is not None else self.plan  # the evaluation network's
        tokens = x.tokens
        h = x.state if x.state is not None else tokens.new_zeros(
            tokens.shape[1], self.hidden, dtype=self.embed.weight.dtype)
        outputs = []
        for t in range(tokens.shape[0]):
            s0 = torch.tanh(self.w0(torch.cat([self.embed(tokens[t]), h], 1)))
            nodes, e = [s0], 0
            for j in range(1, 4):
                node = 0
                for i in range(j):
                    node = node + self._mixed(e, nodes[i], plan)
                    e += 1
                nodes.append(node)
            h = torch.tanh(nodes[-1])
            outputs.append(h)
        x.final = h
        out = torch.stack(outputs)
        dropped = F.dropout(out, self.dropouts.output, self.training)
        log_probs = F.log_softmax(self.decoder(dropped), -1).reshape(-1, self.decoder.out_features)
        if self.training and self.slowness > 0:
            return log_probs, self.slowness * (out[1:] - out[:-1]).pow(2).mean()
        return log_probs


class FakeRNNGenotype(NB201Genotype):
    """A cell of the fake space (NAS-Bench-201's arch string, space ``fake-rnn``)."""

    space = "fake-rnn"

    @classmethod
    def from_dict(cls, data):
        return cls.from_string(data["arch"])


class FakeRNNSpace(NB201Space):
    """NAS-Bench-201's cell structure for a recurrent network on text (tests only)."""

    name = "fake-rnn"
    data_kind = "text"
    primitive_sets = {"fake-rnn-ops": NB201Space.primitive_sets["nb201"]}
    default_primitives = "fake-rnn-ops"
    # a text space names its corpus in every preset (the shared ones name image sets)
    presets = {name: {"dataset": "ptb"} for name in ("tiny", "cpu", "paper", "faithful")}
    has_benchmark = False
    dropout = 0.1
    slowness = 1e-3

    def __init__(self, primitives: str = "fake-rnn-ops"):
        super().__init__("nb201")

    def build_supernet(self, in_channels, num_classes, layers, channels):
        net = FakeRNNSupernet(num_classes, channels)
        net.dropouts.output, net.slowness = self.dropout, self.slowness
        return net

    genotype_type = FakeRNNGenotype

    def build_evaluation_network(self, genotype, in_channels, num_classes, layers, channels):
        net = self.build_supernet(in_channels, num_classes, layers, channels)
        net.plan = CellPlan("discrete", selection=self.selection_of(genotype)["cell"])
        return net
