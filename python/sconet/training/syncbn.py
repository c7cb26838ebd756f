"""Synchronised BatchNorm under DDP, as OpenGait's ``trainer_cfg.sync_BN`` (``run.sync_bn``).

Without it every torchrun process normalises with, and keeps running statistics of, its own
share of the batch only, so an N-process run of a recipe trains a different model than one
process on the whole batch. :func:`convert_sync_batchnorm` converts every BatchNorm of the model
in place with ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``, OpenGait's call: batch
statistics (and so the running statistics and the gradients) come from the union of all ranks'
batches. State-dict names do not change, so checkpoints stay interchangeable.

torch's SyncBatchNorm kernels exist for CUDA (and XPU / HPU) only; on the CPU (the gloo backend)
the converted layers are :class:`CpuSyncBatchNorm`, the same statistics from an all-reduce of
per-channel sums (in float64), differentiable through the all-reduce.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn


class _AllReduceSum(torch.autograd.Function):
    """Sum over the ranks of a process group; the gradient is summed over the ranks too."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, group: Any) -> Tensor:
        ctx.group = group
        out = x.clone()
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        grad = grad.clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class CpuSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training-mode statistics are those of all ranks' batches, for CPU tensors
    (torch's SyncBatchNorm kernels are CUDA-only, and DDP refuses ``nn.SyncBatchNorm`` in a CPU
    module). Same state and statistics as torch's: biased variance for the normalisation,
    unbiased (global count) for ``running_var``. Eval mode or no process group: plain BatchNorm."""

    def __init__(self, *args: Any, process_group: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.process_group = process_group

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    @classmethod
    def from_batchnorm(
        cls, bn: nn.modules.batchnorm._BatchNorm, process_group: Any = None
    ) -> CpuSyncBatchNorm:
        """The synchronised twin of ``bn``, sharing its parameters and buffers."""
        out = cls(
            bn.num_features,
            bn.eps,
            bn.momentum,
            bn.affine,
            bn.track_running_stats,
            process_group=process_group,
        )
        if bn.affine:
            out.weight, out.bias = bn.weight, bn.bias
        out.running_mean, out.running_var = bn.running_mean, bn.running_var
        out.num_batches_tracked = bn.num_batches_tracked
        out.train(bn.training)
        return out

    def forward(self, input: Tensor) -> Tensor:
        group = self.process_group or (dist.group.WORLD if dist.is_initialized() else None)
        if not self.training or group is None or dist.get_world_size(group) < 2:
            return super().forward(input)
        self._check_input_dim(input)
        c = input.shape[1]
        dims = [0, *range(2, input.dim())]
        x64 = input.double()
        local = torch.cat([x64.sum(dims), (x64 * x64).sum(dims), x64.new_tensor([input.numel() // c])])
        total = _AllReduceSum.apply(local, group)
        count = total[2 * c]
        mean = total[:c] / count
        var = total[c : 2 * c] / count - mean * mean
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            assert self.num_batches_tracked is not None
            self.num_batches_tracked.add_(1)
            momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            with torch.no_grad():
                unbiased = var * count / (count - 1).clamp(min=1)
                self.running_mean.mul_(1 - momentum).add_(momentum * mean.to(self.running_mean.dtype))
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased.to(self.running_var.dtype))
        shape = [1, c] + [1] * (input.dim() - 2)
        out = ((x64 - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)).to(input.dtype)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def _replace_batchnorms(module: nn.Module, make: Any) -> int:
    n = 0
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, make(child))
            n += 1
        else:
            n += _replace_batchnorms(child, make)
    return n


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> int:
    """Convert every BatchNorm of ``model`` in place to synchronised BatchNorm (``model`` itself
    must not be a BatchNorm): torch's ``nn.SyncBatchNorm`` on accelerators (OpenGait's
    ``convert_sync_batchnorm`` call), :class:`CpuSyncBatchNorm` on the CPU. Returns how many
    layers were converted. Call it once, before wrapping the model in DDP; parameters and
    buffers are the same tensors afterwards."""
    if isinstance(model, nn.modules.batchnorm._BatchNorm):
        raise TypeError("convert the module that holds the BatchNorm layers, not a BatchNorm itself")
    if device.type == "cpu":
        return _replace_batchnorms(model, CpuSyncBatchNorm.from_batchnorm)
    nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return sum(isinstance(m, nn.SyncBatchNorm) for m in model.modules())


__all__ = ["CpuSyncBatchNorm", "convert_sync_batchnorm"]
