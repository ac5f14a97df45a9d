"""Data-parallel set-up from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK).

One process per device: nccl on GPUs, gloo on CPU. Without torchrun everything is a no-op on
a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: str = "auto") -> Distributed:
    """Join the process group torchrun describes (if any) and pick this process's device.
    ``device``: "auto" (a GPU when one is present), "cpu" or "cuda"."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}.")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but no GPU is available; use 'auto' or 'cpu'.")
    use_cuda = device != "cpu" and torch.cuda.is_available()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local)
    return Distributed(rank, world, local, torch.device(f"cuda:{local}" if use_cuda else "cpu"))


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(d: Distributed) -> None:
    if d.world_size > 1:
        dist.barrier()


def mean_over_processes(values: dict[str, float], d: Distributed) -> dict[str, float]:
    """Average each value over all processes (identical keys on every process)."""
    if d.world_size == 1 or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=d.device)
    dist.all_reduce(t)
    return {k: float(v) / d.world_size for k, v in zip(keys, t.tolist())}
