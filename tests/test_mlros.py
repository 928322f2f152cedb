"""Tests of pipeline.build.mlros: IRLbl, MeanIR and ML-ROS. Expected values are computed by hand
or with plain numpy counts (``reference_irlbl``), never with the library's own counting."""
import numpy as np
import pytest

from pipeline.build import mlros
from pipeline.core.labels import AU_NAMES

# 5 rows, 3 labels; -1 is unknown and must not count as positive.
# positives per label: [4, 1, 2] -> IRLbl = [4/4, 4/1, 4/2] = [1, 4, 2], MeanIR = 7/3.
SMALL = np.array([
    [1, 0, 1],
    [1, 1, -1],
    [1, 0, 0],
    [0, -1, 1],
    [1, 0, 0],
])


def reference_irlbl(labels, multiplicity=None) -> np.ndarray:
    """IRLbl with numpy: positives per label (each row counted ``multiplicity`` times)."""
    y = np.asarray(labels)
    m = np.ones(len(y)) if multiplicity is None else np.asarray(multiplicity, dtype=np.float64)
    positives = ((y == 1) * m[:, None]).sum(axis=0)
    return positives.max() / positives


def ml_ros(labels, **kwargs) -> np.ndarray:
    """ML-ROS on a label matrix (the library takes the rows' codes)."""
    y = np.asarray(labels)
    return mlros.ml_ros(mlros.positive_codes(y), y.shape[1], **kwargs)


def library_irlbl(labels, multiplicity=None, names=None) -> np.ndarray:
    y = np.asarray(labels)
    return mlros.irlbl_from_counts(mlros.label_counts(mlros.positive_codes(y), y.shape[1], multiplicity), names)


def test_irlbl_and_mean_ir_by_hand():
    np.testing.assert_allclose(library_irlbl(SMALL), [1.0, 4.0, 2.0])
    assert library_irlbl(SMALL).mean() == pytest.approx(7 / 3)


def test_unknown_is_not_positive():
    # Turning the unknowns into positives would change the counts to [4, 2, 3].
    as_positive = np.where(SMALL == -1, 1, SMALL)
    np.testing.assert_allclose(library_irlbl(as_positive), [1.0, 2.0, 4 / 3])
    np.testing.assert_allclose(library_irlbl(SMALL), [1.0, 4.0, 2.0])


def test_irlbl_weighted_by_hand():
    # Row 1 (labels 0 and 1) counted 3 times: positives [6, 3, 2] -> [1, 2, 3].
    np.testing.assert_allclose(library_irlbl(SMALL, np.array([1, 3, 1, 1, 1])), [1.0, 2.0, 3.0])


def test_label_without_positive_raises_naming_it():
    y = SMALL.copy()
    y[:, 1] = np.where(y[:, 1] == 1, 0, y[:, 1])
    with pytest.raises(mlros.NoPositiveLabelError, match="AU2") as err:
        library_irlbl(y, names=AU_NAMES[:3])
    assert err.value.label_indices == [1] and err.value.label_names == ["AU2"]
    with pytest.raises(ValueError, match="column 1"):
        ml_ros(y)


def test_bad_label_values_rejected():
    with pytest.raises(ValueError, match="1, 0 or -1"):
        mlros.positive_codes(np.array([[1, 2], [0, 1]]))


def test_positive_codes_and_label_counts_by_hand():
    # Bit j set when label j is 1: rows of SMALL -> 0b101, 0b011, 0b001, 0b100, 0b001.
    codes = mlros.positive_codes(SMALL)
    np.testing.assert_array_equal(codes, [5, 3, 1, 4, 1])
    assert codes.dtype == np.uint8
    np.testing.assert_allclose(mlros.label_counts(codes, 3), [4, 1, 2])
    np.testing.assert_allclose(mlros.label_counts(codes, 3, np.array([1, 3, 1, 1, 1])), [6, 3, 2])
    assert mlros.code_dtype(8) == np.uint8 and mlros.code_dtype(9) == np.uint16
    assert mlros.code_dtype(62) == np.uint64
    with pytest.raises(ValueError, match="at most 62 labels"):
        mlros.code_dtype(63)
    wide = np.zeros((2, 40), np.int8)
    wide[0, 39] = 1
    np.testing.assert_array_equal(mlros.positive_codes(wide), [1 << 39, 0])


def _two_disjoint_labels(n_a: int, n_b: int) -> np.ndarray:
    """n_a rows carrying only label 0, then n_b rows carrying only label 1."""
    return np.array([[1, 0]] * n_a + [[0, 1]] * n_b)


def test_ml_ros_one_clone_by_hand_gives_multiplicity_two():
    # pos [4, 2]: IRLbl [1, 2], MeanIR 1.5, label 1 is minority. One clone of a label-1
    # row: pos [4, 3], IRLbl(1) = 4/3 <= 1.5, so ML-ROS stops after exactly one clone.
    y = _two_disjoint_labels(4, 2)
    clones = ml_ros(y, budget_pct=50, seed=3)
    assert clones.sum() == 1
    assert clones[:4].sum() == 0
    multiplicity = 1 + clones
    assert sorted(multiplicity[4:].tolist()) == [1, 2]      # the cloned row counts twice
    np.testing.assert_allclose(reference_irlbl(y, multiplicity), [1.0, 4 / 3])


def test_ml_ros_preset_mean_ir_option():
    # Same data, MeanIR preset to 2.0 as the reference does: IRLbl(1) = 2 is not > 2.
    y = _two_disjoint_labels(4, 2)
    assert ml_ros(y, mean_ir=2.0).sum() == 0
    # MeanIR preset to 1.1: need 4 / (2 + c) <= 1.1 -> c >= 1.64 -> 2 clones.
    assert ml_ros(y, mean_ir=1.1).sum() == 2


def test_ml_ros_weights_are_starting_multiplicities():
    # Every row counted twice: pos [8, 4], MeanIR 1.5; 8 / (4 + c) <= 1.5 -> c = 2.
    y = _two_disjoint_labels(4, 2)
    clones = ml_ros(y, weights=np.full(6, 2.0))
    assert clones.sum() == 2 and clones[:4].sum() == 0
    # A zero-weight row is not in the bag, so it is never cloned.
    clones = ml_ros(y, weights=[2, 2, 2, 2, 2, 0], mean_ir=1.0, budget_pct=100)
    assert clones[5] == 0 and clones[4] > 0


def test_ml_ros_spends_exactly_the_budget_when_imbalance_cannot_be_fixed():
    # Label 1 only on row 0, which also carries the majority label 0: a clone raises
    # both counts, IRLbl(1) = (10 + c) / (1 + c) > 1 for ever, so with MeanIR preset to
    # 1 ML-ROS spends its whole budget, floor(30% of 10) = 3 clones, all on row 0.
    y = np.array([[1, 1]] + [[1, 0]] * 9)
    clones = ml_ros(y, budget_pct=30, mean_ir=1.0)
    assert clones.tolist() == [3] + [0] * 9


def _imbalanced_au(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rates = np.array([0.20, 0.15, 0.25, 0.30, 0.35, 0.05, 0.03, 0.50])
    y = (rng.random((n, 8)) < rates).astype(np.int8)
    y[rng.random(n) < 0.1] = -1          # some frames with all AUs unknown
    return y


def test_ml_ros_lowers_mean_ir_and_respects_budget():
    y = _imbalanced_au(5000, seed=0)
    before = reference_irlbl(y).mean()
    clones = ml_ros(y, budget_pct=50, seed=0)
    after = reference_irlbl(y, 1 + clones)
    assert 0 < clones.sum() <= 2500
    assert after.mean() < 0.7 * before
    # Only rows carrying a minority label (AU15 or AU20 here: IRLbl 10 and 17 vs MeanIR
    # ~5) can be cloned; unknown rows never are.
    minority = reference_irlbl(y) > before
    assert np.all(clones[~np.any(y[:, minority] == 1, axis=1)] == 0)
    # Stopped because every minority label reached MeanIR, not because of the budget. A
    # label leaves the minority set at MeanIR and is not re-added, so clones of other
    # labels can push it back up a little (here via co-occurrence with AU25's count).
    assert clones.sum() < 2500
    np.testing.assert_allclose(after[minority], before, rtol=0.01)


def test_ml_ros_tight_budget_is_spent_exactly():
    y = _imbalanced_au(5000, seed=0)
    assert ml_ros(y, budget_pct=0.5, seed=0).sum() == 25


def test_ml_ros_deterministic_per_seed_and_different_across_seeds():
    y = _imbalanced_au(3000, seed=1)
    a, b = ml_ros(y, seed=7), ml_ros(y, seed=7)
    np.testing.assert_array_equal(a, b)
    c = ml_ros(y, seed=8)
    assert not np.array_equal(a, c)


def test_ml_ros_clones_can_be_cloned():
    # Two rows carry the minority label. Drawing from the bag (originals plus clones) is a
    # Polya urn started at (1, 1): the share of the 60 clones that go to row 0 is close to
    # uniform on [0, 1] (variance 1/12 ~ 0.083). Drawing from the originals only would make
    # it Binomial(60, 1/2) / 60 (variance 0.004).
    y = _two_disjoint_labels(100, 2)
    shares = []
    for seed in range(300):
        clones = ml_ros(y, budget_pct=60 / 102 * 100, mean_ir=1.0, seed=seed)
        assert clones.sum() == 60
        shares.append(clones[100] / 60)
    assert np.var(shares) > 0.05
    assert np.mean(shares) == pytest.approx(0.5, abs=0.06)


def test_ml_ros_stops_when_irlbl_reaches_mean_ir_exactly():
    # pos [6, 2]: IRLbl [1, 3], MeanIR 2 (exact in floating point). One clone gives
    # IRLbl(1) = 6 / 3 = 2 = MeanIR: balanced ("<= MeanIR"), so exactly one clone.
    y = _two_disjoint_labels(6, 2)
    clones = ml_ros(y, budget_pct=100, seed=0)
    assert clones.sum() == 1 and clones[:6].sum() == 0
    np.testing.assert_allclose(reference_irlbl(y, 1 + clones), [1.0, 2.0])


def test_ml_ros_fractional_budget_rounds_down():
    # The imbalance cannot be fixed (see above), so the whole budget is spent: 25% of 10
    # rows is 2.5 clones, rounded down to 2 (never up to 3).
    y = np.array([[1, 1]] + [[1, 0]] * 9)
    assert ml_ros(y, budget_pct=25, mean_ir=1.0).tolist() == [2] + [0] * 9
    assert ml_ros(y, budget_pct=29.9, mean_ir=1.0).sum() == 2
    assert ml_ros(y, budget_pct=30, mean_ir=1.0).sum() == 3


def test_ml_ros_does_not_clone_a_label_already_balanced_by_a_co_occurring_label():
    # Six rows of label 0, one row carrying labels 1 and 2: pos [6, 1, 1], IRLbl [1, 6, 6],
    # MeanIR preset 3: labels 1 and 2 are minority. Label 1's clone (the one row) gives
    # pos [6, 2, 2]: IRLbl 3 <= 3 for both, so label 2, next in turn, is not cloned.
    y = np.array([[1, 0, 0]] * 6 + [[0, 1, 1]])
    assert ml_ros(y, budget_pct=100, mean_ir=3.0).tolist() == [0] * 6 + [1]
    # with MeanIR from the data (13 / 3): 6 / 2 = 3 <= 13 / 3 after the one clone too
    assert ml_ros(y, budget_pct=100).tolist() == [0] * 6 + [1]
