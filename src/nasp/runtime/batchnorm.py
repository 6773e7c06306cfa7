"""BatchNorm over the global batch of all processes of a torchrun launch.

By default each rank normalises with the statistics of its own slice (as plain DDP
does). With ``sync_bn`` (``--sync-bn``) the statistics are those of the global batch:
``torch.nn.SyncBatchNorm`` on CUDA, and on the CPU (where that class does not run)
:class:`DistributedBatchNorm2d`, which all-reduces the per-channel sums with a differentiable
all-reduce (its backward all-reduces the gradient). With it a step on ``N`` processes equals a
step on one process with the global batch, up to float rounding. It costs one small all-reduce
per BatchNorm layer in the forward and one in the backward pass, hence it is off by default.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from nasp.runtime.distributed import active

__all__ = ["DistributedBatchNorm2d", "convert_batchnorm"]


class _SumOverRanks(torch.autograd.Function):
    """``y = sum over ranks of x``, differentiable: the gradient of ``x`` is the sum over ranks of
    the gradients of ``y`` (every rank's loss depends on every rank's ``x``)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad)
        return grad


class DistributedBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the global batch of all ranks, for every backend (gloo included).

    In training mode (or without running statistics) each rank computes the per-channel mean
    ``m_r`` and biased variance ``v_r`` of its ``n_r`` values; the vector
    ``(n_r m_r, n_r (v_r + m_r^2), n_r)`` (float64) is summed over ranks by an all-reduce whose
    backward all-reduces the gradient (so it works with gloo as with NCCL), giving
    the global ``mean = sum n_r m_r / n`` and ``var = sum n_r (v_r + m_r^2) / n - mean^2``.
    Output, running statistics (unbiased variance) and momentum are as ``nn.BatchNorm2d``. In a
    single process, or in eval mode, it is exactly ``nn.BatchNorm2d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not active() or not (self.training or self.running_mean is None):
            return super().forward(x)
        self._check_input_dim(x)
        c = x.shape[1]
        count = x.numel() // c
        low = x.dtype in (torch.float16, torch.bfloat16)  # autocast: statistics in float32
        var, mean = torch.var_mean(x.float() if low else x, dim=(0, 2, 3), correction=0)
        mean64 = mean.double()
        local = torch.cat([mean64 * count, (var.double() + mean64.square()) * count,
                           mean64.new_tensor([count])])
        total = _SumOverRanks.apply(local)
        n = total[-1]
        mean64 = total[:c] / n
        var64 = (total[c:2 * c] / n - mean64.square()).clamp_min(0)
        if self.training and self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                          else self.momentum)
                unbiased = var64 * n / (n - 1).clamp_min(1)
                self.running_mean.lerp_(mean64.to(self.running_mean.dtype), factor)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)
        shape = (1, c, 1, 1)
        y = (x - mean64.to(x.dtype).view(shape)) * torch.rsqrt(var64 + self.eps).to(
            x.dtype).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def _replace_batchnorm(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, DistributedBatchNorm2d):
        new = DistributedBatchNorm2d(module.num_features, module.eps, module.momentum,
                                     module.affine, module.track_running_stats)
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        new.running_mean = module.running_mean
        new.running_var = module.running_var
        new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module.add_module(name, _replace_batchnorm(child))
    return module


def convert_batchnorm(module: nn.Module, sync: bool) -> nn.Module:
    """With ``sync`` and several processes, BatchNorm over the global batch: torch's
    ``SyncBatchNorm`` on CUDA, :class:`DistributedBatchNorm2d` elsewhere. The parameters and
    buffers are the same tensors, so optimisers built before still hold them. Else ``module``."""
    if not (sync and active()):
        return module
    first = next(module.parameters(), None)
    if first is not None and first.device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _replace_batchnorm(module)
