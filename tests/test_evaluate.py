"""evaluate: every model's rows are its own predictions, every score is the ABAW metrics of
those rows (recomputed here with scikit-learn and numpy), the baselines are what they say."""
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score

from pipeline.core.index import FrameIndex
from pipeline.core.labels import AU_NAMES, TASKS
from pipeline.evaluation.evaluate import Models, evaluate
from pipeline.evaluation.probe import PixelProbe
from pipeline.core.schema import ABAW2020
from pipeline.evaluation.scoring import PRED_VA, thr_au
from pipeline.inference.ensemble import save_bundle
from pipeline.inference.runner import predict
from pipeline.training.models import load_checkpoint
from pipeline.training.params import TrainParams
from pipeline.training.train import Outputs, train

ROOT = Path(__file__).resolve().parents[1]
P_AU, THR_AU, P_EXPR = ABAW2020.au_probs, thr_au(ABAW2020), ABAW2020.expr_probs
ENSEMBLE_THRESHOLDS = [0.45, 0.5, 0.55, 0.5, 0.4, 0.5, 0.6, 0.5]


@pytest.fixture(scope="module")
def evaluated(index_dir, tmp_path_factory):
    """A teacher and two students trained for a few steps, the ensemble of the students, and a
    copy of the validation index whose frames are renumbered into runs (the fake extraction
    numbers a video's frames 4 apart) with one gap, so that smoothing has something to do."""
    tmp = tmp_path_factory.mktemp("evaluate")
    paths = {}
    for seed, name in enumerate(("teacher", "s1", "s2")):  # random weights predict the same for every face
        params = TrainParams(backbone="mobilenet_v3_small", epochs=1, steps_per_epoch=3, batch_per_task=6,
                             device="cpu", eval_batch=64, seed=seed, bn_momentum=0.5)
        paths[name], run = str(tmp / f"{name}.pt"), tmp / "runs" / name
        train(params, index_dir, Outputs(paths[name], run / "log.csv", run / "report.json", run / "resume.pt"),
              progress=False)
    save_bundle(tmp / "ensemble.pt", {"s1": paths["s1"], "s2": paths["s2"]}, ENSEMBLE_THRESHOLDS,
                "tuned per AU on the validation set", {"size": 112, "template_scale": 1.0, "template": [[38.3, 51.7]] * 5})

    table = pq.read_table(index_dir / "val.parquet")
    df = table.to_pandas()
    df["frame"] = df.groupby("video").cumcount() + (df.groupby("video").cumcount() >= 5) * 3  # a gap after frame 4
    df["shard"] = [os.path.relpath(index_dir / s, tmp) for s in df["shard"]]
    pq.write_table(pa.Table.from_pandas(df, schema=table.schema, preserve_index=False), tmp / "val.parquet")
    val = FrameIndex.read(tmp / "val.parquet")
    # in evaluate's batches: a convolution's sums may depend on the batch size (AVX2 kernels)
    own = {name: predict(load_checkpoint(path)[0], val, torch.device("cpu"), batch=32) for name, path in paths.items()}
    # valence and arousal that the ensemble smoothed over 9 frames predicts perfectly, so
    # that the best window is not 1 (random weights predict nothing else)
    df[["valence", "arousal"]] = smoothed(df, (own["s1"]["VA"] + own["s2"]["VA"]) / 2, 9)
    pq.write_table(pa.Table.from_pandas(df, schema=table.schema, preserve_index=False), tmp / "val.parquet")
    val = FrameIndex.read(tmp / "val.parquet")

    training = {task: FrameIndex.read(index_dir / f"train_{task}.parquet") for task in TASKS}
    models = Models(teacher=paths["teacher"], students={"s1": paths["s1"], "s2": paths["s2"]},
                    ensemble=str(tmp / "ensemble.pt"))
    rows, evaluation = evaluate(models, training, val, torch.device("cpu"), batch=32, n_boot=40, seed=0,
                                progress=False)
    return rows, evaluation, val, own, index_dir


def smoothed(frames: pd.DataFrame, values: np.ndarray, window: int) -> np.ndarray:
    """pandas' centred rolling mean of ``values`` (rows of ``frames``) within runs of
    consecutive frames of a video."""
    order = np.lexsort((frames["frame"], frames["video"]))
    ordered = frames.iloc[order].reset_index(drop=True)
    run = ((ordered["video"] != ordered["video"].shift()) | (ordered["frame"].diff() != 1)).cumsum()
    mean = pd.DataFrame(np.asarray(values, np.float64)[order]).groupby(run).transform(
        lambda c: c.rolling(window, center=True, min_periods=1).mean()).to_numpy()
    out = np.empty_like(mean)
    out[order] = mean
    return out


def model_rows(rows: pd.DataFrame, model: str) -> pd.DataFrame:
    return rows[rows["model"] == model].reset_index(drop=True)


def by_hand(rows: pd.DataFrame) -> dict:
    """The ABAW 2020 figures of one model's rows, with scikit-learn and numpy."""
    f1s, correct, known = [], 0, 0
    for au, p, thr in zip(AU_NAMES, P_AU, THR_AU):
        k = rows[au] >= 0
        y, yhat = rows.loc[k, au].to_numpy(), (rows.loc[k, p] >= rows.loc[k, thr]).to_numpy().astype(int)
        f1s.append(f1_score(y, yhat, zero_division=0))
        correct, known = correct + (y == yhat).sum(), known + len(y)
    au_f1, au_acc = float(np.mean(f1s)), correct / known
    k = rows["expr"] >= 0
    y, yhat = rows.loc[k, "expr"], rows.loc[k, P_EXPR].to_numpy().argmax(axis=1)
    expr_f1, expr_acc = f1_score(y, yhat, average="macro"), accuracy_score(y, yhat)

    def ccc(t, p):
        return 2 * np.cov(t, p, bias=True)[0, 1] / (t.var() + p.var() + (t.mean() - p.mean()) ** 2)

    cccs = []
    for dim, pred in zip(("valence", "arousal"), PRED_VA):
        k = rows[dim].notna()
        cccs.append(ccc(rows.loc[k, dim].to_numpy(np.float64), rows.loc[k, pred].to_numpy(np.float64)))
    au_score, expr_score = 0.5 * au_f1 + 0.5 * au_acc, 0.67 * expr_f1 + 0.33 * expr_acc
    return {"AU.f1": au_f1, "AU.acc": au_acc, "EXPR.f1": expr_f1, "EXPR.acc": expr_acc,
            "VA.ccc_valence": cccs[0], "VA.ccc_arousal": cccs[1],
            "abaw_total": au_score + expr_score + cccs[0] + cccs[1]}


def figures(result: dict) -> dict:
    return {"AU.f1": result["AU"]["f1"], "AU.acc": result["AU"]["acc"], "EXPR.f1": result["EXPR"]["f1"],
            "EXPR.acc": result["EXPR"]["acc"], "VA.ccc_valence": result["VA"]["ccc_valence"],
            "VA.ccc_arousal": result["VA"]["ccc_arousal"],
            "abaw_total": result["AU"]["score"] + result["EXPR"]["score"] + result["VA"]["ccc_valence"]
            + result["VA"]["ccc_arousal"]}


def test_the_baseline_predicts_no_au_the_majority_training_expression_and_the_mean_training_va(evaluated):
    rows, evaluation, _, _, index_dir = evaluated
    expr = pd.read_parquet(index_dir / "train_EXPR.parquet")["expr"]
    majority = expr[expr >= 0].value_counts().idxmax()  # unweighted: what the training set holds
    va = pd.read_parquet(index_dir / "train_VA.parquet")[["valence", "arousal"]].mean()  # skips the unknown
    base = model_rows(rows, "baseline")
    assert (base[P_AU].to_numpy() == 0).all()
    np.testing.assert_array_equal(base[P_EXPR].to_numpy().argmax(axis=1), majority)
    np.testing.assert_allclose(base[P_EXPR].to_numpy().sum(axis=1), 1)
    np.testing.assert_allclose(base[PRED_VA].to_numpy(), np.tile(va.to_numpy(), (len(base), 1)), rtol=1e-6)
    # its scores by hand: no AU is ever predicted, so every AU F1 is 0 and the accuracy is
    # the share of absent entries; a constant VA has a CCC of 0
    labels = base[list(AU_NAMES)].to_numpy()
    scores = evaluation["baseline"]
    assert scores["AU"]["f1"] == 0 and scores["AU"]["acc"] == pytest.approx((labels == 0).sum() / (labels >= 0).sum())
    assert scores["EXPR"]["acc"] == pytest.approx((base.loc[base["expr"] >= 0, "expr"] == majority).mean())
    assert scores["VA"]["ccc_valence"] == pytest.approx(0, abs=1e-12)


def test_each_model_rows_are_its_own_predictions_with_its_thresholds(evaluated):
    rows, _, val, own, index_dir = evaluated
    assert list(pd.unique(rows["model"])) == ["baseline", "pixel_probe", "teacher", "s1", "s2", "ensemble",
                                              "ensemble_smoothed"]
    for name in ("teacher", "s1", "s2"):
        got = model_rows(rows, name)
        np.testing.assert_array_equal(got["uid"], val.uid)
        np.testing.assert_array_equal(got[P_AU].to_numpy(), own[name]["AU"].astype(np.float32))
        np.testing.assert_array_equal(got[PRED_VA].to_numpy(), own[name]["VA"].astype(np.float32))
        assert (got[THR_AU].to_numpy() == np.float32(0.5)).all()
    ensemble = model_rows(rows, "ensemble")
    np.testing.assert_allclose(ensemble[P_EXPR].to_numpy(), (own["s1"]["EXPR"] + own["s2"]["EXPR"]) / 2, rtol=1e-6)
    np.testing.assert_allclose(ensemble[PRED_VA].to_numpy(), (own["s1"]["VA"] + own["s2"]["VA"]) / 2, rtol=1e-6)
    np.testing.assert_array_equal(ensemble[THR_AU].to_numpy()[0], np.float32(ENSEMBLE_THRESHOLDS))
    train = {task: FrameIndex.read(index_dir / f"train_{task}.parquet") for task in TASKS}
    probe = PixelProbe.fit(train, 0).predict(val)
    np.testing.assert_allclose(model_rows(rows, "pixel_probe")[PRED_VA].to_numpy(), probe["VA"], rtol=1e-6)


def test_every_score_is_the_abaw_metrics_of_the_models_rows(evaluated):
    rows, evaluation, _, _, _ = evaluated
    for model in pd.unique(rows["model"]):
        expected = by_hand(model_rows(rows, model))
        got = figures(evaluation[model])
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, abs=1e-9), f"{model} {key}"
        assert evaluation[model]["ci"]["intervals"]["abaw_total"][0] <= got["abaw_total"] + 1e-9


def test_students_mean_and_the_paired_difference_to_the_teacher(evaluated):
    rows, evaluation, _, _, _ = evaluated
    totals = {m: by_hand(model_rows(rows, m))["abaw_total"] for m in ("teacher", "s1", "s2", "ensemble")}
    mean = evaluation["students_mean"]
    assert mean["members"] == ["s1", "s2"]
    assert mean["mean"]["abaw_total"] == pytest.approx((totals["s1"] + totals["s2"]) / 2)
    assert mean["spread_across_members"]["abaw_total"] == pytest.approx(abs(totals["s1"] - totals["s2"]) / 2)
    difference = evaluation["ensemble"]["vs_teacher"]
    assert difference["difference"]["abaw_total"] == pytest.approx(totals["ensemble"] - totals["teacher"])
    low, high = difference["intervals"]["abaw_total"]
    assert low <= high


def test_the_smoothed_ensemble_is_a_centred_mean_within_runs_with_the_best_window(evaluated):
    rows, evaluation, val, _, _ = evaluated
    ensemble, smoothed_rows = model_rows(rows, "ensemble"), model_rows(rows, "ensemble_smoothed")
    chosen = evaluation["ensemble_smoothed"]["smoothing_window"]
    totals = dict((int(w), t) for w, t in chosen["totals"])
    best = max(totals.values())
    assert chosen["frames"] == min(w for w, t in totals.items() if t == best)  # ties: the smaller window
    assert chosen["frames"] == 9  # the labels were made so
    columns = [*P_AU, *P_EXPR, *PRED_VA]
    expected = smoothed(ensemble, ensemble[columns].to_numpy(), chosen["frames"])
    np.testing.assert_allclose(smoothed_rows[columns].to_numpy(), expected, rtol=1e-5, atol=1e-7)
    assert not np.allclose(smoothed_rows[columns].to_numpy(), ensemble[columns].to_numpy())
    # the chosen window's total is the score of those rows
    assert totals[chosen["frames"]] == pytest.approx(by_hand(smoothed_rows)["abaw_total"], abs=1e-6)


def test_a_2022_run_from_build_to_evaluation_follows_the_schema(index_dir_2022, tmp_path):
    """Teacher, its soft labels, two students and their ensemble on a build of the abaw2022
    schema: 12 AU and 8 class columns, and the 2022 era's total recomputed with scikit-learn."""
    from pipeline.core.errors import DataError
    from pipeline.core.schema import ABAW2022
    from pipeline.training.models import MultitaskNet, save_checkpoint
    from pipeline.training.params import StudentParams
    from pipeline.training.softlabels import SoftLabels, dump

    common = dict(backbone="mobilenet_v3_small", epochs=1, steps_per_epoch=3, batch_per_task=6, device="cpu",
                  eval_batch=64, bn_momentum=0.5)
    paths = {name: str(tmp_path / f"{name}.pt") for name in ("teacher", "s1", "s2")}

    def outputs(name):
        return Outputs(paths[name], *(tmp_path / name / f for f in ("log.csv", "report.json", "resume.pt")))

    train(TrainParams(**common), index_dir_2022, outputs("teacher"), progress=False)
    teacher, _ = load_checkpoint(paths["teacher"], schema=ABAW2022)
    dump(teacher, index_dir_2022, tmp_path / "cache.h5", paths["teacher"], 2, "views", 32, torch.device("cpu"),
         progress=False)
    for seed, name in enumerate(("s1", "s2"), start=1):
        train(StudentParams(**common, seed=seed), index_dir_2022, outputs(name), name="student", progress=False,
              soft_labels=SoftLabels(tmp_path / "cache.h5"))
    save_bundle(tmp_path / "ensemble.pt", {"s1": paths["s1"], "s2": paths["s2"]}, [0.5] * 12, "fixed 0.5",
                {"size": 112, "template_scale": 1.0, "template": [[38.3, 51.7]] * 5})
    training = {task: FrameIndex.read(index_dir_2022 / f"train_{task}.parquet") for task in TASKS}
    val = FrameIndex.read(index_dir_2022 / "val.parquet")
    models = Models(teacher=paths["teacher"], students={"s1": paths["s1"], "s2": paths["s2"]},
                    ensemble=str(tmp_path / "ensemble.pt"))
    rows, evaluation = evaluate(models, training, val, torch.device("cpu"), batch=32, n_boot=20, progress=False)
    assert [c for c in rows if c.startswith("p_")] == ABAW2022.au_probs + ABAW2022.expr_probs
    assert (rows["expr"] == ABAW2022.expressions.index("Other")).any()
    for model in ("baseline", "pixel_probe", "teacher", "s1", "s2", "ensemble"):
        r = model_rows(rows, model)
        au = np.mean([f1_score(r.loc[r[a] >= 0, a], r.loc[r[a] >= 0, f"p_{a}"] >= 0.5, zero_division=0)
                      for a in ABAW2022.aus])
        k = r["expr"] >= 0
        expr = f1_score(r.loc[k, "expr"], r.loc[k, ABAW2022.expr_probs].to_numpy().argmax(axis=1), average="macro")
        cccs = [evaluation[model]["VA"][f"ccc_{d}"] for d in ("valence", "arousal")]
        assert evaluation[model]["abaw2022_total"] == pytest.approx(au + expr + np.mean(cccs), abs=1e-9), model
        assert list(evaluation[model]["AU"]["per_au_f1"]) == list(ABAW2022.aus)
    # a checkpoint of the 2020 schema in a 2022 evaluation: refused in one line, naming both
    save_checkpoint(tmp_path / "old.pt", MultitaskNet("mobilenet_v3_small"))
    with pytest.raises(DataError, match=r"old.pt: the checkpoint was made for schema abaw2020 \(8 AUs.*but this run "
                                        r"uses abaw2022 \(12 AUs"):
        evaluate(Models(teacher=str(tmp_path / "old.pt")), training, val, torch.device("cpu"), progress=False)


def test_a_task_without_labels_is_plotted_as_missing_never_a_traceback(evaluated, tmp_path):
    from pipeline.evaluation.figures import comparison_plot, evaluation_plots, sequence_length_plot
    from pipeline.evaluation.scoring import evaluate_predictions

    rows = evaluated[0].copy()
    rows["expr"] = -1  # a build whose Aff-Wild2 copy has no EXPR label (the build only warns)
    temporal = [model_rows(rows, "ensemble").assign(model=m) for m in ("rnn_teacher_T4", "rnn_ensemble_T4")]
    table = pd.concat([rows, *temporal], ignore_index=True)
    evaluation = evaluate_predictions(table, n_boot=10)
    assert evaluation["teacher"]["EXPR"] is None and evaluation["rnn_ensemble_T4"]["EXPR"] is None
    files = [*evaluation_plots(table, evaluation, tmp_path), *comparison_plot(evaluation, tmp_path),
             *sequence_length_plot(evaluation, tmp_path)]
    assert all(f.stat().st_size > 0 for f in files) and (tmp_path / "sequence_length.png").exists()
    assert not list(tmp_path.glob("confusion_*"))  # no expression: no confusion matrix


def test_an_empty_validation_index_and_a_copied_student_are_one_line_each(evaluated, tmp_path):
    from click.testing import CliRunner

    from stages.evaluate import cli

    _, _, _, _, index_dir = evaluated
    build = tmp_path / "build"
    shutil.copytree(index_dir, build)
    val = pq.read_table(build / "val.parquet")
    pq.write_table(val.slice(0, 0), build / "val.parquet")
    result = CliRunner().invoke(cli, ["--index", str(build), "--params", str(ROOT / "params.yaml")])
    assert result.exit_code != 0 and "val.parquet: holds no validation frame" in result.output, result.output
    mine = tmp_path / "my_figures"  # --plots is replaced whole: only an earlier evaluation's folder
    mine.mkdir()
    (mine / "poster.png").write_bytes(b"mine")
    result = CliRunner().invoke(cli, ["--index", str(index_dir), "--plots", str(mine), "--params",
                                      str(ROOT / "params.yaml")])
    assert result.exit_code != 0 and f"{mine}: holds files but no comparison.csv" in result.output, result.output
    assert "choose another --plots" in result.output
    assert (mine / "poster.png").read_bytes() == b"mine"
    students = tmp_path / "students"
    students.mkdir()
    teacher = tmp_path / "teacher.pt"
    teacher.write_bytes(b"one checkpoint")
    for name in ("s1", "s2", "s3"):
        (students / f"{name}.pt").write_bytes(f"student {name}".encode())
    shutil.copy(students / "s1.pt", students / "s2.pt")
    result = CliRunner().invoke(cli, ["--index", str(index_dir), "--teacher", str(teacher), "--students",
                                      str(students), "--params", str(ROOT / "params.yaml")])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert f"{students / 's1.pt'} and {students / 's2.pt'} are the same checkpoint" in result.output, result.output
