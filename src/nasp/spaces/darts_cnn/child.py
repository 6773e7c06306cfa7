"""The DARTS cell space's child and evaluation networks (DARTS ``NetworkCIFAR`` /
``NetworkImageNet``): the cells of a genotype, with drop-path and the auxiliary head."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nasp.core.ops import OPS, search_op
from nasp.spaces.darts_cnn.genotype import Genotype
from nasp.spaces.darts_cnn.network_parts import (
    AuxiliaryHead,
    ImageNetStem,
    check_size,
    drop_path,
    preprocess,
    reduction_layers,
)

__all__ = ["ChildCell", "ChildNetwork"]


class ChildCell(nn.Module):
    """A cell of a discrete network built from a genotype's (op, input) pairs.

    ``forward(s0, s1, drop_prob)``: in training mode, with ``drop_prob > 0``, every op output
    except those of identity ops (``skip_connect`` in a normal cell) goes through
    :func:`~.network_parts.drop_path`, as in the DARTS evaluation network.
    """

    def __init__(self, pairs: Sequence[tuple[str, int]], concat: Sequence[int], C_pp: int,
                 C_p: int, C: int, reduction: bool, reduction_prev: bool, search_ops: bool):
        super().__init__()
        self.reduction = reduction
        self.preprocess0, self.preprocess1 = preprocess(C_pp, C_p, C, reduction_prev,
                                                         not search_ops)
        self.inputs = tuple(j for _, j in pairs)
        self.concat = tuple(concat)
        make = search_op if search_ops else (lambda name, c, s: OPS[name](c, s, True))
        self.ops = nn.ModuleList(
            make(name, C, 2 if reduction and j < 2 else 1) for name, j in pairs)
        self.droppable = tuple(not isinstance(op, nn.Identity) for op in self.ops)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        drop = self.training and drop_prob > 0.0
        outputs = []
        for m, op in enumerate(self.ops):
            h = op(states[self.inputs[m]])
            if drop and self.droppable[m]:
                h = drop_path(h, drop_prob)
            outputs.append(h)
            if m % 2:
                states.append(outputs[m - 1] + h)
        return torch.cat([states[i] for i in self.concat], dim=1)


class ChildNetwork(nn.Module):
    """The discrete network of a genotype: a plain ``nn.Module`` mapping images to logits.

    With ``search_ops=True`` its ops are the search supernet's (BatchNorm without affine
    parameters, pooling followed by BatchNorm), so weights copied from a supernet reproduce the
    supernet's discrete forward pass exactly (see :meth:`DartsCNNSpace.extract_child`).

    With the defaults (``search_ops=False``) it is the DARTS train-from-scratch network
    ``NetworkCIFAR``: affine BatchNorm, a 3x3 convolution stem to ``stem_multiplier * C``
    channels. Its training extras:

    - ``drop_path_prob`` (attribute, default 0): in training mode each cell drops the outputs of
      its non-identity ops per sample with this probability (:func:`~.network_parts.drop_path`);
      the training loop ramps it up over the epochs.
    - ``auxiliary=True``: an :class:`~.network_parts.AuxiliaryHead` on the output of cell
      ``2 * layers // 3``; in training mode ``forward`` then returns ``(logits, aux_logits)``. In
      eval mode it always returns the logits alone.
    - ``imagenet=True``: ``NetworkImageNet``, with the :class:`~.network_parts.ImageNetStem`
      (three stride-2 convolutions) in place of the 3x3 stem.

    Pooling before the classifier is global, so any image size works.
    """

    def __init__(self, genotype: Genotype, in_channels: int, num_classes: int, layers: int,
                 channels: int, search_ops: bool = False, stem_multiplier: int = 3, *,
                 auxiliary: bool = False, imagenet: bool = False):
        super().__init__()
        check_size(layers, channels)
        self.genotype = genotype
        self.drop_path_prob = 0.0
        if imagenet:
            self.stem = ImageNetStem(in_channels, channels)
            C_pp = C_p = C_curr = channels
        else:
            C_curr = stem_multiplier * channels
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr))
            C_pp, C_p, C_curr = C_curr, C_curr, channels
        self.cells = nn.ModuleList()
        reduction_prev = imagenet
        self.auxiliary_after = 2 * layers // 3
        self.auxiliary_head = None
        for i in range(layers):
            reduction = i in reduction_layers(layers)
            if reduction:
                C_curr *= 2
                pairs, concat = genotype.reduce, genotype.reduce_concat
            else:
                pairs, concat = genotype.normal, genotype.normal_concat
            self.cells.append(ChildCell(pairs, concat, C_pp, C_p, C_curr, reduction,
                                        reduction_prev, search_ops))
            reduction_prev = reduction
            C_pp, C_p = C_p, len(concat) * C_curr
            if auxiliary and i == self.auxiliary_after:
                self.auxiliary_head = AuxiliaryHead(C_p, num_classes, imagenet)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        stem = self.stem(x)
        s0, s1 = stem if isinstance(stem, tuple) else (stem, stem)
        aux_logits = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.auxiliary_after and self.auxiliary_head is not None and self.training:
                aux_logits = self.auxiliary_head(s1)
        logits = self.classifier(self.global_pooling(s1).flatten(1))
        return logits if aux_logits is None else (logits, aux_logits)
