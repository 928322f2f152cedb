"""Scoring a table of validation predictions: ABAW metrics per model with bootstrap
intervals over videos (docs/architecture.md, "Validation predictions").

``evaluation.json`` is computed from exactly the rows of ``val_predictions.parquet`` by
:func:`evaluate_predictions`, so anyone can recompute it from the table. The metrics
themselves are in ``pipeline.evaluation.metrics``; they are sums over frames, so resampling videos
with replacement only re-weights per-video counts: a bootstrap replicate is a matrix
product instead of a pass over every frame.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from pipeline.core.labels import AU_THRESHOLD, TASKS, VA_NAMES
from pipeline.core.index import FrameIndex
from pipeline.core.schema import ABAW2020, LabelSchema
from pipeline.evaluation.metrics import (
    abaw_total, au_counts, au_metrics, au_scores, era_total, expr_confusion, expr_metrics, expr_scores, va_metrics,
    va_scores_from_sums, va_sums,
)

#: Prediction columns of the validation table (truth columns are the index's): per AU of the
#: schema a probability (``schema.au_probs``) and its threshold, per class a probability
#: (``schema.expr_probs``), then the VA values.
PRED_VA = [f"pred_{name}" for name in VA_NAMES]


def thr_au(schema: LabelSchema) -> list[str]:
    return [f"thr_{name}" for name in schema.aus]


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


def _flat_scores(au: dict | None, expr: dict | None, va: dict | None, era: str = "2020") -> dict[str, float | None]:
    """The scalar figures that get a confidence interval, keyed "TASK.figure" (and, in the
    2022 era, the multi-task challenge's sum beside the paper's total)."""
    flat: dict[str, float | None] = {}
    for task, result, keys in (("AU", au, ("score", "f1", "acc")), ("EXPR", expr, ("score", "f1", "acc")),
                               ("VA", va, ("ccc_valence", "ccc_arousal", "ccc_mean"))):
        for key in keys:
            flat[f"{task}.{key}"] = None if result is None else result[key]
    flat["abaw_total"] = abaw_total({"AU": au, "EXPR": expr, "VA": va})
    if era != "2020":
        flat[f"abaw{era}_total"] = era_total({"AU": au, "EXPR": expr, "VA": va}, era)
    return flat


def per_video_stats(rows: pd.DataFrame, codes: np.ndarray, n_videos: int, schema: LabelSchema) -> dict[str, np.ndarray]:
    """One model's additive statistics per video: AU counts, EXPR confusions, VA sums."""
    stats = {"AU": au_counts(rows[list(schema.aus)].to_numpy(), rows[schema.au_probs].to_numpy(),
                             rows[thr_au(schema)].to_numpy(), codes),
             "EXPR": expr_confusion(rows["expr"].to_numpy(), rows[schema.expr_probs].to_numpy(), codes),
             "VA": va_sums(rows[list(VA_NAMES)].to_numpy(), rows[PRED_VA].to_numpy(), codes)}
    # a model without rows in the last videos still has a (zero) entry for each
    return {k: np.concatenate([v, np.zeros((n_videos - len(v), *v.shape[1:]))]) for k, v in stats.items()}


def scores_of(stats: dict[str, np.ndarray], schema: LabelSchema) -> dict:
    return _flat_scores(au_scores(stats["AU"], schema.aus), expr_scores(stats["EXPR"], schema.expressions),
                        va_scores_from_sums(stats["VA"]), schema.era)


def _mean(flats: list[dict]) -> dict:
    """Figure by figure mean of several models' flat scores (None if any is None)."""
    return {k: None if any(f[k] is None for f in flats) else float(np.mean([f[k] for f in flats])) for k in flats[0]}


def _difference(a: dict, b: dict) -> dict:
    return {k: None if a[k] is None or b[k] is None else a[k] - b[k] for k in a}


def evaluate_predictions(df: pd.DataFrame, n_boot: int = 200, seed: int = 0, alpha: float = 0.05,
                         reference: str | None = "teacher", means: dict[str, list[str]] | None = None,
                         pairs: list[tuple[str, str]] | None = None, schema: LabelSchema = ABAW2020) -> dict:
    """``{model: {"AU", "EXPR", "VA", "ci"[, "vs_<reference>"]}}`` from the long table of
    labels and predictions of ``schema`` (its AUs and classes name the columns; its era adds
    that era's total).

    Uses exactly the table's rows (docs/architecture.md, ``reports/val_predictions.parquet``)
    and its ``thr_`` columns as AU thresholds; models appear in order of first appearance;
    a task without any known label among a model's rows is None.

    "ci" holds percentile bootstrap intervals over videos for every scalar figure and the
    ABAW total. Every model is resampled with the same draws of videos (videos numbered
    in sorted order), so "vs_<reference>" gives **paired** intervals of each figure's
    difference to the reference model: what tells a small gain from noise. ``pairs`` adds
    such comparisons, ``(model, other)`` giving ``result[model]["vs_<other>"]``. ``means``
    adds entries such as ``{"students_mean": [names]}``: the figure-by-figure mean of
    those models, its spread (standard deviation across them) and its paired interval.
    """
    required = ["model", "video", *schema.aus, "expr", *VA_NAMES, *schema.au_probs, *thr_au(schema), *schema.expr_probs,
                *PRED_VA]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"validation predictions lack columns: {', '.join(missing)}")
    if df["video"].isna().any():
        raise ValueError("validation predictions: some rows have no video (needed for the bootstrap)")
    videos = np.array(sorted(df["video"].unique()))
    models = list(pd.unique(df["model"]))
    reference = reference if reference in models else None
    means = {name: members for name, members in (means or {}).items() if members and set(members) <= set(models)}
    compared = [(m, reference) for m in [*models, *means] if reference is not None and m != reference]
    compared += [(m, other) for m, other in pairs or [] if m in models and other in models]
    stats, result = {}, {}
    for model, rows in df.groupby("model", sort=False):
        stats[model] = per_video_stats(rows, np.searchsorted(videos, rows["video"].to_numpy()), len(videos), schema)
        result[model] = {"AU": au_scores(stats[model]["AU"].sum(axis=0), schema.aus),
                         "EXPR": expr_scores(stats[model]["EXPR"].sum(axis=0), schema.expressions),
                         "VA": va_metrics(rows[list(VA_NAMES)].to_numpy(), rows[PRED_VA].to_numpy())}
    flat = {m: _flat_scores(r["AU"], r["EXPR"], r["VA"], schema.era) for m, r in result.items()}
    if schema.era != "2020":  # the era's own sum beside the paper's (which its scores still give)
        for m, r in result.items():
            r[f"abaw{schema.era}_total"] = flat[m][f"abaw{schema.era}_total"]
    for name, members in means.items():
        mean = _mean([flat[m] for m in members])
        spread = {k: None if v is None else float(np.std([flat[m][k] for m in members])) for k, v in mean.items()}
        result[name] = {"members": members, "mean": mean, "spread_across_members": spread}

    def replicate(sums):
        per_model = {m: scores_of({k: sums[f"{m}/{k}"] for k in TASKS}, schema) for m in models}
        per_model.update({name: _mean([per_model[x] for x in members]) for name, members in means.items()})
        out = {f"{m}|{k}": v for m, scores in per_model.items() for k, v in scores.items()}
        for m, other in compared:
            out.update({f"{m}|vs:{other}|{k}": v for k, v in _difference(per_model[m], per_model[other]).items()})
        return out

    arrays = {f"{m}/{k}": v for m, s in stats.items() for k, v in s.items()}
    intervals = bootstrap_ci(arrays, replicate, n=n_boot, seed=seed, alpha=alpha)
    method = {"method": "percentile bootstrap, videos resampled with replacement (the same draws for every model)",
              "n_boot": n_boot, "seed": seed, "level": 1 - alpha, "n_videos": len(videos)}
    for m in [*models, *means]:
        result[m]["ci"] = {**method, "intervals": {k.split("|", 1)[1]: v for k, v in intervals.items()
                                                   if k.startswith(f"{m}|") and "|vs:" not in k}}
    for m, other in compared:
        own = flat[m] if m in flat else result[m]["mean"]
        prefix = f"{m}|vs:{other}|"
        result[m][f"vs_{other}"] = {
            "difference": _difference(own, flat[other]),
            "intervals": {k.removeprefix(prefix): v for k, v in intervals.items() if k.startswith(prefix)}}
    return result


def score(index: FrameIndex, preds: dict[str, np.ndarray], au_thresholds=AU_THRESHOLD) -> dict:
    """ABAW metrics of ``preds`` against the index's labels, in its schema; a task without
    labels is None. "total" is the schema's era's sum (what the best epoch is chosen by)."""
    schema = index.schema
    au = au_metrics(index.au, preds["AU"], au_thresholds, schema.aus)
    expr = expr_metrics(index.expr, preds["EXPR"], schema.expressions)
    va = va_metrics(index.va, preds["VA"])
    result = {"AU": au, "EXPR": expr, "VA": va}
    result["total"] = era_total(result, schema.era)
    return result
