"""DDP facts and the few collectives the engine needs (gloo on CPU, nccl on CUDA).

A run launched by torchrun (RANK / WORLD_SIZE / LOCAL_RANK set) trains one process per rank;
otherwise world is 1 and every collective below is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from detect.device import select_device


@dataclass
class Dist:
    """Process group facts; world == 1 means no DDP."""

    rank: int = 0
    local_rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def any(self, *flags: bool) -> list[bool]:
        """OR of each flag over all ranks (one all-reduce), so every rank takes the same branch."""
        if self.world == 1:
            return list(flags)
        t = torch.tensor([float(f) for f in flags], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return [bool(v) for v in t.tolist()]

    def sum(self, value: int) -> int:
        """`value` summed over all ranks."""
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.int64, device=self.device)
        dist.all_reduce(t)
        return int(t.item())

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world > 1:
            dist.destroy_process_group()


def init_dist(device_spec: str) -> Dist:
    """The process group of a torchrun launch (initialised here), or a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = select_device(device_spec)
    if world <= 1 or "RANK" not in os.environ:
        return Dist(device=device)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, local, world, device)
