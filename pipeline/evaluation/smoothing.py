"""The smoothing window of the smoothed frame ensemble (``inference.smoothing``), chosen
among :data:`WINDOWS` by the ABAW total on the validation set, so its score is optimistic,
like thresholds tuned there."""
from __future__ import annotations

import numpy as np

from pipeline.core.index import FrameIndex
from pipeline.core.labels import AU_THRESHOLD
from pipeline.evaluation.scoring import score
from pipeline.inference.smoothing import smooth

WINDOWS = (1, 3, 5, 9, 15, 25, 45)


def best_window(index: FrameIndex, preds: dict[str, np.ndarray], au_thresholds=AU_THRESHOLD,
                windows=WINDOWS) -> tuple[int, dict[int, float]]:
    """The window with the best ABAW total on ``index``, and every window's total."""
    totals = {w: float(score(index, smooth(preds, index.video, index.frame, w), au_thresholds)["total"])
              for w in windows}
    return max(totals, key=lambda w: (totals[w], -w)), totals
