"""Which device a stage runs on, and which process it is under torchrun
(docs/architecture.md, "Hardware")."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist

from pipeline.core.errors import ParamsError
from pipeline.core.params import check_device


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA when present (this process's local rank under torchrun), else CPU. A
    name of no device (``tpu``, ``cpu:3``) is a ParamsError naming it."""
    try:
        check_device(name)
    except ValueError as e:
        raise ParamsError(str(e)) from None
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ParamsError(f"device {name!r} asked for, but CUDA is not available (use device auto or cpu)")
    return torch.device(name)


def distributed() -> tuple[int, int]:
    """(rank, world size), initialising the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world
