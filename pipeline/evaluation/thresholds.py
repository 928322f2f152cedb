"""Per-AU decision thresholds tuned for F1 on labelled frames (docs/method.md, "Metrics")."""
from __future__ import annotations

import numpy as np

from pipeline.core.labels import AU_THRESHOLD
from pipeline.evaluation.metrics import f1_from_counts

THRESHOLD_GRID = np.linspace(0.05, 0.95, 19)


def tune_thresholds(labels: np.ndarray, probs: np.ndarray, grid=THRESHOLD_GRID) -> np.ndarray:
    """Per-AU threshold with the best F1 on these labels (optimistic when they are the
    validation labels: reported as 'tuned')."""
    out = np.full(labels.shape[1], AU_THRESHOLD)
    for j in range(labels.shape[1]):
        known = labels[:, j] >= 0
        if not known.any():
            continue
        y = labels[known, j] == 1
        p = probs[known, j][None, :] >= np.asarray(grid)[:, None]  # [thresholds, frames]
        f1 = f1_from_counts((p & y).sum(axis=1), (p & ~y).sum(axis=1), (~p & y).sum(axis=1))
        out[j] = grid[int(np.argmax(f1))]  # the first (lowest) threshold of the best F1
    return out
