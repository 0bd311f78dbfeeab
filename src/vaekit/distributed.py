"""Devices and multi-process data parallelism on PyTorch's own engine (torchrun + DDP).

A handful of explicit helpers: which device to use, whether this process is one rank of a
torchrun launch, and the collectives the training loop and evaluation need. The model never
knows it is distributed; only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from vaekit.errors import ConfigError


def select_device(preference: str = "auto") -> torch.device:
    """auto: CUDA if available, else Apple's MPS, else the CPU; or exactly what is asked for."""
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if preference == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device = 'cuda' but no CUDA GPU is visible to torch; use auto or cpu.")
    if preference == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("train.device = 'mps' but Apple's MPS backend is not available; use auto or cpu.")
    return torch.device(preference)


@dataclass(frozen=True)
class Context:
    """Where this process runs: its rank among world_size processes and its device."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main_process() -> bool:
    """True on rank 0 of a torchrun launch (torchrun sets RANK) and in a plain launch."""
    return int(os.environ.get("RANK", "0")) == 0


def init(device_preference: str = "auto") -> Context:
    """Join the process group when launched by torchrun (RANK, WORLD_SIZE, LOCAL_RANK set),
    with nccl on GPUs and gloo on CPUs; a plain launch is a world of one."""
    device = select_device(device_preference)
    if not launched_by_torchrun():
        return Context(0, 1, device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Context(dist.get_rank(), dist.get_world_size(), device)


def finish() -> None:
    """At the end of a torchrun launch: wait for every rank, then leave the process group."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor, ctx: Context) -> torch.Tensor:
    """Sum a tensor over all ranks (in place, returned for convenience); a no-op in a world of one."""
    if ctx.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def any_rank(flag: bool, ctx: Context) -> bool:
    """True on every rank when the flag is true on any rank (so all ranks take the same branch)."""
    if not ctx.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def gather_rows(tensor: torch.Tensor, ctx: Context) -> torch.Tensor:
    """Concatenate each rank's rows in rank order (rows may differ in number between ranks)."""
    if not ctx.distributed:
        return tensor
    parts: list[torch.Tensor | None] = [None] * ctx.world_size
    dist.all_gather_object(parts, tensor.cpu())
    return torch.cat([p for p in parts if p is not None]).to(tensor.device)
