"""The study's test split and each run's predictions on it (docs/study.md, "Test split")."""
from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.core.errors import DataError
from pipeline.core.index import FrameIndex
from pipeline.core.labels import AU_THRESHOLD, TASKS
from pipeline.evaluation.probe import PixelProbe
from pipeline.evaluation.evaluate import baseline_predictions, checkpoint_predictions, ensemble_predictions, prediction_rows


def test_split(val: FrameIndex, selection_videos: int, where: str = "val.parquet") -> FrameIndex:
    """The validation videos after the first ``selection_videos`` in sorted order: those
    every choice (best epoch, ...) is made on are never scored."""
    videos = sorted(set(val.video))
    if selection_videos >= len(videos):
        raise DataError(f"{where}: {len(videos)} validation videos, teacher.selection_videos {selection_videos}: no "
                        "video left to test on (make it smaller)")
    return val.subset(np.isin(val.video, videos[selection_videos:]))


def predictions(name: str, test: FrameIndex, device, batch: int, checkpoint: str | None = None,
                bundle: str | None = None, train: dict[str, FrameIndex] | None = None, probe_seed: int | None = None,
                progress: bool = True, weighted: bool = False, per_task: list[str] | None = None) -> pd.DataFrame:
    """One model's rows of the long prediction table (``evaluate``'s columns) on ``test``:
    a checkpoint (or ``per_task``, one per task) at AU threshold 0.5, a bundle at its own thresholds, or, from ``train``
    (the task sets), the pixel probe fitted with ``probe_seed`` (``weighted``: by the task
    sets' draws per frame) or the trivial baseline."""
    if train is not None and probe_seed is not None:
        return prediction_rows(name, test, PixelProbe.fit(train, probe_seed, weighted).predict(test), AU_THRESHOLD)
    if train is not None:
        return prediction_rows(name, test, baseline_predictions(train, len(test)), AU_THRESHOLD)
    if per_task is not None:  # a network per task (in TASKS order), each giving its own task's outputs only
        nets = dict(zip(TASKS, per_task))
        preds = {t: checkpoint_predictions({t: nets[t]}, test, device, batch, progress)[t][t] for t in TASKS}
        thresholds = AU_THRESHOLD
    elif checkpoint is not None:
        nets = dict.fromkeys(TASKS, checkpoint)
        preds, thresholds = checkpoint_predictions({name: checkpoint}, test, device, batch, progress)[name], AU_THRESHOLD
    else:
        nets = dict.fromkeys(TASKS, bundle)
        preds, info = ensemble_predictions(bundle, {}, test, device, batch, progress)
        thresholds = info["au_thresholds"]
    for task, values in preds.items():
        if not np.isfinite(values).all():
            raise DataError(f"{nets[task]}: {task} outputs that are not finite on the test frames")
    return prediction_rows(name, test, preds, thresholds)
