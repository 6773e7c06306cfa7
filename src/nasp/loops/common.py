"""Pieces both loops use: seeding and evaluation of a classifier on a data split."""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nasp import distributed
from nasp.data import Batches

__all__ = ["evaluate_classifier", "seed_everything"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)



@torch.no_grad()
def evaluate_classifier(net: nn.Module, batches: Batches,
                        forward: Callable[[torch.Tensor], torch.Tensor] | None = None
                        ) -> dict[str, float]:
    """Mean cross-entropy ``loss``, ``top1`` and ``top5`` accuracy of ``net`` in eval mode.

    ``top5`` counts a prediction right when the label is among the 5 largest logits (among all
    of them when there are fewer than 5 classes). ``forward`` maps a batch to logits (default
    ``net``; the search passes the supernet with the child's plans). One host sync, at the end.
    Data-parallel (:mod:`nasp.distributed`): with rank 0's BatchNorm statistics, the sums of
    all ranks (each evaluates its part of the split).
    """
    distributed.broadcast_buffers_(net)
    was_training = net.training
    net.eval()
    sums = None
    n = 0
    for x, y in batches:
        logits = forward(x) if forward is not None else net(x)
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        values = torch.stack([F.cross_entropy(logits, y, reduction="sum"),
                              (top[:, 0] == y).sum().to(logits.dtype),
                              (top == y[:, None]).any(1).sum().to(logits.dtype)])
        sums = values if sums is None else sums + values
        n += len(y)
    net.train(was_training)
    sums = distributed.all_sum(torch.cat([sums, sums.new_tensor([n])]))
    sums, n = sums[:3], sums[3]
    loss, top1, top5 = (sums / n).tolist()
    return {"loss": loss, "top1": top1, "top5": top5}
