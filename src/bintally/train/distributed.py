"""Single process or DDP under torchrun, behind one small interface.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; then each rank trains on its
shard (gloo on CPU, NCCL on GPU), metrics are reduced across ranks, and only
rank 0 writes files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from bintally.model.inference import pick_device


@dataclass(frozen=True)
class Context:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


@contextmanager
def context(device_choice: str) -> Iterator[Context]:
    """The process group for this run (if torchrun started us), torn down at the end."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = pick_device(device_choice, int(os.environ.get("LOCAL_RANK", "0")))
    if world_size == 1:
        yield Context(0, 1, device)
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield Context(dist.get_rank(), world_size, device)
    finally:
        dist.destroy_process_group()


def sum_across(ctx: Context, values: list[float]) -> list[float]:
    if not ctx.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def gather(ctx: Context, obj: object) -> list:
    """Every rank's `obj`, in rank order, on every rank."""
    if not ctx.distributed:
        return [obj]
    out: list = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: Context) -> None:
    if ctx.distributed:
        dist.barrier()
