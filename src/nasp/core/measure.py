"""Model size figures the papers report: parameters without training-only parts, and FLOPs of
one forward pass of one input."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["flop_count", "parameter_count"]


def parameter_count(net: nn.Module) -> int:
    """Learnable parameters of ``net`` without those of its training-only parts (modules with
    ``training_only = True``, such as the DARTS auxiliary head).

    This is the figure the DARTS and NASP papers report (e.g. 3.3M for DARTS_V2 at 20 cells,
    C 36): the auxiliary head only helps training and is dropped at test time.
    """
    auxiliary = {id(p) for m in net.modules() if getattr(m, "training_only", False)
                 for p in m.parameters()}
    return sum(p.numel() for p in net.parameters() if id(p) not in auxiliary)


def flop_count(net: nn.Module, input_shape: Sequence[int]) -> int:
    """Floating-point operations of one forward pass of one image of ``input_shape`` (C, H, W).

    Counted by :class:`torch.utils.flop_counter.FlopCounterMode` in eval mode (no auxiliary head,
    no drop-path): convolutions and matrix products, a multiply-add counting 2; BatchNorm, ReLU
    and pooling are not counted. The papers' "multiply-adds" are half this number.
    """
    first = next(net.parameters(), None)  # a parameter-free module (a pooling op): float32
    x = torch.zeros(1, *input_shape, dtype=first.dtype if first is not None else None,
                    device=first.device if first is not None else None)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            net(x)
    finally:
        net.train(was_training)
    return counter.get_total_flops()
