"""Building blocks of the train-from-scratch network (DARTS ``NetworkCIFAR``/``NetworkImageNet``).

:class:`~nasp.spaces.darts_cnn.child.ChildNetwork` assembles them: drop-path on the op outputs
of every cell, an auxiliary classifier part-way up, and the ImageNet stem.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nasp.core.ops import FactorizedReduce, ReLUConvBN

__all__ = [
    "AuxiliaryHead", "ImageNetStem", "check_size", "drop_path", "preprocess", "reduction_layers",
]


def drop_path(x: torch.Tensor, prob: float) -> torch.Tensor:
    """Drop whole samples of ``x`` with probability ``prob`` (Larsson et al., 2017; DARTS).

    ``y[b] = x[b] * m[b] / (1 - prob)`` with ``m[b] ~ Bernoulli(1 - prob)`` drawn independently
    per sample from the global random generator of ``x``'s device, so ``E[y] = x``. ``prob = 0``
    returns ``x`` itself.
    """
    if prob <= 0.0:
        return x
    keep = 1.0 - prob
    mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
    return x * mask.bernoulli_(keep).div_(keep)


class AuxiliaryHead(nn.Module):
    """The DARTS auxiliary classifier (Szegedy et al., 2015), fed the output of cell
    ``2 * layers // 3``.

    ReLU, 5x5 average pooling (stride 3, or 2 for ImageNet; no padding, skipped when the map is
    smaller than 5x5), then average pooling to 2x2, 1x1 conv to 128 channels, BN, ReLU, 2x2 conv
    to 768 channels, BN (not for ImageNet, as the DARTS code), ReLU, and a linear classifier.
    On the maps DARTS feeds it (8x8 for CIFAR, 7x7 for ImageNet) the 5x5 pooling already gives
    2x2 and the extra pooling does nothing, so it is exactly DARTS' ``AuxiliaryHeadCIFAR`` /
    ``AuxiliaryHeadImageNet``; the extra pooling lets it take maps of any size.
    """

    training_only = True  # left out of parameter_count (nasp.core.measure)

    def __init__(self, C: int, num_classes: int, imagenet: bool = False):
        super().__init__()
        self.stride = 2 if imagenet else 3
        self.features = nn.Sequential(
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.Identity() if imagenet else nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        if min(x.shape[-2:]) >= 5:
            x = F.avg_pool2d(x, 5, stride=self.stride, padding=0, count_include_pad=False)
        x = F.adaptive_avg_pool2d(x, 2)
        return self.classifier(self.features(x).flatten(1))


class ImageNetStem(nn.Module):
    """The DARTS ImageNet stem: three stride-2 3x3 convolutions, the image size divided by 8.

    ``stem0``: conv to ``C // 2`` channels, BN, ReLU, conv to ``C``, BN (size / 4);
    ``stem1``: ReLU, conv, BN (size / 8). ``forward`` returns ``(stem0(x), stem1(stem0(x)))``,
    the two inputs of the first cell (which therefore reduces its first input).
    """

    def __init__(self, in_channels: int, C: int):
        super().__init__()
        self.stem0 = nn.Sequential(
            nn.Conv2d(in_channels, C // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C),
        )
        self.stem1 = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s0 = self.stem0(x)
        return s0, self.stem1(s0)


def reduction_layers(layers: int) -> tuple[int, int]:
    """The indices of the two reduction cells of a network of ``layers`` cells."""
    return layers // 3, 2 * layers // 3


def check_size(layers: int, channels: int) -> None:
    """``ValueError`` unless a network of ``layers`` cells and ``channels`` initial channels can
    be built: normal and reduction cells need 3 cells, the reductions' halves even channels."""
    if layers < 3:
        raise ValueError(
            f"--layers must be at least 3 so that the network has normal and reduction cells; "
            f"got {layers}"
        )
    if channels < 2 or channels % 2:
        raise ValueError(
            f"--channels must be an even number >= 2 (reduction cells concatenate two halves); "
            f"got {channels}"
        )


def preprocess(C_pp: int, C_p: int, C: int, reduction_prev: bool,
                affine: bool) -> tuple[nn.Module, nn.Module]:
    """A cell's two input preprocessings to ``C`` channels (a factorized reduction of the older
    input after a reduction cell)."""
    pre0 = (FactorizedReduce(C_pp, C, affine) if reduction_prev
            else ReLUConvBN(C_pp, C, 1, 1, 0, affine))
    return pre0, ReLUConvBN(C_p, C, 1, 1, 0, affine)
