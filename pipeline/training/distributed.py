"""What makes DistributedDataParallel training equal to one process on the whole batch.

Each process runs the model on its share of every task batch. Two things would otherwise
differ from a single process: BatchNorm would normalise each share with its own
statistics, and the batch-level losses (CCC over the batch, means over the known labels)
would be computed per share. So under ``torchrun``:

- BatchNorm layers use statistics summed over all processes (``nn.SyncBatchNorm`` on
  CUDA; :class:`GlobalBatchNorm` on the CPU, where SyncBatchNorm does not run);
- the head outputs and labels are gathered (differentiably) before the loss, so every
  process computes the loss of the whole batch. The all-gather's backward sums the
  gradients of all processes, which DDP then averages: the result is the gradient of the
  whole-batch loss, as in one process, up to floating-point summation order.
"""
from __future__ import annotations

import warnings

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.nn.functional import all_gather as _all_gather

# torch marks these autograd-aware collectives deprecated in favour of a private module;
# they remain the public, documented way to differentiate through a collective.


_GROUP = None


def statistics_group():
    """A process group of our own for the collectives inside forward and backward.

    DDP launches its gradient all-reduces on the default group from backward hooks, in an
    order that can interleave differently with ours on each process; on one shared
    group, two processes could then pair unrelated tensors of the same size, silently
    giving wrong gradients. A separate group keeps each stream in order.
    """
    global _GROUP
    if _GROUP is None:
        _GROUP = dist.new_group()
    return _GROUP


def differentiable_all_gather(t: torch.Tensor) -> list[torch.Tensor]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return list(_all_gather(t, group=statistics_group()))


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics come from every process of the group (CPU-safe)."""

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        c = x.shape[1]
        dims = [0, *range(2, x.dim())]
        shape = [1, c] + [1] * (x.dim() - 2)
        count = torch.tensor([x.numel() / c], dtype=x.dtype, device=x.device)
        # Two passes (mean, then squared deviations), not E[x^2] - mean^2: in deep
        # residual layers the mean dwarfs the spread and the one-pass form loses part of
        # the gradient to cancellation.
        sums = torch.stack(differentiable_all_gather(torch.cat([x.sum(dims), count]))).sum(0)
        n = sums[-1]
        mean = sums[:c] / n
        centred = x - mean.view(shape)
        var = torch.stack(differentiable_all_gather((centred * centred).sum(dims))).sum(0) / n
        with torch.no_grad():
            self.num_batches_tracked += 1
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(m * mean.detach())
            self.running_var.mul_(1 - m).add_(m * var.detach() * n / (n - 1))
        y = centred * torch.rsqrt(var.view(shape) + self.eps)
        return y * self.weight.view(shape) + self.bias.view(shape)


def convert_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm of ``module`` made global across processes (same parameters)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, GlobalBatchNorm):
            bn = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                 child.track_running_stats)
            bn.load_state_dict(child.state_dict())
            setattr(module, name, bn.to(next(child.buffers())))  # same device and dtype
        else:
            convert_batchnorm(child, device)
    return module


def gather(t: torch.Tensor) -> torch.Tensor:
    """Concatenation over processes; gradients flow back to each process's share."""
    if t.requires_grad:
        return torch.cat(differentiable_all_gather(t))
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous(), group=statistics_group())
    return torch.cat(parts)


def gather_batches(outputs: dict, labels: dict) -> tuple[dict, dict]:
    """Outputs and labels of every task batch, gathered from all processes."""
    outs = {task: {k: gather(v) for k, v in o.items()} for task, o in outputs.items()}
    labs = {task: {k: gather(v) for k, v in y.items()} for task, y in labels.items()}
    return outs, labs
