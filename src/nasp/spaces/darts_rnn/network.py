"""The language model around the DARTS recurrent cell (DARTS rnn/model.py ``RNNModel``, itself
AWD-LSTM's): embedding, dropouts, one cell, tied decoder, log-softmax.

``x`` is a :class:`~nasp.tasks.windows.TokenWindow`: tokens ``(T, B)`` and the hidden state
``(B, nhid)`` to start from (None: zeros). A forward pass

1. embeds the tokens (``Embedding(vocab, nhid)``, ``uniform(-0.1, 0.1)``), dropping whole words
   in training (``embedding_words``: a row of the embedding is zeroed for the whole window, the
   others scaled by ``1 / (1 - p)``), then locked dropout ``embedding_input`` (one mask over
   time);
2. runs the cell over the window (``input_x`` masks ``x_t``, ``hidden`` masks the states fed to
   the cell's matrix products, one mask each per window) and writes the last hidden state, not
   detached, into ``x.final``;
3. applies locked dropout ``output`` to the cell outputs, decodes them with the embedding matrix
   (tied weights, a zero-initialised bias) and returns log-probabilities ``(T * B, vocab)``.

In training mode with ``slowness > 0`` it returns ``(log_probs, penalty)``: the temporal
activation regularisation ``slowness * mean((h_{t+1} - h_t)^2)`` over the cell outputs before
the output dropout (DARTS's ``beta``, 1e-3; zero for a one-step window). In eval mode: no
dropout and the log-probabilities alone.

The masks of a forward pass are drawn at its start from the global random generator, in this
order, each only when its probability is positive: ``embedding_words`` ``(vocab, 1)``,
``embedding_input`` ``(1, B, nhid)``, ``input_x`` ``(B, nhid)``, ``hidden`` ``(B, nhid)``,
``output`` ``(1, B, nhid)``; every execution mode draws the same masks (so the same seed gives
the same masks in every mode and in a child).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from nasp.core.mixed import CellPlan
from nasp.spaces.darts_rnn.cells import STEPS, GenotypeCell, SearchCell
from nasp.spaces.darts_rnn.genotype import RecurrentGenotype

__all__ = ["EVALUATION_DROPOUTS", "SEARCH_DROPOUTS", "RecurrentDropouts", "RecurrentMasks",
           "RecurrentNetwork", "RecurrentSupernet"]

#: The cell type of the space's one architecture matrix.
CELL = "recurrent"


@dataclass(frozen=True)
class RecurrentDropouts:
    """Dropout probabilities of the language model (DARTS's names in brackets): ``output``
    (``dropout``: locked, on the cell outputs), ``hidden`` (``dropouth``: the states fed to the
    cell's matrix products), ``input_x`` (``dropoutx``: ``x_t`` in the cell), ``embedding_input``
    (``dropouti``: locked, on the embeddings), ``embedding_words`` (``dropoute``: whole words)."""

    output: float
    hidden: float
    input_x: float
    embedding_input: float
    embedding_words: float

    def __post_init__(self) -> None:
        for f in fields(self):
            p = getattr(self, f.name)
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
                raise ValueError(f"the {f.name} dropout must be a probability in [0, 1), "
                                 f"got {p!r}")


#: DARTS's search values (rnn/train_search.py).
SEARCH_DROPOUTS = RecurrentDropouts(output=0.75, hidden=0.25, input_x=0.75, embedding_input=0.2,
                                    embedding_words=0.0)
#: DARTS's evaluation values (rnn/train.py).
EVALUATION_DROPOUTS = RecurrentDropouts(output=0.75, hidden=0.25, input_x=0.75,
                                        embedding_input=0.2, embedding_words=0.1)


@dataclass(frozen=True)
class RecurrentMasks:
    """The dropout masks of one forward pass (None: no dropout), already scaled by
    ``1 / (1 - p)``; shapes in the module docstring."""

    embedding_words: torch.Tensor | None = None
    embedding_input: torch.Tensor | None = None
    input_x: torch.Tensor | None = None
    hidden: torch.Tensor | None = None
    output: torch.Tensor | None = None


def _mask(p: float, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor | None:
    return like.new_empty(shape).bernoulli_(1 - p) / (1 - p) if p > 0 else None


class _LanguageModel(nn.Module):
    """Embedding, dropouts, the cell (``self.cell``, set by subclasses), tied decoder."""

    def __init__(self, vocab: int, nhid: int, dropouts: RecurrentDropouts, slowness: float):
        super().__init__()
        self.vocab, self.nhid = vocab, nhid
        self.dropouts = dropouts
        self.slowness = slowness
        self.encoder = nn.Embedding(vocab, nhid)
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        self.decoder = nn.Linear(nhid, vocab)
        self.decoder.weight = self.encoder.weight  # tied
        nn.init.zeros_(self.decoder.bias)

    def draw_masks(self, batch: int) -> RecurrentMasks:
        """This forward pass's masks (module docstring), all None in eval mode."""
        if not self.training:
            return RecurrentMasks()
        p, like, H = self.dropouts, self.encoder.weight, self.nhid
        return RecurrentMasks(
            embedding_words=_mask(p.embedding_words, (self.vocab, 1), like),
            embedding_input=_mask(p.embedding_input, (1, batch, H), like),
            input_x=_mask(p.input_x, (batch, H), like),
            hidden=_mask(p.hidden, (batch, H), like),
            output=_mask(p.output, (1, batch, H), like))

    def _forward(self, x, run_cell):
        tokens = x.tokens
        T, B = tokens.shape
        masks = self.draw_masks(B)
        emb = self.encoder(tokens)
        if masks.embedding_words is not None:
            emb = emb * masks.embedding_words[tokens]  # = embedding of the masked matrix
        if masks.embedding_input is not None:
            emb = emb * masks.embedding_input
        hidden = x.state if x.state is not None else emb.new_zeros(B, self.nhid)
        hiddens = run_cell(emb, hidden, masks.input_x, masks.hidden)
        x.final = hiddens[-1]
        out = hiddens if masks.output is None else hiddens * masks.output
        log_probs = F.log_softmax(self.decoder(out.reshape(T * B, self.nhid)), dim=-1)
        if self.training and self.slowness > 0:
            penalty = (self.slowness * (hiddens[1:] - hiddens[:-1]).pow(2).mean() if T > 1
                       else hiddens.new_zeros(()))
            return log_probs, penalty
        return log_probs


class RecurrentSupernet(_LanguageModel):
    """The search network: ``forward(x, plans)`` with ``plans = {"recurrent": CellPlan}``.

    ``dropouts`` default to DARTS's search values (:data:`SEARCH_DROPOUTS`), ``slowness`` to
    1e-3; both are plain attributes a run may replace.
    """

    def __init__(self, vocab: int, nhid: int, primitives, steps: int = STEPS, *,
                 dropouts: RecurrentDropouts = SEARCH_DROPOUTS, slowness: float = 1e-3):
        super().__init__(vocab, nhid, dropouts, slowness)
        self.cell = SearchCell(nhid, nhid, steps, primitives)

    def forward(self, x, plans: Mapping[str, CellPlan]):
        plan = plans[CELL]
        return self._forward(x, lambda e, h, xm, hm: self.cell(e, h, plan, xm, hm))


class RecurrentNetwork(_LanguageModel):
    """The network of a genotype: ``forward(x)``.

    The evaluation network (``batchnorm=False``, DARTS's ``RNNModel`` with ``DARTSCell``;
    dropouts default to :data:`EVALUATION_DROPOUTS`), or, with ``batchnorm=True``, the child of
    a supernet, whose cell normalises as the search cell does.
    """

    def __init__(self, genotype: RecurrentGenotype, vocab: int, nhid: int, *,
                 batchnorm: bool = False, dropouts: RecurrentDropouts = EVALUATION_DROPOUTS,
                 slowness: float = 1e-3):
        super().__init__(vocab, nhid, dropouts, slowness)
        self.genotype = genotype
        self.cell = GenotypeCell(genotype, nhid, nhid, batchnorm)

    def forward(self, x):
        return self._forward(x, self.cell)
