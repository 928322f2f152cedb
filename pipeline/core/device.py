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
    """(rank, world size), initialising the process group under torchrun. A WORLD_SIZE that is
    no number, or set without the rest of torchrun's variables, is a ParamsError."""
    world = _whole_number("WORLD_SIZE", "1")
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        missing = [v for v in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
        if missing:  # not started by torchrun: the process group would fail with a traceback
            raise ParamsError(f"WORLD_SIZE={world} is set but {missing[0]} is not: start with torchrun, or unset "
                              "WORLD_SIZE")
        _whole_number("RANK")
        _whole_number("LOCAL_RANK")
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def _whole_number(name: str, default: str = "0") -> int:
    value = os.environ.get(name, default)
    try:
        return int(value)
    except ValueError:
        raise ParamsError(f"{name}={value!r} is not a whole number: start with torchrun, or unset WORLD_SIZE") from None
