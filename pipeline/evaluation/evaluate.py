"""Scoring on the validation set: every model by one code path, beside the baselines.

Models: the teacher, each student, the ensemble (from its bundle), the ensemble smoothed
over time (``pipeline.evaluation.smoothing``: the baseline of the temporal models), the temporal
teacher and ensemble of every sequence length (on the cached features), and two baselines
every model must beat: the trivial one (no AU, the majority expression, the mean VA) and the
pixel linear probe (``pipeline.evaluation.probe``). Every model's predictions become rows of one
long table (``val_predictions.parquet``, docs/architecture.md); ``evaluation.json`` is
computed from exactly those rows by ``scoring.evaluate_predictions``, with paired
intervals against the teacher (each temporal ensemble also against the CNN ensemble and
its smoothed outputs) and the mean of the students as an entry of its own.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from pipeline.core.index import FrameIndex
from pipeline.inference.ensemble import distinct_checkpoints, load_bundle
from pipeline.inference.outputs import combine
from pipeline.core.errors import CheckpointError
from pipeline.temporal.features import Features
from pipeline.core.hashing import file_sha256
from pipeline.inference.runner import load_models, predict_many
from pipeline.core.labels import AU_THRESHOLD
from pipeline.evaluation.thresholds import tune_thresholds
from pipeline.training.models import read_torch_file, va_centres_of
from pipeline.evaluation.probe import PixelProbe
from pipeline.temporal.sequences import Split, bundle_predictions
from pipeline.temporal.sequences import predict as predict_sequences
from pipeline.evaluation.scoring import PRED_VA, evaluate_predictions, thr_au
from pipeline.evaluation.smoothing import best_window
from pipeline.inference.smoothing import smooth
from pipeline.temporal.model import load_temporal

log = logging.getLogger("mtaffect.evaluate")

BASELINE = "baseline"  # all AUs absent, the majority training class, the mean training VA
PROBE = "pixel_probe"
TEACHER, ENSEMBLE, STUDENTS_MEAN = "teacher", "ensemble", "students_mean"
ENSEMBLE_SMOOTHED = "ensemble_smoothed"  # the ensemble's outputs, moving-averaged over time
FIXED = f"fixed {AU_THRESHOLD}"
UNCERTAINTY = ["unc_AU", "unc_EXPR", "unc_valence", "unc_arousal"]


@dataclass
class Models:
    """What to evaluate: checkpoint paths (the teacher's, each student's) and the bundle."""

    teacher: str | None = None
    students: dict[str, str] = field(default_factory=dict)
    ensemble: str | None = None
    features: str | None = None  # the temporal models' input
    rnn_teachers: dict[int, str] = field(default_factory=dict)  # sequence length -> checkpoint
    rnn_ensembles: dict[int, str] = field(default_factory=dict)  # sequence length -> bundle


def prediction_rows(model: str, index: FrameIndex, preds: dict[str, np.ndarray], thresholds) -> pd.DataFrame:
    """One model's predictions as rows of the long validation table (columns of the index's schema)."""
    n, schema = len(index), index.schema
    df = pd.DataFrame({"uid": index.uid, "video": index.video, "frame": index.frame, "model": model})
    for j, au in enumerate(schema.aus):
        df[au] = index.au[:, j]
    df["expr"] = index.expr
    df["valence"], df["arousal"] = index.va[:, 0], index.va[:, 1]
    thr = np.broadcast_to(np.asarray(thresholds, dtype=np.float32), (n, len(schema.aus)))
    for j, (p, t) in enumerate(zip(schema.au_probs, thr_au(schema))):
        df[p] = preds["AU"][:, j].astype(np.float32)
        df[t] = thr[:, j]
    for k, p in enumerate(schema.expr_probs):
        df[p] = preds["EXPR"][:, k].astype(np.float32)
    df[PRED_VA[0]], df[PRED_VA[1]] = preds["VA"][:, 0].astype(np.float32), preds["VA"][:, 1].astype(np.float32)
    unc = [preds.get("uncertainty_AU"), preds.get("uncertainty_EXPR"), *(
        (preds["uncertainty_VA"][:, 0], preds["uncertainty_VA"][:, 1]) if "uncertainty_VA" in preds else (None,) * 2)]
    for column, values in zip(UNCERTAINTY, unc):
        df[column] = np.full(n, np.nan, np.float32) if values is None else values.astype(np.float32)
    return df


def baseline_predictions(train: dict[str, FrameIndex], n: int) -> dict[str, np.ndarray]:
    """The trivial baselines a model must beat: no AU ever, the majority expression of the
    (unweighted) training set, and the mean training valence and arousal."""
    schema = train["EXPR"].schema
    majority = int(np.bincount(train["EXPR"].expr[train["EXPR"].expr >= 0], minlength=len(schema.expressions)).argmax())
    expr = np.zeros((n, len(schema.expressions)), np.float32)
    expr[:, majority] = 1.0
    va = np.nanmean(train["VA"].va, axis=0)
    return {"AU": np.zeros((n, len(schema.aus)), np.float32), "EXPR": expr,
            "VA": np.tile(va.astype(np.float32), (n, 1))}


def _predict(label: str, models: dict[str, tuple], val: FrameIndex, device, batch: int, progress: bool) -> dict:
    with tqdm(total=len(val), desc=f"evaluate {label}", unit="face", disable=not progress) as bar:
        return predict_many(models, val, device, batch, bar)


def checkpoint_predictions(paths: dict[str, str], val: FrameIndex, device, batch: int, progress: bool) -> dict:
    """Predictions of each checkpoint ``{name: path}``, in one pass over the faces."""
    return (_predict(", ".join(paths), load_models(paths, device, val.schema), val, device, batch, progress)
            if paths else {})


def ensemble_predictions(path: str, known: dict[str, tuple[str, dict]], val: FrameIndex, device, batch: int,
                         progress: bool) -> tuple[dict, dict]:
    """The bundle's predictions and its other entries. A member whose checkpoint is one of
    ``known`` (name -> (sha256, predictions)) reuses those predictions."""
    members, bundle = load_bundle(path, device, schema=val.schema)
    reused = {name: known[name][1] for name, _, _ in members
              if name in known and known[name][0] == bundle["member_sha256"][name]}
    todo = {name: (model, centres) for name, model, centres in members if name not in reused}
    fresh = _predict(f"{ENSEMBLE} members", todo, val, device, batch, progress) if todo else {}
    return combine([reused.get(name, fresh.get(name)) for name, _, _ in members]), bundle


def check_distinct(checkpoints: dict[str, str]) -> None:
    """Two of the evaluated checkpoints (teacher, students) are one file's copies: the second
    would be reported with the first's scores, and the students' spread would shrink."""
    distinct_checkpoints(checkpoints, "{second} would be scored as {first}; each model must be its own trained checkpoint")


def check_same_teacher(models: Models, cache_teacher_sha256: str | None) -> None:
    """The students must have learned from the soft labels of the teacher evaluated here."""
    teacher_sha = file_sha256(models.teacher) if models.teacher else None
    if cache_teacher_sha256 is not None and teacher_sha is not None and cache_teacher_sha256 != teacher_sha:
        raise CheckpointError(f"the soft-label cache comes from another teacher (sha256 {cache_teacher_sha256[:12]}...) "
                              f"than {models.teacher} ({teacher_sha[:12]}...): is --teacher the teacher that made it "
                              "(default models/teacher.pt)? If so, rerun `dvc repro soft_labels`")
    for name, path in models.students.items():
        learned = read_torch_file(path, "checkpoint").get("soft_labels", {}).get("teacher_sha256")
        if teacher_sha is not None and learned is not None and learned != teacher_sha:
            raise CheckpointError(f"{path}: student {name!r} learned from another teacher's soft labels (sha256 "
                                  f"{learned[:12]}...) than {models.teacher} ({teacher_sha[:12]}...): "
                                  f"rerun `dvc repro train_student@{name}`")


def temporal_predictions(models: Models, val: FrameIndex, device, batch: int) -> dict[str, tuple]:
    """``{name: (predictions in val order, AU thresholds, note)}`` of each temporal teacher
    (``rnn_teacher_T<length>``) and ensemble (``rnn_ensemble_T<length>``)."""
    features = Features(models.features)
    val.schema.require_same(features.schema, f"{models.features}: the features")
    where = pd.Index(features.uid).get_indexer(val.uid.astype(str))
    if (where < 0).any():
        raise CheckpointError(f"{models.features}: no features for validation frame {val.uid[where < 0][0]} "
                              f"({int((where < 0).sum())} missing): rerun `dvc repro features`")
    order = np.argsort(where, kind="stable")
    rows, back = where[order], np.argsort(order)  # the features' order (videos in runs), and back to val's
    out = {}
    for length, path in models.rnn_teachers.items():
        model, ckpt = load_temporal(path, device)
        val.schema.require_same(model.schema, f"{path}: the checkpoint")
        preds = predict_sequences(model, features, Split.of(features, rows, length, training=False), device, batch,
                                  va_centres_of(ckpt))
        out[f"rnn_teacher_T{length}"] = ({k: v[back] for k, v in preds.items()}, AU_THRESHOLD, FIXED)
    for length, path in models.rnn_ensembles.items():
        preds, bundle = bundle_predictions(path, features, rows, device, batch)
        out[f"rnn_ensemble_T{length}"] = ({k: v[back] for k, v in preds.items()}, bundle["au_thresholds"],
                                          bundle["au_threshold_mode"])
    return out


def evaluate(models: Models, train: dict[str, FrameIndex], val: FrameIndex, device: torch.device,
             batch: int = 128, au_thresholds: str = "fixed", n_boot: int = 200, seed: int = 0,
             progress: bool = True) -> tuple[pd.DataFrame, dict]:
    """The long prediction table and the evaluation dict of the baselines and ``models``."""
    fixed, tuned = FIXED, "tuned per AU on the validation set (optimistic)"
    rows, notes = [prediction_rows(BASELINE, val, baseline_predictions(train, len(val)), 0.5)], {BASELINE: fixed}
    log.info("fitting the pixel linear probe")
    rows.append(prediction_rows(PROBE, val, PixelProbe.fit(train, seed).predict(val), 0.5))
    notes[PROBE] = fixed
    paths = {**({TEACHER: models.teacher} if models.teacher else {}), **models.students}
    known = {}
    for name, preds in checkpoint_predictions(paths, val, device, batch, progress).items():
        known[name] = (file_sha256(paths[name]), preds)
        thr = tune_thresholds(val.au, preds["AU"]) if au_thresholds == "tuned" else AU_THRESHOLD
        rows.append(prediction_rows(name, val, preds, thr))
        notes[name] = tuned if au_thresholds == "tuned" else fixed
    windows = {}
    if models.ensemble:
        preds, bundle = ensemble_predictions(models.ensemble, known, val, device, batch, progress)
        rows.append(prediction_rows(ENSEMBLE, val, preds, bundle["au_thresholds"]))
        notes[ENSEMBLE] = bundle["au_threshold_mode"]
        # what smoothing alone gives, for the temporal models to be compared with
        window, totals = best_window(val, preds, bundle["au_thresholds"])
        rows.append(prediction_rows(ENSEMBLE_SMOOTHED, val, smooth(preds, val.video, val.frame, window),
                                    bundle["au_thresholds"]))
        notes[ENSEMBLE_SMOOTHED] = bundle["au_threshold_mode"]
        windows[ENSEMBLE_SMOOTHED] = {"frames": window, "chosen": "by the total on the validation set (optimistic)",
                                      "totals": [[w, t] for w, t in totals.items()]}
    pairs = []
    if models.features:
        temporal = temporal_predictions(models, val, device, batch)
        for name, (preds, thresholds, note) in temporal.items():
            rows.append(prediction_rows(name, val, preds, thresholds))
            notes[name] = note
            if name.startswith("rnn_ensemble"):
                pairs += [(name, ENSEMBLE), (name, ENSEMBLE_SMOOTHED)]
    table = pd.concat(rows, ignore_index=True)
    evaluation = evaluate_predictions(table, n_boot=n_boot, seed=seed, reference=TEACHER,
                                      means={STUDENTS_MEAN: list(models.students)}, pairs=pairs, schema=val.schema)
    for name, note in notes.items():
        evaluation[name]["au_thresholds"] = note
    for name, window in windows.items():
        evaluation[name]["smoothing_window"] = window
    return table, evaluation
