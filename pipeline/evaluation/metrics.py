"""ABAW metrics of both eras (docs/method.md, "Metrics").

The 2020 competition's (the paper's) are below; the 2022+ competitions' are their F1-only
forms (AU: "f1"; EXPR: "f1"; VA: "ccc_mean"), summed by :func:`era_total`.

- AU: score = 0.5 * F1 + 0.5 * Acc; F1 = unweighted mean of the per-AU binary F1, Acc =
  accuracy over all known (frame, AU) entries. Decision: ``prob >= threshold``.
- EXPR: score = 0.67 * F1 + 0.33 * Acc; F1 = macro F1 as sklearn's
  ``f1_score(average="macro")`` computes it, i.e. over the classes present in the truth or
  the predictions (the organisers' and the reference code's convention); Acc = accuracy.
- VA: CCC per dimension with population statistics, and their mean.

Unknown labels (-1, NaN) are left out entry by entry. A task without any known label is
missing: its result is ``None``, never 0.

Every metric here is a function of sums over frames: per-AU confusion counts, the
expression confusion matrix, and for VA the sums n, sum t, sum p, sum t^2, sum p^2, sum tp.
The functions therefore count first (per group of frames, e.g. per video) and score from
the counts, which makes the bootstrap over videos in ``pipeline.evaluation.scoring`` cheap.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from pipeline.core.labels import AU_NAMES, AU_THRESHOLD, AU_UNKNOWN, EXPR_NAMES, EXPR_UNKNOWN, VA_NAMES

AU_SCORE_WEIGHTS = (0.5, 0.5)      # (F1, Acc)
EXPR_SCORE_WEIGHTS = (0.67, 0.33)  # (F1, Acc)

# Order of the four AU confusion counts in the count arrays.
TP, FP, FN, TN = range(4)
# Order of the VA sums per dimension (t = truth, p = prediction).
N, SUM_T, SUM_P, SUM_TT, SUM_PP, SUM_TP = range(6)


# --- CCC ----------------------------------------------------------------------------------

#: A CCC denominator at or below this counts as zero: both inputs constant and equal (a
#: single value is such a case), where the formula is 0/0 and the CCC is defined as 0.
CCC_DEGENERATE = 1e-12


def ccc_from_moments(mean_x, mean_y, var_x, var_y, cov):
    """Eq. 8 from population moments: ``2 cov / (var x + var y + (mean x - mean y)^2)``.

    The one definition of the CCC, for numpy floats and torch tensors alike (the loss
    differentiates through it). Degenerate inputs give 0 (see ``CCC_DEGENERATE``); with
    one constant input the formula gives 0 by itself. ``rho sx sy = cov``, so this is the
    paper's formula exactly.
    """
    denominator = var_x + var_y + (mean_x - mean_y) ** 2
    if denominator <= CCC_DEGENERATE:
        return cov * 0.0 + 0.0  # a zero (never -0.0) that keeps a tensor's graph and dtype
    return 2.0 * cov / denominator


def ccc(x, y) -> float:
    """Concordance correlation coefficient of two arrays, population statistics (np.std, ddof=0).

    Raises on empty or differently shaped inputs. Moments are taken about the means (two
    passes), which keeps every digit for values in [-1, 1].
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape or x.size == 0:
        raise ValueError(f"ccc needs two non-empty arrays of one shape, got {x.shape} and {y.shape}")
    dx, dy = x - x.mean(), y - y.mean()
    return float(ccc_from_moments(x.mean(), y.mean(), np.mean(dx * dx), np.mean(dy * dy), np.mean(dx * dy)))


def ccc_from_sums(sums: np.ndarray) -> float | None:
    """CCC of one dimension from its six additive sums (bootstrap replicates); None if n == 0.

    Raw moments lose a few digits to cancellation (about 1e-15 for values in [-1, 1]),
    far below ``CCC_DEGENERATE``; the variances are clipped at 0 for the same reason.
    """
    n = sums[N]
    if n == 0:
        return None
    mean_t, mean_p = sums[SUM_T] / n, sums[SUM_P] / n
    var_t = max(sums[SUM_TT] / n - mean_t ** 2, 0.0)
    var_p = max(sums[SUM_PP] / n - mean_p ** 2, 0.0)
    return float(ccc_from_moments(mean_t, mean_p, var_t, var_p, sums[SUM_TP] / n - mean_t * mean_p))


# --- counting (per group of frames, e.g. per video) ----------------------------------------

def _as_groups(group_codes, n_rows: int) -> tuple[np.ndarray, int]:
    """Group codes 0..G-1 per row, or one group for all rows."""
    if group_codes is None:
        return np.zeros(n_rows, dtype=np.int64), 1
    codes = np.asarray(group_codes, dtype=np.int64)
    return codes, int(codes.max()) + 1 if codes.size else 0


def au_counts(labels, probs, thresholds, group_codes=None) -> np.ndarray:
    """[G, 4, A] counts (TP, FP, FN, TN) per group and AU over the known entries (A AUs)."""
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    if labels.shape != probs.shape or labels.ndim != 2:
        raise ValueError(f"AU labels and probs must both be [N, AUs], got {labels.shape} and {probs.shape}")
    n_au = labels.shape[1]
    codes, n_groups = _as_groups(group_codes, len(labels))
    known = labels != AU_UNKNOWN
    if np.any(known & (labels != 0) & (labels != 1)):
        raise ValueError("AU labels must be 1, 0 or -1 (unknown)")
    predicted = probs >= np.asarray(thresholds, dtype=np.float64)  # scalar, [A] or [N, A]
    truth = labels == 1
    kind = np.where(truth, np.where(predicted, TP, FN), np.where(predicted, FP, TN))
    rows, aus = np.nonzero(known)
    cell = (codes[rows] * 4 + kind[rows, aus]) * n_au + aus
    return np.bincount(cell, minlength=n_groups * 4 * n_au).reshape(n_groups, 4, n_au)


def expr_confusion(labels, probs, group_codes=None) -> np.ndarray:
    """[G, C, C] confusion matrices per group (rows = truth, columns = argmax prediction),
    C the classes of ``probs`` [N, C]."""
    labels = np.asarray(labels).ravel()
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) != len(labels):
        raise ValueError(f"EXPR probs must be [N, classes] for N = {len(labels)} labels, got {probs.shape}")
    n_expr = probs.shape[1]
    codes, n_groups = _as_groups(group_codes, len(labels))
    known = labels != EXPR_UNKNOWN
    if np.any(known & ((labels < 0) | (labels >= n_expr))):
        raise ValueError(f"EXPR labels must be 0..{n_expr - 1} or -1 (unknown)")
    predicted = probs[known].argmax(axis=1)
    cell = (codes[known] * n_expr + labels[known].astype(np.int64)) * n_expr + predicted
    return np.bincount(cell, minlength=n_groups * n_expr * n_expr).reshape(n_groups, n_expr, n_expr)


def va_sums(labels, preds, group_codes=None) -> np.ndarray:
    """[G, 2, 6] sums per group and dimension over the rows where that dimension is known."""
    labels = np.asarray(labels, dtype=np.float64)
    preds = np.asarray(preds, dtype=np.float64)
    if labels.shape != preds.shape or labels.ndim != 2 or labels.shape[1] != 2:
        raise ValueError(f"VA labels and preds must both be [N, 2], got {labels.shape} and {preds.shape}")
    codes, n_groups = _as_groups(group_codes, len(labels))
    sums = np.zeros((n_groups, 2, 6))
    for d in range(2):
        known = ~np.isnan(labels[:, d])
        t, p = labels[known, d], preds[known, d]
        if np.isnan(p).any():
            raise ValueError(f"VA: {VA_NAMES[d]} prediction is NaN on a labelled frame")
        for column, values in ((N, np.ones_like(t)), (SUM_T, t), (SUM_P, p),
                               (SUM_TT, t * t), (SUM_PP, p * p), (SUM_TP, t * p)):
            sums[:, d, column] = np.bincount(codes[known], weights=values, minlength=n_groups)
    return sums


# --- scoring from counts -----------------------------------------------------------------

def f1_from_counts(tp, fp, fn) -> np.ndarray:
    """Binary F1 = 2TP / (2TP + FP + FN); 0 where undefined (sklearn's zero_division=0)."""
    tp, fp, fn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, fn))
    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros_like(denominator), where=denominator > 0)


def au_scores(counts: np.ndarray, names=AU_NAMES) -> dict | None:
    """AU metrics from [4, A] counts of the AUs ``names``; None if no entry is known."""
    if len(names) != counts.shape[-1]:
        raise ValueError(f"{counts.shape[-1]} AUs counted, {len(names)} named")
    known_per_au = counts.sum(axis=0)
    if known_per_au.sum() == 0:
        return None
    f1_per_au = f1_from_counts(counts[TP], counts[FP], counts[FN])
    has_known = known_per_au > 0
    f1 = float(f1_per_au[has_known].mean())
    acc = float((counts[TP] + counts[TN]).sum() / known_per_au.sum())
    return {
        "score": AU_SCORE_WEIGHTS[0] * f1 + AU_SCORE_WEIGHTS[1] * acc,
        "f1": f1,
        "acc": acc,
        "per_au_f1": {name: float(f1_per_au[j]) if has_known[j] else None for j, name in enumerate(names)},
        "n_entries": int(known_per_au.sum()),
    }


def expr_scores(confusion: np.ndarray, names=EXPR_NAMES) -> dict | None:
    """EXPR metrics from a C x C confusion matrix of the classes ``names``; None if it is empty."""
    if len(names) != len(confusion):
        raise ValueError(f"{len(confusion)} classes counted, {len(names)} named")
    n = confusion.sum()
    if n == 0:
        return None
    correct = np.diag(confusion)
    in_truth, in_pred = confusion.sum(axis=1), confusion.sum(axis=0)
    f1_per_class = f1_from_counts(correct, in_pred - correct, in_truth - correct)
    # sklearn's macro average runs over the labels seen in the truth or the predictions
    present = (in_truth + in_pred) > 0
    f1 = float(f1_per_class[present].mean())
    acc = float(correct.sum() / n)
    return {
        "score": EXPR_SCORE_WEIGHTS[0] * f1 + EXPR_SCORE_WEIGHTS[1] * acc,
        "f1": f1,
        "acc": acc,
        "per_class_f1": {name: float(f1_per_class[k]) for k, name in enumerate(names)},
        "confusion": confusion.astype(int).tolist(),
        "n": int(n),
    }


def va_scores_from_sums(sums: np.ndarray) -> dict | None:
    """VA metrics from [2, 6] sums (used for bootstrap replicates)."""
    return _va_result(ccc_from_sums(sums[0]), ccc_from_sums(sums[1]), sums[:, N])


def _va_result(ccc_valence, ccc_arousal, n_known) -> dict | None:
    if ccc_valence is None and ccc_arousal is None:
        return None
    both = ccc_valence is not None and ccc_arousal is not None
    return {
        "ccc_valence": ccc_valence,
        "ccc_arousal": ccc_arousal,
        # a mean over one dimension would pass for the usual number: only with both
        "ccc_mean": (ccc_valence + ccc_arousal) / 2 if both else None,
        "n": int(max(n_known)),
    }


# --- public metrics -----------------------------------------------------------------------

def au_metrics(labels, probs, thresholds=AU_THRESHOLD, names=AU_NAMES) -> dict | None:
    """ABAW AU metrics of ``labels`` [N, A] (1/0, -1 unknown) and ``probs`` [N, A], A = len(names).

    ``thresholds``: a scalar, one per AU ([A]) or one per entry ([N, A]); an AU is predicted
    present when ``prob >= threshold`` (sklearn's precision_recall_curve convention, so
    thresholds tuned with it mean the same here). Returns ``{"score", "f1", "acc",
    "per_au_f1", "n_entries"}``: "f1" (the mean per-AU F1, the later ABAW F1-only form) and
    "acc" use the known entries only; an AU without any known entry is left out of "f1" and
    has ``per_au_f1`` None; "n_entries" counts the known (frame, AU) entries. None when no
    entry is known.
    """
    return au_scores(au_counts(labels, probs, thresholds)[0], names)


def expr_metrics(labels, probs, names=EXPR_NAMES) -> dict | None:
    """ABAW EXPR metrics of ``labels`` [N] (0..C-1, -1 unknown) and ``probs`` [N, C] (argmax).

    Returns ``{"score", "f1", "acc", "per_class_f1", "confusion", "n"}`` over the known rows:
    "f1" is sklearn's macro F1 (classes present in truth or prediction; also the F1-only
    form), "per_class_f1" has every class (0 where undefined), "confusion" is C x C,
    rows = truth, columns = prediction. None when no label is known.
    """
    return expr_scores(expr_confusion(labels, probs)[0], names)


def va_metrics(labels, preds) -> dict | None:
    """CCC of valence and arousal (``labels`` and ``preds`` [N, 2], NaN labels unknown).

    Each dimension uses its own known rows. Returns ``{"ccc_valence", "ccc_arousal",
    "ccc_mean", "n"}`` ("ccc_mean" is the F1-only-era VA figure; None unless both are
    known; "n" is the larger of the two dimensions' known-row counts); a dimension without
    any known row is None; None when neither has any.
    """
    labels = np.asarray(labels, dtype=np.float64)
    preds = np.asarray(preds, dtype=np.float64)
    sums = va_sums(labels, preds)[0]          # validates shapes and NaN predictions
    per_dim = []
    for d in range(2):
        known = ~np.isnan(labels[:, d])
        per_dim.append(ccc(labels[known, d], preds[known, d]) if known.any() else None)
    return _va_result(per_dim[0], per_dim[1], sums[:, N])


def abaw_total(result: Mapping) -> float:
    """AU score + EXPR score + CCC_V + CCC_A: the best-epoch selection criterion.

    ``result`` is one model's dict with "AU", "EXPR" and "VA" entries. A missing task (None
    or absent), or a missing VA dimension, contributes nothing to the sum: totals of models
    evaluated on different task sets are therefore not comparable.
    """
    total = 0.0
    for task in ("AU", "EXPR"):
        if result.get(task) is not None:
            total += result[task]["score"]
    va = result.get("VA")
    if va is not None:
        total += sum(v for v in (va["ccc_valence"], va["ccc_arousal"]) if v is not None)
    return float(total)


def era_total(result: Mapping, era: str) -> float:
    """The summed score of a competition era: ``"2020"`` is :func:`abaw_total`; ``"2022"`` the
    multi-task challenge's AU mean F1 + EXPR macro F1 + mean CCC (a missing task adds nothing)."""
    if era == "2020":
        return abaw_total(result)
    if era != "2022":
        raise ValueError(f"unknown metrics era {era!r}: use 2020 or 2022")
    total = 0.0
    for task in ("AU", "EXPR"):
        if result.get(task) is not None:
            total += result[task]["f1"]
    va = result.get("VA")
    if va is not None and va["ccc_mean"] is not None:
        total += va["ccc_mean"]
    return float(total)
