"""Per-task rebalancing weights for the classes and the VA bins (docs/method.md, "Data
balancing"); ML-ROS for the action units is in ``pipeline.build.mlros``.

The weights are the expected number of times a row is drawn per epoch; the build stage
writes them into the training index and ``pipeline.training.sampling.TaskBatchSampler`` draws with
probability proportional to them.
"""
from __future__ import annotations

import numpy as np


# --- expressions: equal probability per class ---------------------------------------
def class_weights(counts) -> np.ndarray:
    """The per-epoch weight of one row of each class, from the class counts: every present
    class gets the same share of the draws.

    A row of class k weighs L / (K * count_k), K the number of present classes and L the
    number of labelled rows, so the weights sum to L (an epoch as long as the labelled
    data) and each present class gets L / K draws in expectation. Absent classes weigh 0
    (they cannot be drawn; the build warns or fails, naming them).
    """
    counts = np.asarray(counts, dtype=np.float64)
    n_labelled = counts.sum()
    if n_labelled == 0:
        raise ValueError("no labelled row (every class label is -1): nothing to balance")
    per_row = np.zeros(len(counts))
    present = counts > 0
    per_row[present] = n_labelled / (np.count_nonzero(present) * counts[present])
    return per_row


# --- valence / arousal: flatten the bin histogram ------------------------------------
VA_MODES = ("joint", "marginal")


def _ipf_uniform_marginals(table: np.ndarray, iterations: int, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Row and column factors r, c making table * r[:, None] * c[None, :] have uniform
    row sums over occupied rows and uniform column sums over occupied columns.

    Iterative proportional fitting: alternately rescale rows then columns to the target.
    When such a table exists, it converges to the one closest to the data in KL
    divergence, i.e. it keeps the valence-arousal correlation as much as flat marginals
    allow. When none exists (the occupied cells cannot carry two flat marginals), it
    drifts toward it with some cells' weights shrinking; we stop after ``iterations``,
    having just flattened arousal exactly and valence approximately.
    """
    rows, cols = table.sum(axis=1) > 0, table.sum(axis=0) > 0
    total = table.sum()
    row_target, col_target = total / rows.sum(), total / cols.sum()
    r, c = np.ones(table.shape[0]), np.ones(table.shape[1])
    for _ in range(iterations):
        row_sum = (table * c[None, :]).sum(axis=1) * r
        r[rows] *= row_target / row_sum[rows]
        col_sum = (table * r[:, None]).sum(axis=0) * c
        c[cols] *= col_target / col_sum[cols]
        row_sum = (table * r[:, None] * c[None, :]).sum(axis=1)
        if np.max(np.abs(row_sum[rows] / row_target - 1)) < tol:
            break
    return r, c


def va_cell_weights(table, mode: str = "joint", ipf_iterations: int = 200, ipf_tol: float = 1e-6) -> np.ndarray:
    """The per-epoch weight of one row in each [valence bin, arousal bin] cell, from the
    joint bin counts ``table`` (20 x 20 over the fixed [-1, 1] bins of ``pipeline.core.labels``,
    not the data range as the reference code does, so a value always falls in the same
    bin whatever data are merged), scaled so that the rows' weights sum to their number:
    ``(table * weights).sum() == table.sum()``.

    - ``joint``: the reference's choice: weight 1 / cell count, so every occupied cell
      gets the same share.
    - ``marginal``: both 1-D histograms (valence and arousal) flat over their occupied
      bins, by iterative proportional fitting on the table (``_ipf_uniform_marginals``).
      Chosen over "mean of 1/count_v and 1/count_a", which flattens neither marginal; IPF
      flattens both exactly whenever that is possible and otherwise changes the joint
      shape least.
    """
    if mode not in VA_MODES:
        raise ValueError(f"unknown VA balancing mode {mode!r}: use one of {VA_MODES}")
    table = np.asarray(table, dtype=np.float64)
    if table.sum() == 0:
        raise ValueError("no row with both valence and arousal known: nothing to balance")
    if mode == "joint":
        cell_weight = np.divide(1.0, table, out=np.zeros_like(table), where=table > 0)
    else:
        r, c = _ipf_uniform_marginals(table, ipf_iterations, ipf_tol)
        cell_weight = np.where(table > 0, r[:, None] * c[None, :], 0.0)
    return cell_weight * (table.sum() / (table * cell_weight).sum())
