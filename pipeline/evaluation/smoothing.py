"""The frame model smoothed over time: the baseline a temporal model has to beat.

Each video's per-frame probabilities and VA are replaced by their centred moving average
over ``window`` frames, within runs of consecutive frames (``pipeline.temporal.windows.runs``: a
gap where the face was lost is never averaged across); at a run's ends the window holds
fewer frames. The window is chosen among :data:`WINDOWS` by the ABAW total on the
validation set, so its score is optimistic, like thresholds tuned there.
"""
from __future__ import annotations

import numpy as np

from pipeline.core.index import FrameIndex
from pipeline.evaluation.scoring import score
from pipeline.temporal.windows import runs

WINDOWS = (1, 3, 5, 9, 15, 25, 45)
SMOOTHED = ("AU", "EXPR", "VA")


def centred_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average of ``x`` [n, d] along its rows over ``window`` (odd) rows,
    over the rows that exist near the ends."""
    half = window // 2
    padded = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(x, axis=0, dtype=np.float64)])
    i = np.arange(len(x))
    lo, hi = np.maximum(i - half, 0), np.minimum(i + half + 1, len(x))
    return ((padded[hi] - padded[lo]) / (hi - lo)[:, None]).astype(x.dtype)


def smooth(preds: dict[str, np.ndarray], videos: np.ndarray, frames: np.ndarray, window: int) -> dict:
    """``preds`` (rows in any order) with AU, EXPR and VA smoothed within each video's runs."""
    order = np.lexsort((frames, videos))
    out = {k: v.copy() for k, v in preds.items()}
    for start, stop in runs(videos[order], frames[order]):
        rows = order[start:stop]
        for task in SMOOTHED:
            out[task][rows] = centred_mean(preds[task][rows], window)
    return out


def best_window(index: FrameIndex, preds: dict[str, np.ndarray], au_thresholds=0.5,
                windows=WINDOWS) -> tuple[int, dict[int, float]]:
    """The window with the best ABAW total on ``index``, and every window's total."""
    totals = {w: float(score(index, smooth(preds, index.video, index.frame, w), au_thresholds)["total"])
              for w in windows}
    return max(totals, key=lambda w: (totals[w], -w)), totals
