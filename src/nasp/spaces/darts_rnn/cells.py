"""The DARTS recurrent cell: the supernet's search cell (every execution mode of
:mod:`nasp.core.mixed`) and the cell of a genotype (child and evaluation networks).

One time step, from ``x_t`` (masked by ``x_mask``) and ``h_{t-1}`` (its matrix product masked
by ``h_mask``; the masks are drawn once per window, see :mod:`.network`)::

    c0, g0 = split([x_t * x_mask, h_{t-1} * h_mask] @ W0)        # W0: (ninp + nhid, 2 nhid)
    s_0 = h_{t-1} + sigmoid(c0) * (tanh(g0) - h_{t-1})             # the initial state
    node i = 0..7 reading state s_j with op f:
        c, g = split((s_j * h_mask) @ Ws[i]);  out = s_j + sigmoid(c) * (f(g) - s_j)
    h_t = mean of the concat states (DARTS: s_1..s_8)

Every op of node ``i`` uses the node's one matrix ``Ws[i]`` (whatever its input), so a child
takes the supernet's weights as they are. The search cell mixes, per node, every (input j, op k)
with the weights of its rows (36 rows: node ``i`` has rows for ``j = 0..i``; 5 columns, ``none``
contributing zero) and normalises ``s_0`` and every node with one shared
``BatchNorm1d(affine=False)``, as DARTS's ``DARTSCellSearch``. Parameters are drawn from
``uniform(-0.04, 0.04)`` (DARTS's ``INITRANGE``).

Modes of the search cell (``CellPlan.mode``): ``dense`` and ``reference`` mix every (j, k) with
autograd (the matrix product of a node batched over its inputs, as DARTS); ``discrete`` computes
only the selected (j, k) of each node; ``sparse`` computes the selected with autograd and all
others forward-only, combined by :func:`nasp.core.mixed.sparse_combine` (exact gradients for
every architecture weight).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from nasp.core.mixed import CellPlan, sparse_block
from nasp.spaces.darts_rnn.genotype import RNN_PRIMITIVES, RecurrentGenotype

__all__ = ["ACTIVATIONS", "INITRANGE", "STEPS", "GenotypeCell", "SearchCell"]

#: Intermediate nodes of the DARTS recurrent cell.
STEPS = 8
#: Parameters of the cell are drawn from uniform(-INITRANGE, INITRANGE) (DARTS rnn/model.py).
INITRANGE = 0.04

#: The activation of each op; ``none`` has none (its node output is zero).
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor] | None] = {
    "none": None, "tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid,
    "identity": lambda g: g,
}


def _highway(s: torch.Tensor, cg: torch.Tensor, activation) -> torch.Tensor:
    """``s + sigmoid(c) * (f(g) - s)`` with ``c, g`` the halves of ``cg``."""
    c, g = cg.chunk(2, dim=-1)
    return s + torch.sigmoid(c) * (activation(g) - s)


def _masked(s: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return s if mask is None else s * mask


class _Cell(nn.Module):
    """The parameters and the time loop both cells share; subclasses make the nodes."""

    def __init__(self, ninp: int, nhid: int, steps: int, batchnorm: bool):
        super().__init__()
        self.ninp, self.nhid, self.steps = ninp, nhid, steps
        self.W0 = nn.Parameter(torch.empty(ninp + nhid, 2 * nhid).uniform_(-INITRANGE, INITRANGE))
        self.Ws = nn.ParameterList(
            nn.Parameter(torch.empty(nhid, 2 * nhid).uniform_(-INITRANGE, INITRANGE))
            for _ in range(steps))
        # the search cell's normaliser always uses the batch's statistics, in eval mode too (as
        # NAS-Bench-201's search cells do). DARTS keeps running statistics, but one set shared
        # by s_0, all 8 nodes and every time step does not fit any of them in eval mode: the
        # recurrent state of an evaluated child grew ~1.4x per step and overflowed to NaN
        # (5 of 9 NASP epochs of the cpu preset). Training-mode outputs are unchanged.
        self.bn = (nn.BatchNorm1d(nhid, affine=False, track_running_stats=False) if batchnorm
                   else None)

    def _norm(self, s: torch.Tensor) -> torch.Tensor:
        return s if self.bn is None else self.bn(s)

    def run(self, inputs: torch.Tensor, hidden: torch.Tensor, x_mask: torch.Tensor | None,
            h_mask: torch.Tensor | None, nodes) -> torch.Tensor:
        """The cell outputs ``(T, B, nhid)`` over the window ``inputs`` ``(T, B, ninp)`` from
        ``hidden`` ``(B, nhid)``; ``nodes(s0, h_mask)`` makes one step's output from ``s_0``."""
        T, B = inputs.shape[:2]
        # the input's part of [x, h] @ W0 for every step at once (one matrix product)
        xw = (_masked(inputs, x_mask).reshape(T * B, self.ninp) @ self.W0[:self.ninp]
              ).view(T, B, 2 * self.nhid)
        w_h = self.W0[self.ninp:]
        outputs = []
        h = hidden
        for t in range(T):
            s0 = self._norm(_highway(h, xw[t] + _masked(h, h_mask) @ w_h, torch.tanh))
            h = nodes(s0, h_mask)
            outputs.append(h)
        return torch.stack(outputs)


class GenotypeCell(_Cell):
    """The cell of a genotype: node ``i`` computes only its one ``(op, input)`` pair. With
    ``batchnorm`` (a child on the supernet's weights) it normalises as the search cell does."""

    def __init__(self, genotype: RecurrentGenotype, ninp: int, nhid: int,
                 batchnorm: bool = False):
        super().__init__(ninp, nhid, genotype.steps, batchnorm)
        self.genotype = genotype
        self.pairs = tuple((ACTIVATIONS[op], j) for op, j in genotype.recurrent)
        self.concat = genotype.concat

    def forward(self, inputs, hidden, x_mask=None, h_mask=None) -> torch.Tensor:
        return self.run(inputs, hidden, x_mask, h_mask, self._nodes)

    def _nodes(self, s0: torch.Tensor, h_mask: torch.Tensor | None) -> torch.Tensor:
        states = [s0]
        for i, (activation, j) in enumerate(self.pairs):
            s = states[j]
            out = (torch.zeros_like(s0) if activation is None
                   else _highway(s, _masked(s, h_mask) @ self.Ws[i], activation))
            states.append(self._norm(out))
        return torch.stack([states[c] for c in self.concat]).mean(0)


class SearchCell(_Cell):
    """The supernet's cell: ``forward(inputs, hidden, plan, x_mask, h_mask)`` runs every node in
    the mode of ``plan`` (module docstring); the output is the mean of ``s_1..s_steps``."""

    def __init__(self, ninp: int, nhid: int, steps: int = STEPS,
                 primitives: Sequence[str] = RNN_PRIMITIVES):
        super().__init__(ninp, nhid, steps, batchnorm=True)
        self.primitives = tuple(primitives)
        self.activations = tuple(ACTIVATIONS[name] for name in self.primitives)
        self.live = tuple(k for k, a in enumerate(self.activations) if a is not None)
        self.offsets = [i * (i + 1) // 2 for i in range(steps)]  # first row of each node

    def forward(self, inputs, hidden, plan: CellPlan, x_mask=None, h_mask=None) -> torch.Tensor:
        node = {"dense": self._mixed, "reference": self._mixed, "discrete": self._discrete,
                "sparse": self._sparse}[plan.mode]

        def nodes(s0, h_mask):
            states = [s0]
            for i in range(self.steps):
                states.append(self._norm(node(i, states, h_mask, plan)))
            return torch.stack(states[1:]).mean(0)

        return self.run(inputs, hidden, x_mask, h_mask, nodes)

    def _all_outputs(self, i: int, states: list[torch.Tensor], h_mask) -> torch.Tensor:
        """Outputs of every (op with an activation, input) of node ``i``: ``(live, i+1, B, H)``,
        from one matrix product over the node's inputs."""
        S = torch.stack(states)
        cg = (_masked(S, h_mask).reshape(-1, self.nhid) @ self.Ws[i]).view(*S.shape[:2], -1)
        c, g = cg.chunk(2, dim=-1)
        gate = torch.sigmoid(c)  # shared by the ops: they differ only in the activation of g
        return torch.stack([S + gate * (self.activations[k](g) - S) for k in self.live])

    def _mixed(self, i, states, h_mask, plan):
        """``sum_{j,k} w[(i, j), k] out_{jk}`` over every (input, op), with autograd."""
        w = plan.weights[self.offsets[i]:self.offsets[i] + i + 1, list(self.live)]  # (i+1, live)
        return torch.einsum("jk,kjbh->bh", w, self._all_outputs(i, states, h_mask))

    def _chosen(self, i, plan) -> list[tuple[int, int]]:
        start = self.offsets[i]
        chosen = [(j, plan.selection[start + j]) for j in range(i + 1)
                  if plan.selection[start + j] >= 0]
        if not chosen:
            raise ValueError(f"the selection drops every input of node {i + 1} of the "
                             f"recurrent cell; each node needs one")
        return chosen

    def _one(self, i, s, h_mask, k) -> torch.Tensor | None:
        activation = self.activations[k]
        return None if activation is None else _highway(s, _masked(s, h_mask) @ self.Ws[i],
                                                        activation)

    def _discrete(self, i, states, h_mask, plan):
        """Only the selected (input, op) of the node; a ``none`` contributes zero."""
        out = None
        for j, k in self._chosen(i, plan):
            y = self._one(i, states[j], h_mask, k)
            if y is not None:
                out = y if out is None else out + y
        return torch.zeros_like(states[0]) if out is None else out

    def _sparse(self, i, states, h_mask, plan):
        """The selected (input, op) with autograd, every (input, op) forward-only in one block
        (:func:`~nasp.core.mixed.sparse_block`: every weight's gradient in one matrix product);
        the weights of the ``none`` column get their exact gradient 0 by being left out."""
        K = len(self.primitives)
        selected = []
        for j, k in self._chosen(i, plan):
            y = self._one(i, states[j], h_mask, k)
            if y is not None:
                selected.append((j * K + k, y))
        with torch.no_grad():
            outs = self._all_outputs(i, states, h_mask)  # (live, i+1, B, H)
        positions = [j * K + k for k in self.live for j in range(i + 1)]
        weights = plan.weights[self.offsets[i]:self.offsets[i] + i + 1]
        return sparse_block(weights, selected, outs.flatten(0, 1), positions)
