"""Windows of consecutive frames for the temporal model (docs/method.md, "CNN-RNN").

A video's frames (those extraction kept) are first cut into runs of consecutive frame
numbers: a face lost for a while leaves a gap, and no window may join the frames on its
two sides as if they were neighbours. Within a run of n frames and a sequence length L:

- training windows start every L // 2 frames (overlapping by half), the last one moved
  back to end on the run's last frame; a run shorter than L is one window of n frames;
- evaluation windows tile the run (starts 0, L, 2L, ...), the last one aligned to the end
  (so it may overlap the one before); a run shorter than L is one window of n frames;
- a frame in several evaluation windows gets the mean of their outputs (:func:`fuse`).

Windows are (start, stop) positions into the frame arrays given, stop exclusive.
"""
from __future__ import annotations

import numpy as np

from pipeline.core.errors import DataError
from pipeline.core.index import runs  # noqa: F401  (the runs windows are cut in)


def _check_length(length: int) -> None:
    if length < 1:
        raise DataError(f"sequence length {length}: must be at least 1")


def train_windows(start: int, stop: int, length: int) -> list[tuple[int, int]]:
    """Training windows of the run [start, stop): overlapping by half, the last at the end."""
    _check_length(length)
    n = stop - start
    if n <= length:
        return [(start, stop)]
    step = max(length // 2, 1)
    starts = list(range(0, n - length + 1, step))
    if starts[-1] != n - length:
        starts.append(n - length)
    return [(start + s, start + s + length) for s in starts]


def eval_windows(start: int, stop: int, length: int) -> list[tuple[int, int]]:
    """Evaluation windows of the run [start, stop): tiling it, the last aligned to the end."""
    _check_length(length)
    n = stop - start
    if n <= length:
        return [(start, stop)]
    starts = list(range(0, n - length + 1, length))
    if starts[-1] != n - length:
        starts.append(n - length)
    return [(start + s, start + s + length) for s in starts]


def fuse(n: int, windows: list[tuple[int, int]], outputs: list[np.ndarray]) -> np.ndarray:
    """Per-frame outputs [n, ...] from each window's outputs [stop - start, ...]: the mean
    over the windows that hold the frame (NaN for a frame in none)."""
    total = np.zeros((n, *outputs[0].shape[1:]), dtype=np.float64)
    count = np.zeros(n, dtype=np.int64)
    for (start, stop), out in zip(windows, outputs):
        total[start:stop] += out
        count[start:stop] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count.reshape(-1, *([1] * (total.ndim - 1)))
