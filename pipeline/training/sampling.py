"""The per-task batch sampler (docs/method.md, "Batches"), free of torch.

Each step of an epoch draws ``batch_per_task`` row positions per task, with replacement,
with probability proportional to the task's per-row weights (the expected draws per epoch
written by the build stage). The draws depend only on (seed, epoch, task name), like
torch's ``DistributedSampler``: a resumed run, or another process of a distributed run,
reproduces them exactly.

Distributed training: every rank computes the same global batch of each step and keeps
its own slice, positions ``rank, rank + world_size, ...`` (the same interleaving torch's
``DistributedSampler`` uses), so the ranks' slices are disjoint and together make up the
single-process batch. ``batch_per_task`` is therefore the global batch per task.
"""
from __future__ import annotations

import zlib
from typing import Mapping

import numpy as np


def _check_weights(task: str, weights) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or len(w) == 0:
        raise ValueError(f"task {task}: weights must be a non-empty 1-D array, got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"task {task}: weights must be finite and >= 0")
    if w.sum() <= 0:
        raise ValueError(f"task {task}: all weights are 0, nothing can be drawn")
    return w


def task_seed(seed: int, epoch: int, task: str) -> np.random.SeedSequence:
    """The seed of one task's draws in one epoch.

    The task enters by a stable hash of its name (Python's ``hash`` of a str changes
    between processes), so adding or removing a task leaves the others' draws unchanged.
    """
    return np.random.SeedSequence([int(seed), int(epoch), zlib.crc32(task.encode("utf-8"))])


def draw_proportional(cumulative: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` row positions drawn with replacement, P(i) = w_i / sum(w), in one call.

    ``cumulative`` is ``np.cumsum(w)``. A uniform u in [0, total) picks the first row
    whose cumulative weight exceeds u ("right" side), so zero-weight rows are never
    picked; the clip guards against u * total rounding up to the total itself.
    """
    total = cumulative[-1]
    picks = np.searchsorted(cumulative, rng.random(size) * total, side="right")
    last_positive = int(np.searchsorted(cumulative, total, side="left"))
    return np.minimum(picks, last_positive).astype(np.int64)


class TaskBatchSampler:
    """Per step, ``{task: int64 row positions}`` drawn proportionally to weight.

    - ``weights``: task -> float [n_task] expected draws per epoch (>= 0, not all 0).
    - ``batch_per_task``: the global batch size N per task and step.
    - ``epoch_length``: ``"smallest"``, i.e. floor(min over tasks of sum(weights) / N)
      steps (at least 1), or an int number of steps.
    - ``seed``, ``rank``, ``world_size``: see the module docstring.

    ``epoch_draws(e)`` gives a whole epoch's draws at once; a run resumed at step s of
    epoch e takes the rows from s on, exactly those of an uninterrupted epoch.
    """

    def __init__(self, weights: Mapping[str, np.ndarray], batch_per_task: int,
                 epoch_length: str | int = "smallest", seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        if not weights:
            raise ValueError("no task to sample")
        if batch_per_task < 1:
            raise ValueError(f"batch_per_task must be >= 1, got {batch_per_task}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in 0..world_size-1, got rank {rank} of {world_size}")
        if batch_per_task < world_size:
            raise ValueError(f"batch_per_task {batch_per_task} < world_size {world_size}: "
                             "some ranks would get an empty batch")
        self.tasks = tuple(weights)
        # Cumulative sums once: each epoch's draws are then one searchsorted per task.
        self._cumulative = {t: np.cumsum(_check_weights(t, w)) for t, w in weights.items()}
        self.sizes = {t: len(c) for t, c in self._cumulative.items()}
        self.batch_per_task = int(batch_per_task)
        self.steps_per_epoch = self._steps(epoch_length)
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)

    def _steps(self, epoch_length: str | int) -> int:
        if epoch_length == "smallest":
            smallest = min(float(c[-1]) for c in self._cumulative.values())
            return max(1, int(smallest // self.batch_per_task))
        is_int = isinstance(epoch_length, (int, np.integer)) and not isinstance(epoch_length, bool)
        if is_int and epoch_length >= 1:
            return int(epoch_length)
        raise ValueError(f"epoch_length must be 'smallest' or an int >= 1, got {epoch_length!r}")

    def epoch_draws(self, epoch: int) -> dict[str, np.ndarray]:
        """This rank's draws of a whole epoch: task -> int64 [steps, local batch]."""
        draws = {}
        for task, cumulative in self._cumulative.items():
            rng = np.random.default_rng(task_seed(self.seed, epoch, task))
            flat = draw_proportional(cumulative, self.steps_per_epoch * self.batch_per_task, rng)
            global_batches = flat.reshape(self.steps_per_epoch, self.batch_per_task)
            draws[task] = np.ascontiguousarray(global_batches[:, self.rank::self.world_size])
        return draws
