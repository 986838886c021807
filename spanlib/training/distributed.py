"""Data-parallel training under ``torchrun``: the process group, the batch shard of each rank,
synchronised batch norm, and the model wrapper (docs/distributed.md).

The contract: a run on W processes learns what a single process learns with the same params.
- Each global batch (``train.batch_size`` pairs, in the epoch's shuffle order) is cut into W
  contiguous slices, one per rank, so the union of the rank batches is the single-process batch
  and the data position (epoch, batch) is the same on every rank: a checkpoint resumes on any W.
- Batch norm statistics are taken over the global batch (SyncBatchNorm on CUDA; on CPU, where
  torch's SyncBatchNorm has no kernels, :class:`GlobalBatchNorm2d`).
- DDP averages the rank gradients; every loss term is a mean over equally many items per rank,
  so that average is the gradient of the global mean (the one ratio-of-sums term, the BALI field
  loss, is reweighted in ``spanlib.training.train``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from spanlib.utils.errors import ParamError


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this module created the process group (and destroys it)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_context() -> DistContext:
    """The torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK), or a single process without it."""
    def read(name: str, default: int) -> int:
        value = os.environ.get(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise ParamError(f"environment variable {name}={value!r}: expected an integer (set by torchrun)") from None

    world = read("WORLD_SIZE", 1)
    rank = read("RANK", 0)
    local = read("LOCAL_RANK", rank)
    if world < 1 or not 0 <= rank < world:
        raise ParamError(f"RANK={rank}, WORLD_SIZE={world}: expected 0 <= RANK < WORLD_SIZE")
    return DistContext(rank, world, local)


def setup(device: torch.device) -> tuple[DistContext, torch.device]:
    """Join the process group torchrun describes (gloo on CPU, NCCL on CUDA) and pick this rank's
    device (``cuda:LOCAL_RANK``). A single process (no torchrun, or one process) changes nothing."""
    ctx = env_context()
    if not ctx.enabled:
        return ctx, device
    if device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend, rank=ctx.rank, world_size=ctx.world_size, **kwargs)
        owns = True
    elif dist.get_world_size() != ctx.world_size:
        raise ParamError(f"WORLD_SIZE={ctx.world_size}, but the process group has {dist.get_world_size()} ranks")
    return DistContext(ctx.rank, ctx.world_size, ctx.local_rank, owns), device


def teardown(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def per_rank(global_size: int, ctx: DistContext, what: str) -> int:
    """``global_size / world_size``; a ParamError naming ``what`` when it does not divide."""
    if global_size % ctx.world_size:
        raise ParamError(f"{what}: {global_size} does not divide among {ctx.world_size} processes; the global "
                         f"batch stays the params' batch, so it must be a multiple of WORLD_SIZE")
    return global_size // ctx.world_size


def rank_slice(batch: list[int], ctx: DistContext) -> list[int]:
    """This rank's contiguous share of one global batch of indices."""
    size = len(batch) // ctx.world_size
    return batch[ctx.rank * size:(ctx.rank + 1) * size]


class _AllReduceSum(torch.autograd.Function):
    """y = sum over ranks of x, on every rank. Each rank's loss depends on y, so the gradient of
    the sum of all ranks' losses in x is the sum over ranks of their gradients in y."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def all_reduce(x: torch.Tensor) -> torch.Tensor:
    """Differentiable sum over the ranks."""
    return _AllReduceSum.apply(x)


class GlobalBatchNorm2d(torch.nn.BatchNorm2d):
    """BatchNorm2d whose training statistics span every rank's batch (what SyncBatchNorm does on
    GPUs, written with differentiable all-reduces so that it runs on CPU with gloo).

    Mean and biased variance are two all-reduced sums (two passes, as the single-process kernel's
    Welford update is stable), the running variance uses the unbiased global variance. The
    backward of :class:`_AllReduceSum` sends each rank the gradient of the other ranks' losses
    through the shared statistics, as SyncBatchNorm's backward does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        count = torch.tensor([x.shape[0] * x.shape[2] * x.shape[3]], dtype=x.dtype, device=x.device)
        total = all_reduce(torch.cat([x.sum(dim=(0, 2, 3)), count]))
        n = total[-1]
        mean = total[:-1] / n
        centred = x - mean[None, :, None, None]
        var = all_reduce((centred * centred).sum(dim=(0, 2, 3))) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = (1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum)
                self.running_mean.mul_(1 - momentum).add_(momentum * mean.detach())
                self.running_var.mul_(1 - momentum).add_(momentum * var.detach() * n / (n - 1))
        y = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y


def sync_batchnorm(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` with every BatchNorm2d synchronised across ranks (weights and buffers kept, so
    the state dict keys do not change)."""
    if device.type == "cuda":
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)

    def convert(module: torch.nn.Module) -> torch.nn.Module:
        if type(module) is torch.nn.BatchNorm2d:
            new = GlobalBatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                                    module.track_running_stats, device=module.weight.device
                                    if module.affine else None)
            new.load_state_dict(module.state_dict())
            new.train(module.training)
            return new
        for name, child in module.named_children():
            setattr(module, name, convert(child))
        return module

    return convert(model)


def wrap(model: torch.nn.Module, ctx: DistContext, device: torch.device) -> torch.nn.Module:
    """The module the training step calls: DDP over ``model`` when there are several ranks (its
    parameters are broadcast from rank 0), ``model`` itself otherwise."""
    if not ctx.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def mean_over_ranks(values: dict[str, float], ctx: DistContext, device: torch.device) -> dict[str, float]:
    """The mean of each float over the ranks (the global loss terms, for logging); ``device``:
    where the collective runs (CUDA for NCCL)."""
    if not ctx.enabled or not values:
        return values
    keys = list(values)  # the same order on every rank: the same code built the dict
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: float(v) / ctx.world_size for k, v in zip(keys, t.tolist())}


def sum_over_ranks(value: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """``value`` summed over the ranks (a copy; ``value`` itself when there is one process)."""
    if ctx.enabled:
        value = value.clone()
        dist.all_reduce(value)
    return value
