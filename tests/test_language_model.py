"""The language-model task: loss with the TAR penalty, next-word accuracy, and the evaluation of
a whole split in windows with the state carried, against a brute-force computation."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nasp.data import batchify, fixed_windows
from nasp.tasks import TASKS, LanguageModelTask, TokenWindow, build_task


class Counter(nn.Module):
    """A model whose next-word log-probabilities depend on the carried state: ``state`` counts
    the tokens seen per stream; ``logits = W[token] + v * count``."""

    def __init__(self, vocab: int):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.W = nn.Parameter(torch.randn(vocab, vocab, generator=g, dtype=torch.float64))
        self.v = nn.Parameter(torch.randn(vocab, generator=g, dtype=torch.float64) / 5)

    def forward(self, x: TokenWindow):
        count = x.state if x.state is not None else torch.zeros(
            x.batch_size, dtype=torch.float64)
        rows = []
        for t in range(x.steps):
            count = count + 1
            rows.append(F.log_softmax(self.W[x.tokens[t]] + self.v * count[:, None], 1))
        x.final = count
        return torch.cat(rows)  # (T * B, vocab), time-major


@torch.no_grad()
def brute_force(model, data):
    """Per token, from the start of each stream: -log p(next | the count so far)."""
    nll, right, n = 0.0, 0, 0
    T, B = data.shape
    for b in range(B):
        for t in range(T - 1):
            logits = model.W[data[t, b]] + model.v * (t + 1)
            logp = torch.log_softmax(logits, 0)
            nll -= float(logp[data[t + 1, b]])
            right += int(logp.argmax()) == int(data[t + 1, b])
            n += 1
    return nll / n, right / n


def test_evaluation_carries_the_state_and_weighs_windows_by_their_tokens():
    vocab = 7
    data = batchify(torch.randint(0, vocab, (3 * 11,), generator=torch.Generator()
                                  .manual_seed(2)), 3)  # 11 rows: windows of 4, 4, 2
    model = Counter(vocab)
    model.train()
    task = build_task("language-model")
    result = task.evaluate(model, fixed_windows(data, 4))
    loss, top1 = brute_force(model, data)
    assert result["loss"] == pytest.approx(loss, rel=1e-6)
    assert result["ppl"] == pytest.approx(math.exp(loss), rel=1e-6)
    assert result["top1"] == pytest.approx(top1)
    assert model.training  # the mode is restored
    # TokenWindows given: their own states are ignored, the carried one is used
    windows = [(TokenWindow(x, torch.full((3,), 99.0, dtype=torch.float64)), y)
               for x, y in fixed_windows(data, 4)]
    assert task.evaluate(model, windows)["loss"] == pytest.approx(loss, rel=1e-6)


def test_objective_adds_the_penalty_loss_does_not_and_correct_counts_next_words():
    task = LanguageModelTask()
    g = torch.Generator().manual_seed(0)
    log_probs = torch.log_softmax(torch.randn(6, 5, generator=g), 1)
    target = torch.tensor([0, 1, 2, 3, 4, 0])
    nll = -sum(float(log_probs[i, t]) for i, t in enumerate(target.tolist())) / 6
    penalty = torch.tensor(0.25)
    assert float(task.loss(log_probs, target)) == pytest.approx(nll)
    assert float(task.loss((log_probs, penalty), target)) == pytest.approx(nll)  # no penalty
    total, main, out = task.objective((log_probs, penalty), target)
    assert float(total) == pytest.approx(nll + 0.25) and float(main) == pytest.approx(nll)
    assert out is log_probs
    right = sum(int(log_probs[i].argmax()) == t for i, t in enumerate(target.tolist()))
    assert int(task.correct((log_probs, penalty), target)) == right
    assert isinstance(task.correct(log_probs, target), torch.Tensor)


def test_format_shows_perplexity():
    task = TASKS["language-model"]()
    assert task.format({"loss": math.log(123.44), "top1": 0.1234}) == "ppl 123.4 acc 12.3%"
    assert task.format({"ppl": 98.76}) == "ppl 98.8"
    assert task.format({"loss": None, "top1": None}) == "ppl - acc -"
    assert task.show(None) == "-" and task.initial_state() is None
    state = torch.ones(2, requires_grad=True) * 2
    assert not task.carry((state, state))[0].requires_grad
