"""Tests of pipeline.build.balance: class and VA-bin reweighting. Expected values are computed by
hand, and histograms with numpy (``np.histogram2d`` on the label schema's bin edges)."""
import numpy as np
import pytest

from pipeline.build import balance
from pipeline.core.labels import VA_BIN_EDGES


# --- expressions ---------------------------------------------------------------------
def test_class_weights_by_hand():
    # counts [3, 1, 2, 0]: 6 rows, 3 present classes, 2 draws each; absent classes weigh 0.
    w = balance.class_weights([3, 1, 2, 0])
    np.testing.assert_allclose(w, [2 / 3, 2, 1, 0])
    np.testing.assert_allclose(w * [3, 1, 2, 0], [2, 2, 2, 0])
    with pytest.raises(ValueError, match="no labelled row"):
        balance.class_weights([0, 0, 0])


def test_class_balanced_sampling_is_near_uniform():
    rng = np.random.default_rng(0)
    shares = np.array([0.45, 0.03, 0.02, 0.01, 0.25, 0.14, 0.10])
    classes = rng.choice(7, size=20000, p=shares)
    w = balance.class_weights(np.bincount(classes, minlength=7))[classes]
    assert w.sum() == pytest.approx(len(classes))
    n_draws = 70000
    drawn = classes[rng.choice(len(classes), size=n_draws, p=w / w.sum())]
    observed = np.bincount(drawn, minlength=7)
    expected = n_draws / 7
    chi2 = ((observed - expected) ** 2 / expected).sum()
    assert chi2 < 22.46                 # chi-square, 6 d.o.f., p = 0.001
    unweighted = np.bincount(classes[rng.choice(len(classes), size=n_draws)], minlength=7)
    assert ((unweighted - expected) ** 2 / expected).sum() > 1000   # the test can tell


# --- valence / arousal ---------------------------------------------------------------
def joint_table(va) -> np.ndarray:
    """20 x 20 counts [valence bin, arousal bin] of the rows with both values known."""
    known = ~np.isnan(va).any(axis=1)
    return np.histogram2d(va[known, 0], va[known, 1], bins=[VA_BIN_EDGES, VA_BIN_EDGES])[0]


def row_weights(va, mode) -> np.ndarray:
    """Each row's weight: its cell's weight (0 where a value is unknown)."""
    cells = balance.va_cell_weights(joint_table(va), mode)
    known = ~np.isnan(va).any(axis=1)
    v, a = (np.digitize(np.nan_to_num(va[:, d]), VA_BIN_EDGES[1:-1]) for d in range(2))
    return np.where(known, cells[v, a], 0.0)


def test_va_joint_weights_by_hand():
    va = np.array([[-0.99, -0.99], [-0.98, -0.97], [0.5, 0.5], [np.nan, np.nan], [0.2, np.nan]])
    # Cells: rows 0 and 1 share cell (0, 0), row 2 is alone in (15, 15); 3 known rows.
    # Raw 1/count: 1/2, 1/2, 1 (sum 2), scaled to sum 3: 0.75, 0.75, 1.5.
    np.testing.assert_allclose(row_weights(va, "joint"), [0.75, 0.75, 1.5, 0, 0])


def test_va_marginal_weights_by_hand():
    # Counts in (valence bin, arousal bin): (0,0) x2, (0,1) x1, (1,0) x1, (1,1) x2.
    # Both marginals are already flat (3 and 3): IPF leaves every weight at 1, while the
    # joint rule would halve the rows of the doubled cells.
    lo, hi = -0.97, -0.87          # bins 0 and 1 on [-1, 1]
    va = np.array([[lo, lo], [lo, lo], [lo, hi], [hi, lo], [hi, hi], [hi, hi]])
    np.testing.assert_allclose(row_weights(va, "marginal"), np.ones(6))
    np.testing.assert_allclose(row_weights(va, "joint"), [0.75, 0.75, 1.5, 1.5, 0.75, 0.75])
    # Diagonal only: (0,0) x4, (1,1) x1. Flat marginals need equal cell masses, 2.5 each.
    va = np.array([[lo, lo]] * 4 + [[hi, hi]])
    np.testing.assert_allclose(row_weights(va, "marginal"), [0.625] * 4 + [2.5])


@pytest.mark.parametrize("mode", ["joint", "marginal"])
def test_va_cell_weights_keep_the_epoch_length(mode):
    table = np.zeros((20, 20))
    table[0, 0], table[0, 1], table[5, 5], table[19, 3] = 7, 1, 2, 5
    w = balance.va_cell_weights(table, mode)
    assert (table * w).sum() == pytest.approx(table.sum())
    assert np.all(w[table == 0] == 0) and np.all(w[table > 0] > 0)
    if mode == "joint":  # every occupied cell gets the same mass: 15 rows / 4 cells
        np.testing.assert_allclose((table * w)[table > 0], 15 / 4)


def _skewed_va(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.normal(0.2, 0.25, n)
    a = 0.6 * v + rng.normal(0.1, 0.2, n)
    va = np.clip(np.stack([v, a], axis=1), -1, 1)
    va[rng.random(n) < 0.05] = np.nan
    return va


def _cv(x: np.ndarray) -> float:
    return float(np.std(x) / np.mean(x))


def _histogram(va, mode, weights=None) -> np.ndarray:
    """Joint [20, 20] or marginal [2, 20] (weighted) histogram of the known rows."""
    known = ~np.isnan(va).any(axis=1)
    w = None if weights is None else weights[known]
    if mode == "joint":
        return np.histogram2d(va[known, 0], va[known, 1], bins=[VA_BIN_EDGES] * 2, weights=w)[0]
    return np.stack([np.histogram(va[known, d], bins=VA_BIN_EDGES, weights=w)[0] for d in range(2)])


@pytest.mark.parametrize("mode", ["joint", "marginal"])
def test_va_weights_flatten_histogram(mode):
    va = _skewed_va(20000, seed=0)
    w = row_weights(va, mode)
    known = ~np.isnan(va).any(axis=1)
    assert np.all(w[~known] == 0)
    assert w.sum() == pytest.approx(known.sum())
    before, after = _histogram(va, mode), _histogram(va, mode, w)
    occupied = before > 0
    if mode == "joint":
        cv_before, cv_after = _cv(before[occupied]), _cv(after[occupied])
    else:
        cv_before = max(_cv(before[d][occupied[d]]) for d in range(2))
        cv_after = max(_cv(after[d][occupied[d]]) for d in range(2))
    assert cv_before > 1.0
    assert cv_after < 0.1 * cv_before
    # And actual draws follow the weights: their histogram is flat too.
    rng = np.random.default_rng(1)
    drawn_hist = _histogram(va[rng.choice(len(va), size=50000, p=w / w.sum())], mode)
    if mode == "joint":
        assert _cv(drawn_hist[occupied]) < 0.5 * cv_before
    else:
        assert max(_cv(drawn_hist[d][occupied[d]]) for d in range(2)) < 0.3 * cv_before


def test_va_errors():
    with pytest.raises(ValueError, match="no row"):
        balance.va_cell_weights(np.zeros((20, 20)))
    with pytest.raises(ValueError, match="mode"):
        balance.va_cell_weights(np.ones((20, 20)), "cells")
