"""Tests of pipeline.balance: imbalance measures, ML-ROS, class and VA reweighting,
downsampling. Expected values are computed by hand in the tests or independently."""
import numpy as np
import pytest

from pipeline import balance
from pipeline.labels import AU_NAMES, VA_BIN_EDGES, va_to_bin

# 5 rows, 3 labels; -1 is unknown and must not count as positive.
# positives per label: [4, 1, 2] -> IRLbl = [4/4, 4/1, 4/2] = [1, 4, 2], MeanIR = 7/3.
SMALL = np.array([
    [1, 0, 1],
    [1, 1, -1],
    [1, 0, 0],
    [0, -1, 1],
    [1, 0, 0],
])


def test_irlbl_and_mean_ir_by_hand():
    np.testing.assert_allclose(balance.irlbl(SMALL), [1.0, 4.0, 2.0])
    assert balance.mean_ir(SMALL) == pytest.approx(7 / 3)


def test_unknown_is_not_positive():
    # Turning the unknowns into positives would change the counts to [4, 2, 3].
    as_positive = np.where(SMALL == -1, 1, SMALL)
    np.testing.assert_allclose(balance.irlbl(as_positive), [1.0, 2.0, 4 / 3])
    np.testing.assert_allclose(balance.irlbl(SMALL), [1.0, 4.0, 2.0])


def test_irlbl_weighted_by_hand():
    # Row 1 (labels 0 and 1) counted 3 times: positives [6, 3, 2] -> [1, 2, 3].
    np.testing.assert_allclose(balance.irlbl_weighted(SMALL, [1, 3, 1, 1, 1]), [1.0, 2.0, 3.0])
    np.testing.assert_allclose(balance.irlbl_weighted(SMALL, np.ones(5)), balance.irlbl(SMALL))


def test_label_without_positive_raises_naming_it():
    y = SMALL.copy()
    y[:, 1] = np.where(y[:, 1] == 1, 0, y[:, 1])
    with pytest.raises(balance.NoPositiveLabelError, match="AU2") as err:
        balance.irlbl(y, names=AU_NAMES[:3])
    assert err.value.label_indices == [1] and err.value.label_names == ["AU2"]
    with pytest.raises(ValueError, match="column 1"):
        balance.ml_ros(y)


def test_bad_label_values_rejected():
    with pytest.raises(ValueError, match="1, 0 or -1"):
        balance.irlbl(np.array([[1, 2], [0, 1]]))


def test_positive_codes_and_label_counts_by_hand():
    # Bit j set when label j is 1: rows of SMALL -> 0b101, 0b011, 0b001, 0b100, 0b001.
    codes = balance.positive_codes(SMALL)
    np.testing.assert_array_equal(codes, [5, 3, 1, 4, 1])
    assert codes.dtype == np.uint8
    np.testing.assert_allclose(balance.label_counts(codes, 3), [4, 1, 2])
    np.testing.assert_allclose(balance.label_counts(codes, 3, np.array([1, 3, 1, 1, 1])), [6, 3, 2])
    assert balance.code_dtype(8) == np.uint8 and balance.code_dtype(9) == np.uint16
    assert balance.code_dtype(62) == np.uint64
    with pytest.raises(ValueError, match="at most 62 labels"):
        balance.code_dtype(63)
    wide = np.zeros((2, 40), np.int8)
    wide[0, 39] = 1
    np.testing.assert_array_equal(balance.positive_codes(wide), [1 << 39, 0])


def test_ml_ros_on_codes_equals_ml_ros_on_the_matrix():
    rng = np.random.default_rng(4)
    y = (rng.random((3000, 8)) < [0.4, 0.2, 0.1, 0.3, 0.05, 0.3, 0.2, 0.5]).astype(np.int8)
    y[rng.random(y.shape) < 0.1] = -1
    clones = balance.ml_ros_codes(balance.positive_codes(y), 8, budget_pct=40, seed=9)
    assert clones.sum() > 0
    np.testing.assert_array_equal(clones, balance.ml_ros(y, budget_pct=40, seed=9))


def _two_disjoint_labels(n_a: int, n_b: int) -> np.ndarray:
    """n_a rows carrying only label 0, then n_b rows carrying only label 1."""
    return np.array([[1, 0]] * n_a + [[0, 1]] * n_b)


def test_ml_ros_one_clone_by_hand_gives_multiplicity_two():
    # pos [4, 2]: IRLbl [1, 2], MeanIR 1.5, label 1 is minority. One clone of a label-1
    # row: pos [4, 3], IRLbl(1) = 4/3 <= 1.5, so ML-ROS stops after exactly one clone.
    y = _two_disjoint_labels(4, 2)
    clones = balance.ml_ros(y, budget_pct=50, seed=3)
    assert clones.sum() == 1
    assert clones[:4].sum() == 0
    multiplicity = 1 + clones
    assert sorted(multiplicity[4:].tolist()) == [1, 2]      # the cloned row counts twice
    np.testing.assert_allclose(balance.irlbl_weighted(y, multiplicity), [1.0, 4 / 3])


def test_ml_ros_preset_mean_ir_option():
    # Same data, MeanIR preset to 2.0 as the reference does: IRLbl(1) = 2 is not > 2.
    y = _two_disjoint_labels(4, 2)
    assert balance.ml_ros(y, mean_ir=2.0).sum() == 0
    # MeanIR preset to 1.1: need 4 / (2 + c) <= 1.1 -> c >= 1.64 -> 2 clones.
    assert balance.ml_ros(y, mean_ir=1.1).sum() == 2


def test_ml_ros_weights_are_starting_multiplicities():
    # Every row counted twice: pos [8, 4], MeanIR 1.5; 8 / (4 + c) <= 1.5 -> c = 2.
    y = _two_disjoint_labels(4, 2)
    clones = balance.ml_ros(y, weights=np.full(6, 2.0))
    assert clones.sum() == 2 and clones[:4].sum() == 0
    # A zero-weight row is not in the bag, so it is never cloned.
    clones = balance.ml_ros(y, weights=[2, 2, 2, 2, 2, 0], mean_ir=1.0, budget_pct=100)
    assert clones[5] == 0 and clones[4] > 0


def test_ml_ros_spends_exactly_the_budget_when_imbalance_cannot_be_fixed():
    # Label 1 only on row 0, which also carries the majority label 0: a clone raises
    # both counts, IRLbl(1) = (10 + c) / (1 + c) > 1 for ever, so with MeanIR preset to
    # 1 ML-ROS spends its whole budget, floor(30% of 10) = 3 clones, all on row 0.
    y = np.array([[1, 1]] + [[1, 0]] * 9)
    clones = balance.ml_ros(y, budget_pct=30, mean_ir=1.0)
    assert clones.tolist() == [3] + [0] * 9


def _imbalanced_au(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rates = np.array([0.20, 0.15, 0.25, 0.30, 0.35, 0.05, 0.03, 0.50])
    y = (rng.random((n, 8)) < rates).astype(np.int8)
    y[rng.random(n) < 0.1] = -1          # some frames with all AUs unknown
    return y


def test_ml_ros_lowers_mean_ir_and_respects_budget():
    y = _imbalanced_au(5000, seed=0)
    before = balance.mean_ir(y)
    clones = balance.ml_ros(y, budget_pct=50, seed=0)
    after = balance.irlbl_weighted(y, 1 + clones)
    assert 0 < clones.sum() <= 2500
    assert after.mean() < 0.7 * before
    # Only rows carrying a minority label (AU15 or AU20 here: IRLbl 10 and 17 vs MeanIR
    # ~5) can be cloned; unknown rows never are.
    minority = balance.irlbl(y) > before
    assert np.all(clones[~np.any(y[:, minority] == 1, axis=1)] == 0)
    # Stopped because every minority label reached MeanIR, not because of the budget. A
    # label leaves the minority set at MeanIR and is not re-added, so clones of other
    # labels can push it back up a little (here via co-occurrence with AU25's count).
    assert clones.sum() < 2500
    np.testing.assert_allclose(after[minority], before, rtol=0.01)


def test_ml_ros_tight_budget_is_spent_exactly():
    y = _imbalanced_au(5000, seed=0)
    assert balance.ml_ros(y, budget_pct=0.5, seed=0).sum() == 25


def test_ml_ros_deterministic_per_seed_and_different_across_seeds():
    y = _imbalanced_au(3000, seed=1)
    a, b = balance.ml_ros(y, seed=7), balance.ml_ros(y, seed=7)
    np.testing.assert_array_equal(a, b)
    c = balance.ml_ros(y, seed=8)
    assert not np.array_equal(a, c)


def test_ml_ros_clones_can_be_cloned():
    # Two rows carry the minority label. Drawing from the bag (originals plus clones) is a
    # Polya urn started at (1, 1): the share of the 60 clones that go to row 0 is close to
    # uniform on [0, 1] (variance 1/12 ~ 0.083). Drawing from the originals only would make
    # it Binomial(60, 1/2) / 60 (variance 0.004).
    y = _two_disjoint_labels(100, 2)
    shares = []
    for seed in range(300):
        clones = balance.ml_ros(y, budget_pct=60 / 102 * 100, mean_ir=1.0, seed=seed)
        assert clones.sum() == 60
        shares.append(clones[100] / 60)
    assert np.var(shares) > 0.05
    assert np.mean(shares) == pytest.approx(0.5, abs=0.06)


# --- expressions ---------------------------------------------------------------------
def test_class_balanced_weights_by_hand():
    # 6 labelled rows, present classes {0, 1, 2}: each class gets 6 / 3 = 2 draws.
    classes = [0, 0, 0, 1, -1, 2, 2]
    w = balance.class_balanced_weights(classes, n_classes=7)
    np.testing.assert_allclose(w, [2 / 3, 2 / 3, 2 / 3, 2, 0, 1, 1])
    assert balance.absent_classes(classes, 7) == [3, 4, 5, 6]
    np.testing.assert_allclose(balance.class_histogram(classes, 7, weights=w), [2, 2, 2, 0, 0, 0, 0])
    np.testing.assert_allclose(balance.class_histogram(classes, 7), [3, 1, 2, 0, 0, 0, 0])


def test_class_weights_from_counts():
    # counts [3, 1, 2, 0]: 6 rows, 3 present classes, 2 draws each.
    np.testing.assert_allclose(balance.class_weights([3, 1, 2, 0]), [2 / 3, 2, 1, 0])


def test_class_balanced_weights_errors():
    with pytest.raises(ValueError, match="no labelled row"):
        balance.class_balanced_weights([-1, -1])
    with pytest.raises(ValueError, match="0..6"):
        balance.class_balanced_weights([0, 7])


def test_class_balanced_sampling_is_near_uniform():
    rng = np.random.default_rng(0)
    shares = np.array([0.45, 0.03, 0.02, 0.01, 0.25, 0.14, 0.10])
    classes = rng.choice(7, size=20000, p=shares)
    classes[:500] = -1
    w = balance.class_balanced_weights(classes)
    n_draws = 70000
    drawn = classes[rng.choice(len(classes), size=n_draws, p=w / w.sum())]
    assert np.all(drawn >= 0)
    observed = np.bincount(drawn, minlength=7)
    expected = n_draws / 7
    chi2 = ((observed - expected) ** 2 / expected).sum()
    assert chi2 < 22.46                 # chi-square, 6 d.o.f., p = 0.001
    unweighted = np.bincount(classes[rng.choice(len(classes), size=n_draws)] + 1, minlength=8)[1:]
    assert ((unweighted - expected) ** 2 / expected).sum() > 1000   # the test can tell


# --- valence / arousal ---------------------------------------------------------------
def test_va_bin_index_uses_the_label_schema():
    values = np.array([-1.0, -0.95, -0.9, 0.0, 0.05, 0.999, 1.0, np.nan])
    np.testing.assert_array_equal(balance.va_bin_index(values), [0, 0, 1, 10, 10, 19, 19, -1])
    np.testing.assert_array_equal(balance.va_bin_index(values), va_to_bin(values))
    np.testing.assert_array_equal(balance.va_bin_index(values, bins=4), [0, 0, 0, 2, 2, 3, 3, -1])
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        balance.va_bin_index([1.5])


def test_va_joint_weights_by_hand():
    va = np.array([[-0.99, -0.99], [-0.98, -0.97], [0.5, 0.5], [np.nan, np.nan], [0.2, np.nan]])
    # Cells: rows 0 and 1 share cell (0, 0), row 2 is alone in (15, 15); 3 known rows.
    # Raw 1/count: 1/2, 1/2, 1 (sum 2), scaled to sum 3: 0.75, 0.75, 1.5.
    w = balance.va_balanced_weights(va, "joint")
    np.testing.assert_allclose(w, [0.75, 0.75, 1.5, 0, 0])
    hist = balance.bin_histogram(va, "joint", weights=w)
    assert hist[0, 0] == pytest.approx(1.5) and hist[15, 15] == pytest.approx(1.5)
    assert hist.sum() == pytest.approx(3)


def test_va_marginal_weights_by_hand():
    # Counts in (valence bin, arousal bin): (0,0) x2, (0,1) x1, (1,0) x1, (1,1) x2.
    # Both marginals are already flat (3 and 3): IPF leaves every weight at 1, while the
    # joint rule would halve the rows of the doubled cells.
    lo, hi = -0.97, -0.87          # bins 0 and 1 on [-1, 1]
    va = np.array([[lo, lo], [lo, lo], [lo, hi], [hi, lo], [hi, hi], [hi, hi]])
    np.testing.assert_allclose(balance.va_balanced_weights(va, "marginal"), np.ones(6))
    np.testing.assert_allclose(balance.va_balanced_weights(va, "joint"), [0.75, 0.75, 1.5, 1.5, 0.75, 0.75])
    # Diagonal only: (0,0) x4, (1,1) x1. Flat marginals need equal cell masses, 2.5 each.
    va = np.array([[lo, lo]] * 4 + [[hi, hi]])
    np.testing.assert_allclose(balance.va_balanced_weights(va, "marginal"), [0.625] * 4 + [2.5])


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


@pytest.mark.parametrize("mode", ["joint", "marginal"])
def test_va_weights_flatten_histogram(mode):
    va = _skewed_va(20000, seed=0)
    w = balance.va_balanced_weights(va, mode)
    known = ~np.isnan(va).any(axis=1)
    assert np.all(w[~known] == 0)
    assert w.sum() == pytest.approx(known.sum())
    before = balance.bin_histogram(va, mode)
    after = balance.bin_histogram(va, mode, weights=w)
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
    drawn = va[rng.choice(len(va), size=50000, p=w / w.sum())]
    drawn_hist = balance.bin_histogram(drawn, mode)
    if mode == "joint":
        assert _cv(drawn_hist[occupied]) < 0.5 * cv_before
    else:
        assert max(_cv(drawn_hist[d][occupied[d]]) for d in range(2)) < 0.3 * cv_before


def test_marginal_histogram_matches_numpy():
    va = _skewed_va(3000, seed=2)
    known = ~np.isnan(va).any(axis=1)
    hist = balance.bin_histogram(va, "marginal")
    np.testing.assert_array_equal(hist[0], np.histogram(va[known, 0], bins=VA_BIN_EDGES)[0])
    np.testing.assert_array_equal(hist[1], np.histogram(va[known, 1], bins=VA_BIN_EDGES)[0])


def test_va_errors():
    with pytest.raises(ValueError, match="no row"):
        balance.va_balanced_weights(np.full((3, 2), np.nan))
    with pytest.raises(ValueError, match="mode"):
        balance.va_balanced_weights(np.zeros((3, 2)), "cells")


# --- downsampling --------------------------------------------------------------------
def test_downsample_every_keeps_ranks_multiple_of_k():
    mask = np.array([True, False, True, True, False, True, True, True])
    # Class rows 0, 2, 3, 5, 6, 7 have ranks 0..5; ranks 0 and 3 are kept.
    np.testing.assert_array_equal(balance.downsample_every(mask, 3), [0, 5])
    np.testing.assert_array_equal(balance.downsample_every(np.flatnonzero(mask), 3), [0, 5])
    np.testing.assert_array_equal(balance.downsample_every(mask, 1), np.flatnonzero(mask))


def test_downsample_classes_reference_setting():
    classes = np.array([0] * 25 + [4] * 5 + [1] * 3 + [-1] * 2 + [5] * 4)
    kept = balance.downsample_classes(classes, {0: 10, 4: 2, 5: 2})
    counts = np.bincount(classes[kept] + 1, minlength=8)
    # Neutral 25 -> ranks 0, 10, 20 = 3; Happiness 5 -> 3; Sadness 4 -> 2; others all.
    assert counts.tolist() == [2, 3, 3, 0, 0, 3, 2, 0]   # index 0 is -1
    assert kept.tolist() == sorted(kept.tolist())
    assert kept[:3].tolist() == [0, 10, 20]


def test_downsample_by():
    np.testing.assert_array_equal(balance.downsample_by(10, 5), [0, 5])
    np.testing.assert_array_equal(balance.downsample_by(11, 5), [0, 5, 10])
    with pytest.raises(ValueError):
        balance.downsample_by(10, 0)
