"""Scoring of validation-prediction tables and bootstrap intervals, against explicit
resampling and scikit-learn."""
import numpy as np
import pandas as pd
import pytest
from reference import assert_close_dicts, sklearn_evaluation

from pipeline.evaluation import metrics as M
from pipeline.evaluation import scoring as S
from pipeline.core.labels import AU_NAMES, EXPR_NAMES


# --- bootstrap ----------------------------------------------------------------------------


def grouped_values(seed=4, n_groups=12):
    rng = np.random.default_rng(seed)
    return [rng.normal(g * 0.1, 1.0, size=rng.integers(5, 30)) for g in range(n_groups)]


def test_bootstrap_ci_equals_explicit_resampling_of_groups():
    groups = grouped_values()
    stats = np.array([[len(v), v.sum()] for v in groups])   # additive: count and sum
    interval = S.bootstrap_ci(stats, lambda s: s[1] / s[0], n=300, seed=7)
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

    a = S.bootstrap_ci(stats, fn, n=50, seed=3)
    assert a == S.bootstrap_ci(stats, fn, n=50, seed=3)
    assert a["mean"] != S.bootstrap_ci(stats, fn, n=50, seed=4)["mean"]
    assert a["missing"] is None
    assert a["mean"][0] < 4.5 < a["mean"][1]
    wider = S.bootstrap_ci(stats, fn, n=50, seed=3, alpha=0.01)["mean"]
    assert wider[0] <= a["mean"][0] and wider[1] >= a["mean"][1]


# --- evaluate_predictions -----------------------------------------------------------------


def synthetic_predictions(seed=5, n_videos=6, frames=25, models=(("teacher", 0.6), ("ensemble", 0.3))):
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
    for model, noise in models:
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


def test_evaluate_predictions_against_sklearn():
    df = synthetic_predictions()
    evaluation = S.evaluate_predictions(df, n_boot=30, seed=1)
    assert list(evaluation) == list(pd.unique(df["model"]))
    for model, rows in df.groupby("model"):
        assert_close_dicts(evaluation[model], sklearn_evaluation(rows), tol=1e-6)
    assert set(evaluation["teacher"]) == {"AU", "EXPR", "VA", "ci"}
    assert set(evaluation["ensemble"]) == {"AU", "EXPR", "VA", "ci", "vs_teacher"}
    assert evaluation["ensemble"]["AU"]["score"] != evaluation["teacher"]["AU"]["score"]


def test_evaluate_predictions_intervals_equal_explicit_video_resampling():
    df = synthetic_predictions(seed=6)
    n_boot, seed = 15, 2
    evaluation = S.evaluate_predictions(df, n_boot=n_boot, seed=seed)
    rows = df[df["model"] == "ensemble"]
    videos = sorted(pd.unique(df["video"]))      # the documented group order: sorted names
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


def total(r):
    return r["AU"]["score"] + r["EXPR"]["score"] + r["VA"]["ccc_valence"] + r["VA"]["ccc_arousal"]


def test_paired_intervals_resample_the_same_videos_for_both_models():
    df = synthetic_predictions(seed=11, models=(("teacher", 0.6), ("s1", 0.4), ("s2", 0.5), ("ensemble", 0.3)))
    n_boot, seed = 20, 3
    evaluation = S.evaluate_predictions(df, n_boot=n_boot, seed=seed, means={"students_mean": ["s1", "s2"]})
    videos = sorted(pd.unique(df["video"]))
    draws = np.random.default_rng(seed).integers(0, len(videos), size=(n_boot, len(videos)))

    def resampled(model, row):
        rows = df[df["model"] == model]
        return sklearn_evaluation(pd.concat([rows[rows["video"] == videos[g]] for g in row]))

    reps = [{m: resampled(m, row) for m in ("teacher", "s1", "s2", "ensemble")} for row in draws]
    diff = [total(r["ensemble"]) - total(r["teacher"]) for r in reps]
    paired = evaluation["ensemble"]["vs_teacher"]
    np.testing.assert_allclose(paired["intervals"]["abaw_total"], np.percentile(diff, [2.5, 97.5]), atol=1e-6)
    whole = {m: sklearn_evaluation(df[df["model"] == m]) for m in ("teacher", "s1", "s2")}
    assert paired["difference"]["abaw_total"] == pytest.approx(
        S.abaw_total(evaluation["ensemble"]) - S.abaw_total(evaluation["teacher"]), abs=1e-9)
    diff_v = [r["ensemble"]["VA"]["ccc_valence"] - r["teacher"]["VA"]["ccc_valence"] for r in reps]
    np.testing.assert_allclose(paired["intervals"]["VA.ccc_valence"], np.percentile(diff_v, [2.5, 97.5]), atol=1e-6)
    # the mean of the students: figure by figure, its spread, and its own paired interval
    mean = evaluation["students_mean"]
    assert mean["members"] == ["s1", "s2"]
    assert mean["mean"]["abaw_total"] == pytest.approx((total(whole["s1"]) + total(whole["s2"])) / 2, abs=1e-6)
    assert mean["spread_across_members"]["abaw_total"] == pytest.approx(
        abs(total(whole["s1"]) - total(whole["s2"])) / 2, abs=1e-6)
    mean_diff = [(total(r["s1"]) + total(r["s2"])) / 2 - total(r["teacher"]) for r in reps]
    np.testing.assert_allclose(mean["vs_teacher"]["intervals"]["abaw_total"],
                               np.percentile(mean_diff, [2.5, 97.5]), atol=1e-6)
    # pairing is what narrows the interval: the unpaired spread of the total is wider
    unpaired = np.percentile([total(r["ensemble"]) for r in reps], [2.5, 97.5])
    assert np.diff(paired["intervals"]["abaw_total"])[0] < np.diff(unpaired)[0]


def test_evaluate_predictions_intervals_cover_point_estimates():
    evaluation = S.evaluate_predictions(synthetic_predictions(seed=7, n_videos=10), n_boot=200, seed=0)
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
    evaluation = S.evaluate_predictions(df, n_boot=10)
    for result in evaluation.values():
        assert result["EXPR"] is None and result["VA"] is None and result["AU"] is not None
        assert result["ci"]["intervals"]["EXPR.score"] is None
        assert M.abaw_total(result) == pytest.approx(result["AU"]["score"])


def test_evaluate_predictions_requires_columns():
    with pytest.raises(ValueError, match="thr_AU1"):
        S.evaluate_predictions(synthetic_predictions().drop(columns=["thr_AU1"]))


def test_evaluate_predictions_constant_va_gives_zero_ccc_everywhere():
    # identical constant truth and prediction: CCC is 0/0, defined as 0, also in every
    # bootstrap replicate (computed there from sums, where rounding must not leak through)
    df = synthetic_predictions(seed=9)
    df[["valence", "pred_valence"]] = 0.3
    df[["arousal", "pred_arousal"]] = -0.7
    for result in S.evaluate_predictions(df, n_boot=20).values():
        assert result["VA"]["ccc_valence"] == 0.0 and result["VA"]["ccc_arousal"] == 0.0
        assert result["ci"]["intervals"]["VA.ccc_valence"] == [0.0, 0.0]
        assert result["ci"]["intervals"]["VA.ccc_arousal"] == [0.0, 0.0]
