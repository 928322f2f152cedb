"""The optimiser and the learning-rate schedule of a training run (docs/method.md,
"Training"): Adam with the paper's /10 steps by default; AdamW, cosine decay and a linear
warm-up for training from scratch."""
from __future__ import annotations

import math

import torch

from pipeline.training.params import TrainParams


def make_optimizer(model: torch.nn.Module, p: TrainParams) -> torch.optim.Optimizer:
    kind = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[p.optimizer]
    return kind(model.parameters(), lr=p.lr, betas=tuple(p.betas), weight_decay=p.weight_decay)


def lr_factor(step: int, p: TrainParams, steps_per_epoch: int) -> float:
    """The learning rate of optimiser step ``step`` (0-based) as a fraction of ``p.lr``.

    ``step``: divided by 10 every ``lr_step_epochs`` epochs (the paper; 0 = never);
    ``cosine``: half a cosine from 1 to 0 over the run after the warm-up; ``constant``.
    A warm-up of ``warmup_epochs`` ramps the rate linearly up to its schedule first.
    """
    warm = round(p.warmup_epochs * steps_per_epoch)
    if p.lr_schedule == "step":
        every = p.lr_step_epochs * steps_per_epoch
        factor = 0.1 ** (step // every) if every > 0 else 1.0
    elif p.lr_schedule == "cosine":
        span = max(p.epochs * steps_per_epoch - warm, 1)
        factor = 0.5 * (1.0 + math.cos(math.pi * min(max(step - warm, 0), span) / span))
    else:
        factor = 1.0
    return factor * min(1.0, (step + 1) / warm) if warm > 0 else factor


def make_scheduler(optimizer: torch.optim.Optimizer, p: TrainParams, steps_per_epoch: int):
    """A per-step schedule (``scheduler.step()`` after every optimiser step)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, p, steps_per_epoch))
