"""Multi-process training with DistributedDataParallel (``torchrun``).

``torchrun --nproc_per_node=N -m subct train CONFIG.yaml`` starts N processes with
``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set; :func:`context_from_environment` joins the
process group (NCCL on GPUs, gloo on CPU), each rank trains on its own seeded share
of the epoch's patches, DDP averages gradients so all ranks keep identical weights,
and only rank 0 writes checkpoints and logs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistributedContext:
    """Rank, world size and device of this process (world size 1 = no DDP)."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that writes outputs."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process trains together."""
        return self.world_size > 1

    def wrap(self, network: nn.Module) -> nn.Module:
        """The network wrapped in DDP (or unchanged for a single process)."""
        if not self.distributed:
            return network
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(network, device_ids=device_ids)

    def mean(self, value: float) -> float:
        """Average of a scalar over all ranks (identity for one process)."""
        if not self.distributed:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return float(tensor.item()) / self.world_size

    def barrier(self) -> None:
        """Wait for every rank (no-op for one process)."""
        if self.distributed:
            dist.barrier()


def default_device() -> torch.device:
    """CUDA device 0 when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def single_process(device: torch.device | None = None) -> DistributedContext:
    """Context of an ordinary one-process run."""
    return DistributedContext(0, 1, device or default_device())


def context_from_environment() -> DistributedContext:
    """Join the process group when started by ``torchrun`` (``WORLD_SIZE`` > 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return single_process()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistributedContext(rank, world_size, device)


def shutdown(context: DistributedContext) -> None:
    """Leave the process group (call at the end of a distributed run)."""
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()
