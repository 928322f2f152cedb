"""Which device a stage runs on (docs/architecture.md, "Hardware")."""
from __future__ import annotations

import os

import torch


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA when present (this process's local rank under torchrun), else CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available (use device: auto or cpu)")
    return torch.device(name)
