"""Primitive operations of the cell spaces, registered by name.

Every primitive maps ``(C, stride, affine)`` to an ``nn.Module`` that takes ``C`` channels to ``C``
channels and divides the spatial size by ``stride``. The definitions follow the DARTS reference code
(Liu et al., 2019) and, for the extra ops of the ``nasp-12`` space, the released NASP code:

- ``sep_conv_kxk``: (ReLU, depthwise kxk, pointwise 1x1, BN) twice, the first with the stride.
- ``dil_conv_kxk``: ReLU, depthwise kxk with dilation 2, pointwise 1x1, BN.
- ``conv_kxk`` / ``conv_1x1``: ReLU, conv, BN.  ``conv_3x1_1x3``: ReLU, 1x3 conv, 3x1 conv, BN.
- ``skip_connect``: identity, or :class:`FactorizedReduce` when ``stride == 2``.
- ``none``: the zero operation.
- ``nor_conv_kxk`` (NAS-Bench-201's names): ReLU, kxk convolution, BN, as ``conv_kxk``.

NAS-Bench-201 (Dong & Yang, 2020) also uses :class:`ResNetBasicBlock` between its cell stages.

Which ops a space offers, and in which named candidate sets, is the space's own business (its
``primitive_sets``; :data:`nasp.spaces.PRIMITIVE_SETS` gathers those of every space).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = [
    "OPS",
    "FactorizedReduce",
    "ReLUConvBN",
    "ResNetBasicBlock",
    "Zero",
    "op_parameter_count",
    "search_op",
]


class ReLUConvBN(nn.Sequential):
    """ReLU, convolution without bias, BatchNorm."""

    def __init__(self, C_in, C_out, kernel_size, stride, padding, affine=True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU, depthwise dilated convolution, pointwise convolution, BatchNorm."""

    def __init__(self, C_in, C_out, kernel_size, stride, padding, dilation, affine=True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel_size, stride, padding, dilation=dilation, groups=C_in,
                      bias=False),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked depthwise-separable convolutions; only the first is strided."""

    def __init__(self, C_in, C_out, kernel_size, stride, padding, affine=True):
        super().__init__(
            DilConv(C_in, C_in, kernel_size, stride, padding, 1, affine),
            DilConv(C_in, C_out, kernel_size, 1, padding, 1, affine),
        )


class FactorizedConv(nn.Sequential):
    """ReLU, 1xk convolution, kx1 convolution, BatchNorm (the reference code's conv_kx1_1xk)."""

    def __init__(self, C, k, stride, affine=True):
        p = k // 2
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C, C, (1, k), stride=(1, stride), padding=(0, p), bias=False),
            nn.Conv2d(C, C, (k, 1), stride=(stride, 1), padding=(p, 0), bias=False),
            nn.BatchNorm2d(C, affine=affine),
        )


class Zero(nn.Module):
    """The ``none`` operation: zeros of the output shape."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """Halve the spatial size with two offset stride-2 1x1 convolutions, concatenated.

    Works for odd sizes too: the shifted branch is padded so both branches agree in size.
    """

    def __init__(self, C_in: int, C_out: int, affine: bool = True):
        super().__init__()
        if C_out % 2:
            raise ValueError(
                f"FactorizedReduce needs an even number of output channels, got {C_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, padding=0, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        a = self.conv_1(x)
        shifted = x[:, :, 1:, 1:]
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            shifted = nn.functional.pad(shifted, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2))
        b = self.conv_2(shifted)
        return self.bn(torch.cat([a, b], dim=1))


class ResNetBasicBlock(nn.Module):
    """NAS-Bench-201's reduction block between cell stages (AutoDL's ``ResNetBasicblock``).

    ``ReLUConvBN(3x3, stride)`` then ``ReLUConvBN(3x3)``, plus a shortcut: for stride 2, a 2x2
    average pool (stride 2) then a 1x1 convolution without BN; for stride 1 and a change of width,
    ``ReLUConvBN(1x1)``; otherwise the identity. The spatial size must be even when strided.
    """

    def __init__(self, C_in: int, C_out: int, stride: int, affine: bool = True):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"ResNetBasicBlock takes stride 1 or 2, got {stride}")
        self.conv_a = ReLUConvBN(C_in, C_out, 3, stride, 1, affine)
        self.conv_b = ReLUConvBN(C_out, C_out, 3, 1, 1, affine)
        if stride == 2:
            self.downsample = nn.Sequential(
                nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
                nn.Conv2d(C_in, C_out, kernel_size=1, stride=1, padding=0, bias=False))
        elif C_in != C_out:
            self.downsample = ReLUConvBN(C_in, C_out, 1, 1, 0, affine)
        else:
            self.downsample = None
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 2 and (x.shape[-1] % 2 or x.shape[-2] % 2):
            raise ValueError(
                f"a NAS-Bench-201 reduction block halves the image: it needs an even size, got "
                f"{x.shape[-2]}x{x.shape[-1]} (the input images must be a multiple of 4 pixels)")
        residual = x if self.downsample is None else self.downsample(x)
        return residual + self.conv_b(self.conv_a(x))


OpFactory = Callable[[int, int, bool], nn.Module]

OPS: dict[str, OpFactory] = {
    "none": lambda C, stride, affine: Zero(stride),
    "avg_pool_3x3": lambda C, stride, affine: nn.AvgPool2d(
        3, stride=stride, padding=1, count_include_pad=False),
    "max_pool_3x3": lambda C, stride, affine: nn.MaxPool2d(3, stride=stride, padding=1),
    "max_pool_5x5": lambda C, stride, affine: nn.MaxPool2d(5, stride=stride, padding=2),
    "max_pool_7x7": lambda C, stride, affine: nn.MaxPool2d(7, stride=stride, padding=3),
    "skip_connect": lambda C, stride, affine: (
        nn.Identity() if stride == 1 else FactorizedReduce(C, C, affine)),
    "conv_1x1": lambda C, stride, affine: ReLUConvBN(C, C, 1, stride, 0, affine),
    "conv_3x3": lambda C, stride, affine: ReLUConvBN(C, C, 3, stride, 1, affine),
    "nor_conv_1x1": lambda C, stride, affine: ReLUConvBN(C, C, 1, stride, 0, affine),
    "nor_conv_3x3": lambda C, stride, affine: ReLUConvBN(C, C, 3, stride, 1, affine),
    "conv_3x1_1x3": lambda C, stride, affine: FactorizedConv(C, 3, stride, affine),
    "conv_7x1_1x7": lambda C, stride, affine: FactorizedConv(C, 7, stride, affine),
    "sep_conv_3x3": lambda C, stride, affine: SepConv(C, C, 3, stride, 1, affine),
    "sep_conv_5x5": lambda C, stride, affine: SepConv(C, C, 5, stride, 2, affine),
    "sep_conv_7x7": lambda C, stride, affine: SepConv(C, C, 7, stride, 3, affine),
    "dil_conv_3x3": lambda C, stride, affine: DilConv(C, C, 3, stride, 2, 2, affine),
    "dil_conv_5x5": lambda C, stride, affine: DilConv(C, C, 5, stride, 4, 2, affine),
}

def op_parameter_count(name: str, C: int, stride: int = 1, affine: bool = False) -> int:
    """Number of learnable parameters of primitive ``name`` at ``C`` channels."""
    return sum(p.numel() for p in OPS[name](C, stride, affine).parameters())


def search_op(name: str, C: int, stride: int) -> nn.Module:
    """Primitive ``name`` as it appears in the search supernet.

    BatchNorm there has no affine parameters, and pooling ops are followed by a BatchNorm (as in
    the DARTS and NASP reference code), so that every candidate's output is normalised.
    """
    op = OPS[name](C, stride, False)
    if "pool" in name:
        op = nn.Sequential(op, nn.BatchNorm2d(C, affine=False))
    return op
