"""Metrics against scikit-learn, numpy and hand-computed values."""
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from pipeline import metrics as M
from pipeline.labels import AU_NAMES, EXPR_NAMES


def corrcoef_ccc(x, y):
    """Eq. 8 written with Pearson's rho and population standard deviations."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    rho = np.corrcoef(x, y)[0, 1]
    return 2 * rho * x.std() * y.std() / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


def sklearn_au(labels, probs, thresholds):
    """AU metrics the ABAW way, entry by entry with sklearn on the known entries."""
    pred = (probs >= thresholds).astype(int)
    known = labels != -1
    per_au = {}
    for j, name in enumerate(AU_NAMES):
        k = known[:, j]
        per_au[name] = f1_score(labels[k, j], pred[k, j], zero_division=0) if k.any() else None
    f1 = np.mean([v for v in per_au.values() if v is not None])
    acc = accuracy_score(labels[known], pred[known])
    return {"score": 0.5 * f1 + 0.5 * acc, "f1": f1, "acc": acc, "per_au_f1": per_au}


def sklearn_expr(labels, probs):
    known = labels != -1
    y, p = labels[known], probs[known].argmax(1)
    f1 = f1_score(y, p, average="macro")
    acc = accuracy_score(y, p)
    return {"score": 0.67 * f1 + 0.33 * acc, "f1": f1, "acc": acc,
            "per_class_f1": dict(zip(EXPR_NAMES, f1_score(y, p, labels=range(7), average=None,
                                                          zero_division=0))),
            "confusion": confusion_matrix(y, p, labels=range(7)).tolist()}


def assert_close_dicts(got, expected, tol=1e-9):
    for key, value in expected.items():
        if isinstance(value, dict):
            assert_close_dicts(got[key], value, tol)
        elif value is None:
            assert got[key] is None, key
        elif isinstance(value, list):
            assert got[key] == value, key
        else:
            assert got[key] == pytest.approx(value, abs=tol), key


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


# --- bootstrap ----------------------------------------------------------------------------


def grouped_values(seed=4, n_groups=12):
    rng = np.random.default_rng(seed)
    return [rng.normal(g * 0.1, 1.0, size=rng.integers(5, 30)) for g in range(n_groups)]


def test_bootstrap_ci_equals_explicit_resampling_of_groups():
    groups = grouped_values()
    stats = np.array([[len(v), v.sum()] for v in groups])   # additive: count and sum
    interval = M.bootstrap_ci(stats, lambda s: s[1] / s[0], n=300, seed=7)
    # the same draws, done the slow way: concatenate the drawn groups' values
    draws = np.random.default_rng(7).integers(0, len(groups), size=(300, len(groups)))
    means = [np.concatenate([groups[g] for g in row]).mean() for row in draws]
    np.testing.assert_allclose(interval, np.percentile(means, [2.5, 97.5]), atol=1e-12)
    point = np.concatenate(groups).mean()
    assert interval[0] < point < interval[1]


def test_bootstrap_ci_deterministic_for_a_seed_and_dict_input():
    stats = {"n": np.ones(10), "x": np.arange(10.0)}

    def fn(s):
        return {"mean": s["x"] / s["n"], "missing": None}

    a = M.bootstrap_ci(stats, fn, n=50, seed=3)
    assert a == M.bootstrap_ci(stats, fn, n=50, seed=3)
    assert a["mean"] != M.bootstrap_ci(stats, fn, n=50, seed=4)["mean"]
    assert a["missing"] is None
    assert a["mean"][0] < 4.5 < a["mean"][1]
    wider = M.bootstrap_ci(stats, fn, n=50, seed=3, alpha=0.01)["mean"]
    assert wider[0] <= a["mean"][0] and wider[1] >= a["mean"][1]


# --- evaluate_predictions -----------------------------------------------------------------


def synthetic_predictions(seed=5, n_videos=6, frames=25):
    """A small long-format table: two models, unknown labels of every kind."""
    rng = np.random.default_rng(seed)
    n = n_videos * frames
    truth = {"uid": [f"affwild2/v{i // frames}/{i % frames}" for i in range(n)],
             "video": [f"v{i // frames}" for i in range(n)],
             "frame": np.tile(np.arange(frames), n_videos)}
    au = rng.integers(0, 2, size=(n, 8)).astype(np.int8)
    au[rng.random(n) < 0.15] = -1
    expr = rng.integers(0, 7, size=n).astype(np.int8)
    expr[rng.random(n) < 0.15] = -1
    va = rng.uniform(-1, 1, size=(n, 2)).astype(np.float32)
    va[rng.random(n) < 0.15] = np.nan
    tables = []
    for model, noise in (("teacher", 0.6), ("ensemble", 0.3)):
        table = pd.DataFrame(truth)
        table["model"] = model
        for j, name in enumerate(AU_NAMES):
            table[name] = au[:, j]
            table[f"p_{name}"] = np.clip(au[:, j].clip(0) * 0.6 + rng.random(n) * noise * 1.5, 0, 1)
            table[f"thr_{name}"] = 0.5 if model == "teacher" else 0.3 + 0.05 * j
        table["expr"] = expr
        logits = rng.normal(size=(n, 7)) * noise * 3 + np.eye(7)[expr.clip(0)]
        probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        for k, name in enumerate(EXPR_NAMES):
            table[f"p_{name}"] = probs[:, k]
        table["valence"], table["arousal"] = va[:, 0], va[:, 1]
        filled = np.nan_to_num(va)
        table["pred_valence"] = 0.7 * filled[:, 0] + rng.normal(0, noise, n)
        table["pred_arousal"] = 0.5 * filled[:, 1] + rng.normal(0, noise, n)
        tables.append(table)
    return pd.concat(tables, ignore_index=True).sample(frac=1.0, random_state=0)


def sklearn_evaluation(rows):
    au, thr = rows[list(AU_NAMES)].to_numpy(), rows[[f"thr_{a}" for a in AU_NAMES]].to_numpy()
    result = {"AU": sklearn_au(au, rows[[f"p_{a}" for a in AU_NAMES]].to_numpy(), thr),
              "EXPR": sklearn_expr(rows["expr"].to_numpy(), rows[[f"p_{e}" for e in EXPR_NAMES]].to_numpy())}
    va = {}
    for name in ("valence", "arousal"):
        known = rows[name].notna().to_numpy()
        va[f"ccc_{name}"] = corrcoef_ccc(rows[name].to_numpy()[known], rows[f"pred_{name}"].to_numpy()[known])
    va["ccc_mean"] = (va["ccc_valence"] + va["ccc_arousal"]) / 2
    result["VA"] = va
    return result


def test_evaluate_predictions_against_sklearn():
    df = synthetic_predictions()
    evaluation = M.evaluate_predictions(df, n_boot=30, seed=1)
    assert list(evaluation) == list(pd.unique(df["model"]))
    for model, rows in df.groupby("model"):
        assert_close_dicts(evaluation[model], sklearn_evaluation(rows), tol=1e-6)
        assert set(evaluation[model]) == {"AU", "EXPR", "VA", "ci"}
    assert evaluation["ensemble"]["AU"]["score"] != evaluation["teacher"]["AU"]["score"]


def test_evaluate_predictions_intervals_equal_explicit_video_resampling():
    df = synthetic_predictions(seed=6)
    n_boot, seed = 15, 2
    evaluation = M.evaluate_predictions(df, n_boot=n_boot, seed=seed)
    rows = df[df["model"] == "ensemble"]
    videos = pd.unique(rows["video"])      # the documented group order: first appearance
    draws = np.random.default_rng(seed).integers(0, len(videos), size=(n_boot, len(videos)))
    replicates = []
    for row in draws:
        sample = pd.concat([rows[rows["video"] == videos[g]] for g in row])
        replicates.append(sklearn_evaluation(sample))
    intervals = evaluation["ensemble"]["ci"]["intervals"]
    for task, key in (("AU", "score"), ("AU", "f1"), ("EXPR", "score"), ("EXPR", "acc"),
                      ("VA", "ccc_valence"), ("VA", "ccc_mean")):
        values = [r[task][key] for r in replicates]
        np.testing.assert_allclose(intervals[f"{task}.{key}"], np.percentile(values, [2.5, 97.5]), atol=1e-6)
    totals = [r["AU"]["score"] + r["EXPR"]["score"] + r["VA"]["ccc_valence"] + r["VA"]["ccc_arousal"]
              for r in replicates]
    np.testing.assert_allclose(intervals["abaw_total"], np.percentile(totals, [2.5, 97.5]), atol=1e-6)
    assert evaluation["ensemble"]["ci"]["n_videos"] == len(videos)


def test_evaluate_predictions_intervals_cover_point_estimates():
    evaluation = M.evaluate_predictions(synthetic_predictions(seed=7, n_videos=10), n_boot=200, seed=0)
    for model, result in evaluation.items():
        intervals = result["ci"]["intervals"]
        for task, key in (("AU", "score"), ("EXPR", "score"), ("VA", "ccc_mean")):
            low, high = intervals[f"{task}.{key}"]
            assert low <= result[task][key] <= high, (model, task, key)
        assert intervals["abaw_total"][0] <= M.abaw_total(result) <= intervals["abaw_total"][1]


def test_evaluate_predictions_missing_task_is_none():
    df = synthetic_predictions(seed=8)
    df["expr"] = -1
    df[["valence", "arousal"]] = np.nan
    evaluation = M.evaluate_predictions(df, n_boot=10)
    for result in evaluation.values():
        assert result["EXPR"] is None and result["VA"] is None and result["AU"] is not None
        assert result["ci"]["intervals"]["EXPR.score"] is None
        assert M.abaw_total(result) == pytest.approx(result["AU"]["score"])


def test_evaluate_predictions_requires_columns():
    with pytest.raises(ValueError, match="thr_AU1"):
        M.evaluate_predictions(synthetic_predictions().drop(columns=["thr_AU1"]))


def test_evaluate_predictions_constant_va_gives_zero_ccc_everywhere():
    # identical constant truth and prediction: CCC is 0/0, defined as 0, also in every
    # bootstrap replicate (computed there from sums, where rounding must not leak through)
    df = synthetic_predictions(seed=9)
    df[["valence", "pred_valence"]] = 0.3
    df[["arousal", "pred_arousal"]] = -0.7
    for result in M.evaluate_predictions(df, n_boot=20).values():
        assert result["VA"]["ccc_valence"] == 0.0 and result["VA"]["ccc_arousal"] == 0.0
        assert result["ci"]["intervals"]["VA.ccc_valence"] == [0.0, 0.0]
        assert result["ci"]["intervals"]["VA.ccc_arousal"] == [0.0, 0.0]
