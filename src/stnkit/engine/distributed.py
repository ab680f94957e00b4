"""Multi-process data parallelism with PyTorch's own engine (``torchrun`` + DDP, gloo on CPU).

``torchrun --nproc_per_node=2 -m stnkit train ...`` sets ``RANK``/``WORLD_SIZE``/``MASTER_ADDR``;
:func:`init_distributed` reads them. A plain ``stnkit train`` is world size 1 and never touches
``torch.distributed``.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "DistContext",
    "all_reduce_sum",
    "barrier",
    "broadcast_from_main",
    "check_in_sync",
    "cleanup_distributed",
    "init_distributed",
]


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, metrics, pictures and the progress bar."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """True when more than one process trains."""
        return self.world_size > 1


def init_distributed(backend: str = "gloo") -> DistContext:
    """Join the process group described by torchrun's environment, if there is one.

    Returns:
        The rank and world size; ``DistContext()`` when ``WORLD_SIZE`` is unset or 1.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size())


def cleanup_distributed() -> None:
    """Leave the process group if this process joined one.

    Unreachable objects in reference cycles are collected first: a DDP wrapper is one (its hooks
    refer back to it), and its reducer holds the gloo group, whose threads would otherwise outlive
    ``destroy_process_group`` until the cyclic collector runs, perhaps as the interpreter shuts down.
    A wrapper still reachable (held by the caller, or by a traceback being handled) is not collected.
    """
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum ``values`` over all ranks (a no-op for one process)."""
    if ctx.enabled:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (a no-op for one process)."""
    if ctx.enabled:
        dist.barrier()


@torch.no_grad()
def broadcast_from_main(tensors: Iterable[torch.Tensor], ctx: DistContext) -> None:
    """Overwrite each tensor, in place, with rank 0's (a no-op for one process)."""
    if ctx.enabled:
        for tensor in tensors:
            dist.broadcast(tensor, src=0)


@torch.no_grad()
def check_in_sync(model: nn.Module, ctx: DistContext) -> None:
    """Raise if the ranks' parameters differ (DDP keeps them bit-identical); no-op for one rank.

    Raises:
        RuntimeError: some parameter differs between ranks.
    """
    if not ctx.enabled:
        return
    flat = torch.cat([p.detach().reshape(-1).double() for p in model.parameters()])
    low, high = flat.clone(), flat.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    if not torch.equal(low, high):
        raise RuntimeError(
            f"DDP ranks disagree on {(low != high).sum().item()} parameter values after training"
        )
