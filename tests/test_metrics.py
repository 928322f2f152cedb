"""Metrics against scikit-learn, numpy and hand-computed values."""
import numpy as np
import pytest
from reference import assert_close_dicts, corrcoef_ccc, sklearn_au, sklearn_expr
from sklearn.metrics import f1_score

from pipeline.evaluation import metrics as M


# --- CCC ----------------------------------------------------------------------------------


def test_ccc_hand_values():
    # means .5 and 1, variances .25 and 1, covariance .5: 2 * .5 / (.25 + 1 + .25) = 2/3
    assert M.ccc([0, 1], [0, 2]) == pytest.approx(2 / 3, abs=1e-12)
    assert M.ccc([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0, abs=1e-12)
    assert M.ccc([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0, abs=1e-12)
    # a shift costs: x = [0, 1], y = x + 1: cov .25, vars .25, mean gap 1 -> .5 / 1.5
    assert M.ccc([0, 1], [1, 2]) == pytest.approx(1 / 3, abs=1e-12)


def test_ccc_matches_corrcoef_formula():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 200)
    y = 0.6 * x + rng.normal(0.1, 0.3, 200)
    assert M.ccc(x, y) == pytest.approx(corrcoef_ccc(x, y), abs=1e-12)


@pytest.mark.parametrize("x, y", [([0.3] * 5, [0.3] * 5), ([0.3] * 5, [0.1] * 5), ([0.4], [0.4]),
                                  ([0.1] * 3, [0.2, 0.5, -0.3]), ([0.2, 0.5, -0.3], [0.7] * 3)])
def test_ccc_constant_inputs_are_zero(x, y):
    value = M.ccc(x, y)
    assert value == pytest.approx(0.0, abs=1e-12) and not np.isnan(value)


def test_ccc_rejects_empty_and_mismatched():
    with pytest.raises(ValueError):
        M.ccc([], [])
    with pytest.raises(ValueError):
        M.ccc([1, 2], [1, 2, 3])


# --- AU -----------------------------------------------------------------------------------


def test_au_metrics_hand_computed():
    labels = np.full((4, 8), -1)
    labels[:, 0] = [1, 1, 0, 0]           # AU1 predicted [1, 0, 1, 0]: TP FN FP TN -> F1 .5
    labels[:, 1] = [1, 1, 1, -1]          # AU2 predicted [1, 1, 1, x]: F1 1
    probs = np.zeros((4, 8))
    probs[:, 0] = [0.9, 0.2, 0.5, 0.1]    # 0.5 counts as present (>=)
    probs[:, 1] = [0.8, 0.7, 0.6, 0.0]
    result = M.au_metrics(labels, probs)
    assert result["f1"] == pytest.approx(0.75)
    assert result["acc"] == pytest.approx(5 / 7)
    assert result["score"] == pytest.approx(0.5 * 0.75 + 0.5 * 5 / 7)
    assert result["per_au_f1"]["AU1"] == pytest.approx(0.5)
    assert result["per_au_f1"]["AU4"] is None
    assert result["n_entries"] == 7


def test_au_metrics_against_sklearn_with_unknowns_and_thresholds():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, size=(300, 8))
    labels[rng.random((300, 8)) < 0.2] = -1
    labels[:40] = -1                      # whole unknown frames
    labels[:, 6] = -1                     # an AU never known
    probs = rng.random((300, 8))
    thresholds = np.linspace(0.3, 0.7, 8)
    result = M.au_metrics(labels, probs, thresholds)
    assert_close_dicts(result, sklearn_au(labels, probs, thresholds))
    assert result["per_au_f1"]["AU20"] is None
    # per-entry thresholds give the same as the per-AU ones
    per_entry = M.au_metrics(labels, probs, np.tile(thresholds, (300, 1)))
    assert per_entry["score"] == pytest.approx(result["score"])


def test_au_metrics_unknown_entries_do_not_matter():
    rng = np.random.default_rng(2)
    labels = rng.integers(-1, 2, size=(50, 8))
    probs = rng.random((50, 8))
    base = M.au_metrics(labels, probs)
    probs[labels == -1] = rng.random((labels == -1).sum())
    assert M.au_metrics(labels, probs) == base


def test_au_metrics_none_known_is_none():
    assert M.au_metrics(np.full((5, 8), -1), np.full((5, 8), 0.9)) is None


def test_au_metrics_rejects_bad_labels():
    with pytest.raises(ValueError):
        M.au_metrics(np.full((2, 8), 2), np.zeros((2, 8)))


# --- EXPR ---------------------------------------------------------------------------------


def test_expr_metrics_against_sklearn():
    rng = np.random.default_rng(3)
    labels = rng.integers(-1, 7, size=400)
    probs = rng.dirichlet(np.ones(7), size=400)
    assert_close_dicts(M.expr_metrics(labels, probs), sklearn_expr(labels, probs))


def test_expr_macro_f1_over_present_classes_like_sklearn():
    # Fear (3) and Surprise (6) appear neither in truth nor in prediction
    labels = np.array([0, 0, 1, 2, 4, 5, 5, -1])
    predicted = np.array([0, 1, 1, 2, 4, 5, 0, 3])
    probs = np.eye(7)[predicted]
    result = M.expr_metrics(labels, probs)
    known = labels != -1
    assert result["f1"] == pytest.approx(f1_score(labels[known], predicted[known], average="macro"))
    # by hand: Neutral 2*1/(2+1+1) = .5, Anger 2/3, Disgust, Happiness 1, Sadness 2/3 -> mean of 5
    assert result["f1"] == pytest.approx((0.5 + 2 / 3 + 1 + 1 + 2 / 3) / 5)
    assert result["acc"] == pytest.approx(5 / 7)
    assert result["per_class_f1"]["Fear"] == 0.0
    assert result["confusion"][5] == [1, 0, 0, 0, 0, 1, 0]
    assert result["n"] == 7


def test_expr_macro_f1_counts_a_class_only_predicted_as_zero_like_sklearn():
    labels = np.array([0, 0, 1, 1])
    predicted = np.array([0, 2, 1, 1])  # Disgust (2) is predicted once and never true
    result = M.expr_metrics(labels, np.eye(7)[predicted])
    # by hand: Neutral 2/3, Anger 1, Disgust 0 -> mean of 3
    assert result["f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert result["f1"] == pytest.approx(f1_score(labels, predicted, average="macro"))


def test_expr_metrics_none_known_is_none():
    assert M.expr_metrics(np.full(4, -1), np.full((4, 7), 1 / 7)) is None


# --- VA -----------------------------------------------------------------------------------


def test_va_metrics_per_dimension_known_rows():
    labels = np.array([[0.0, 0.5], [1.0, np.nan], [np.nan, -0.5], [0.5, 0.0]])
    preds = np.array([[0.0, 0.4], [2.0, 9.0], [9.0, -0.4], [1.0, 0.1]])
    result = M.va_metrics(labels, preds)
    # valence over rows 0, 1, 3: x = [0, 1, .5], y = [0, 2, 1]
    assert result["ccc_valence"] == pytest.approx(corrcoef_ccc([0, 1, 0.5], [0, 2, 1]))
    assert result["ccc_arousal"] == pytest.approx(corrcoef_ccc([0.5, -0.5, 0.0], [0.4, -0.4, 0.1]))
    assert result["ccc_mean"] == pytest.approx((result["ccc_valence"] + result["ccc_arousal"]) / 2)


def test_va_metrics_missing():
    assert M.va_metrics(np.full((3, 2), np.nan), np.zeros((3, 2))) is None
    one_dim = M.va_metrics(np.array([[0.1, np.nan], [0.3, np.nan]]), np.array([[0.2, 0.0], [0.1, 0.0]]))
    assert one_dim["ccc_arousal"] is None and one_dim["ccc_mean"] is None
    assert one_dim["ccc_valence"] == pytest.approx(corrcoef_ccc([0.1, 0.3], [0.2, 0.1]))
    with pytest.raises(ValueError):
        M.va_metrics(np.array([[0.1, 0.2]]), np.array([[np.nan, 0.2]]))


def test_abaw_total():
    result = {"AU": {"score": 0.5}, "EXPR": {"score": 0.25},
              "VA": {"ccc_valence": 0.125, "ccc_arousal": -0.0625, "ccc_mean": 0.03125}}
    assert M.abaw_total(result) == pytest.approx(0.5 + 0.25 + 0.125 - 0.0625)
    assert M.abaw_total({"AU": None, "EXPR": {"score": 0.25}, "VA": None}) == pytest.approx(0.25)
    assert M.abaw_total({"VA": {"ccc_valence": 0.2, "ccc_arousal": None}}) == pytest.approx(0.2)


# --- the 2022+ era: 12 AUs, 8 classes, F1-only scores summed ---------------------------------


def test_metrics_of_the_2022_schema_against_sklearn():
    from pipeline.core.schema import ABAW2022
    rng = np.random.default_rng(7)
    aus = rng.integers(0, 2, size=(250, 12))
    aus[rng.random((250, 12)) < 0.2] = -1
    au_probs = rng.random((250, 12))
    expr = rng.integers(-1, 8, size=250)
    expr_probs = rng.dirichlet(np.ones(8), size=250)
    va = rng.uniform(-1, 1, size=(250, 2))
    va_preds = np.clip(va * 0.5 + rng.normal(0, 0.3, size=(250, 2)), -1, 1)
    result = {"AU": M.au_metrics(aus, au_probs, 0.5, ABAW2022.aus),
              "EXPR": M.expr_metrics(expr, expr_probs, ABAW2022.expressions),
              "VA": M.va_metrics(va, va_preds)}
    assert_close_dicts(result["AU"], sklearn_au(aus, au_probs, 0.5, ABAW2022.aus))
    assert_close_dicts(result["EXPR"], sklearn_expr(expr, expr_probs, ABAW2022.expressions))
    assert set(result["AU"]["per_au_f1"]) == set(ABAW2022.aus) and "Other" in result["EXPR"]["per_class_f1"]
    # the multi-task challenge's sum: AU mean F1 + EXPR macro F1 + mean CCC, no accuracy
    known = expr >= 0
    expected = (np.mean([f1_score(aus[aus[:, j] >= 0, j], au_probs[aus[:, j] >= 0, j] >= 0.5)
                         for j in range(12)])
                + f1_score(expr[known], expr_probs[known].argmax(1), average="macro")
                + (corrcoef_ccc(va[:, 0], va_preds[:, 0]) + corrcoef_ccc(va[:, 1], va_preds[:, 1])) / 2)
    assert M.era_total(result, "2022") == pytest.approx(expected, abs=1e-12)
    assert M.era_total(result, "2020") == pytest.approx(M.abaw_total(result))


def test_era_total_leaves_missing_tasks_out_and_refuses_an_unknown_era():
    assert M.era_total({"AU": None, "EXPR": {"f1": 0.25, "score": 0.5}, "VA": None}, "2022") == 0.25
    assert M.era_total({"VA": {"ccc_valence": 0.2, "ccc_arousal": None, "ccc_mean": None}}, "2022") == 0.0
    with pytest.raises(ValueError, match="2021"):
        M.era_total({}, "2021")


def test_names_must_match_the_counted_width():
    with pytest.raises(ValueError, match="12 AUs counted, 8 named"):
        M.au_metrics(np.zeros((3, 12)), np.zeros((3, 12)))
    with pytest.raises(ValueError, match="8 classes counted, 7 named"):
        M.expr_metrics(np.zeros(3), np.full((3, 8), 0.125))
