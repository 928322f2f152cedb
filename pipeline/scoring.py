"""Scoring a table of validation predictions: ABAW metrics per model with bootstrap
intervals over videos (docs/architecture.md, "Validation predictions").

``evaluation.json`` is computed from exactly the rows of ``val_predictions.parquet`` by
:func:`evaluate_predictions`, so anyone can recompute it from the table. The metrics
themselves are in ``pipeline.metrics``; they are sums over frames, so resampling videos
with replacement only re-weights per-video counts: a bootstrap replicate is a matrix
product instead of a pass over every frame.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from pipeline.labels import AU_NAMES, EXPR_NAMES, VA_NAMES
from pipeline.metrics import (
    abaw_total, au_counts, au_scores, expr_confusion, expr_scores, va_metrics, va_scores_from_sums, va_sums,
)

#: Prediction columns of the validation table (truth columns are the frame table's).
P_AU = [f"p_{name}" for name in AU_NAMES]
THR_AU = [f"thr_{name}" for name in AU_NAMES]
P_EXPR = [f"p_{name}" for name in EXPR_NAMES]
PRED_VA = [f"pred_{name}" for name in VA_NAMES]


# --- bootstrap ----------------------------------------------------------------------------


def bootstrap_ci(group_stats, fn: Callable, n: int = 200, seed: int = 0, alpha: float = 0.05):
    """Percentile bootstrap intervals, resampling whole groups (videos) with replacement.

    ``group_stats`` holds, per group, statistics that add up over groups (counts, sums):
    an array [G, ...] or a dict of such arrays with the same G. Each replicate draws G
    groups with replacement (``np.random.default_rng(seed).integers(0, G, size=(n, G))``,
    replicate b is row b), sums their statistics, and calls ``fn`` on the sum (same
    structure as ``group_stats`` without the G axis). Because the statistics are additive,
    this is exactly recomputing the metric on the concatenated frames of the drawn groups.

    ``fn`` returns a float or a flat dict of floats (None for "missing"). Returns
    ``[low, high]`` (or a dict of them) at the ``alpha / 2`` and ``1 - alpha / 2``
    percentiles (numpy's linear interpolation), over the replicates where the value is not
    None; None if there is none. Deterministic for a seed.
    """
    is_dict = isinstance(group_stats, Mapping)
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in group_stats.items()} if is_dict \
        else {None: np.asarray(group_stats, dtype=np.float64)}
    n_groups = {len(a) for a in arrays.values()}
    if len(n_groups) != 1 or 0 in n_groups:
        raise ValueError("bootstrap_ci: all statistics need the same non-zero number of groups, "
                         f"got {n_groups}")
    (n_groups,) = n_groups
    draws = np.random.default_rng(seed).integers(0, n_groups, size=(n, n_groups))
    multiplicity = np.zeros((n, n_groups))
    np.add.at(multiplicity, (np.arange(n)[:, None], draws), 1.0)
    replicate_sums = {k: np.tensordot(multiplicity, a, axes=(1, 0)) for k, a in arrays.items()}

    values: dict = {}
    for b in range(n):
        sums = {k: v[b] for k, v in replicate_sums.items()} if is_dict else replicate_sums[None][b]
        out = fn(sums)
        for key, value in (out.items() if isinstance(out, Mapping) else [(None, out)]):
            values.setdefault(key, [])
            if value is not None:
                values[key].append(value)
    quantiles = [100 * alpha / 2, 100 * (1 - alpha / 2)]
    intervals = {key: [float(q) for q in np.percentile(v, quantiles)] if v else None
                 for key, v in values.items()}
    return intervals if None not in intervals else intervals[None]


# --- evaluation of the validation-prediction table -----------------------------------------


def _flat_scores(au: dict | None, expr: dict | None, va: dict | None) -> dict[str, float | None]:
    """The scalar figures that get a confidence interval, keyed "TASK.figure"."""
    flat: dict[str, float | None] = {}
    for task, result, keys in (("AU", au, ("score", "f1", "acc")), ("EXPR", expr, ("score", "f1", "acc")),
                               ("VA", va, ("ccc_valence", "ccc_arousal", "ccc_mean"))):
        for key in keys:
            flat[f"{task}.{key}"] = None if result is None else result[key]
    flat["abaw_total"] = abaw_total({"AU": au, "EXPR": expr, "VA": va})
    return flat


def evaluate_model(rows: pd.DataFrame, n_boot: int = 200, seed: int = 0, alpha: float = 0.05) -> dict:
    """The evaluation dict of one model's rows of the validation-prediction table.

    Point estimates use all rows; "ci" holds percentile bootstrap intervals over videos
    (videos numbered in order of first appearance) for every scalar figure and the ABAW total.
    """
    video_codes, videos = pd.factorize(rows["video"])
    if (video_codes < 0).any():
        raise ValueError("validation predictions: some rows have no video (needed for the bootstrap)")
    per_video_au = au_counts(rows[list(AU_NAMES)].to_numpy(), rows[P_AU].to_numpy(),
                             rows[THR_AU].to_numpy(), video_codes)
    confusion = expr_confusion(rows["expr"].to_numpy(), rows[P_EXPR].to_numpy(), video_codes)
    va_truth, va_pred = rows[list(VA_NAMES)].to_numpy(), rows[PRED_VA].to_numpy()
    per_video_va = va_sums(va_truth, va_pred, video_codes)

    result = {
        "AU": au_scores(per_video_au.sum(axis=0)),
        "EXPR": expr_scores(confusion.sum(axis=0)),
        "VA": va_metrics(va_truth, va_pred),
    }

    def replicate(sums):
        return _flat_scores(au_scores(sums["AU"]), expr_scores(sums["EXPR"]),
                            va_scores_from_sums(sums["VA"]))

    intervals = bootstrap_ci({"AU": per_video_au, "EXPR": confusion, "VA": per_video_va}, replicate,
                             n=n_boot, seed=seed, alpha=alpha) if len(videos) else {}
    result["ci"] = {"method": "percentile bootstrap, videos resampled with replacement",
                    "n_boot": n_boot, "seed": seed, "level": 1 - alpha, "n_videos": len(videos),
                    "intervals": intervals}
    return result


def evaluate_predictions(df: pd.DataFrame, n_boot: int = 200, seed: int = 0, alpha: float = 0.05) -> dict:
    """``{model: {"AU", "EXPR", "VA", "ci"}}`` from the long validation-prediction table.

    Uses exactly the table's rows (docs/architecture.md, ``reports/val_predictions.parquet``) and its
    ``thr_`` columns as AU thresholds. Models appear in order of first appearance. A task
    with no known label among a model's rows is None.
    """
    required = ["model", "video", *AU_NAMES, "expr", *VA_NAMES, *P_AU, *THR_AU, *P_EXPR, *PRED_VA]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"validation predictions lack columns: {', '.join(missing)}")
    return {model: evaluate_model(rows, n_boot, seed, alpha)
            for model, rows in df.groupby("model", sort=False)}
