"""Scoring on the validation set: every model by one code path, plus trivial baselines.

Every model's predictions become rows of one long table (``val_predictions.parquet``,
docs/architecture.md); ``evaluation.json`` is computed from exactly those rows by
``scoring.evaluate_predictions``, so anyone can recompute it from the table.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

from pipeline.data import FrameIndex
from pipeline.labels import AU_NAMES, EXPR_NAMES
from pipeline.metrics import f1_from_counts
from pipeline.scoring import P_AU, P_EXPR, PRED_VA, THR_AU, evaluate_predictions

log = logging.getLogger("mtaffect.evaluate")

BASELINE = "baseline"  # all AUs absent, the majority training class, the mean training VA


def prediction_rows(model: str, index: FrameIndex, preds: dict[str, np.ndarray], thresholds) -> pd.DataFrame:
    """One model's predictions as rows of the long validation table."""
    n = len(index)
    df = pd.DataFrame({"uid": index.uid, "video": index.video, "frame": index.frame, "model": model})
    for j, au in enumerate(AU_NAMES):
        df[au] = index.au[:, j]
    df["expr"] = index.expr
    df["valence"], df["arousal"] = index.va[:, 0], index.va[:, 1]
    thr = np.broadcast_to(np.asarray(thresholds, dtype=np.float32), (n, len(AU_NAMES)))
    for j in range(len(AU_NAMES)):
        df[P_AU[j]] = preds["AU"][:, j].astype(np.float32)
        df[THR_AU[j]] = thr[:, j]
    for k in range(len(EXPR_NAMES)):
        df[P_EXPR[k]] = preds["EXPR"][:, k].astype(np.float32)
    df[PRED_VA[0]], df[PRED_VA[1]] = preds["VA"][:, 0].astype(np.float32), preds["VA"][:, 1].astype(np.float32)
    return df


def baseline_predictions(train: dict[str, FrameIndex], n: int) -> dict[str, np.ndarray]:
    """The trivial baselines a model must beat: no AU ever, the majority expression of the
    (unweighted) training set, and the mean training valence and arousal."""
    majority = int(np.bincount(train["EXPR"].expr[train["EXPR"].expr >= 0], minlength=7).argmax())
    expr = np.zeros((n, len(EXPR_NAMES)), np.float32)
    expr[:, majority] = 1.0
    va = np.nanmean(train["VA"].va, axis=0)
    return {"AU": np.zeros((n, len(AU_NAMES)), np.float32), "EXPR": expr,
            "VA": np.tile(va.astype(np.float32), (n, 1))}


THRESHOLD_GRID = np.linspace(0.05, 0.95, 19)


def tune_thresholds(labels: np.ndarray, probs: np.ndarray, grid=THRESHOLD_GRID) -> np.ndarray:
    """Per-AU threshold with the best F1 on these labels (optimistic when they are the
    validation labels: reported as 'tuned')."""
    out = np.full(labels.shape[1], 0.5)
    for j in range(labels.shape[1]):
        known = labels[:, j] >= 0
        if not known.any():
            continue
        y = labels[known, j] == 1
        p = probs[known, j][None, :] >= np.asarray(grid)[:, None]  # [thresholds, frames]
        f1 = f1_from_counts((p & y).sum(axis=1), (p & ~y).sum(axis=1), (~p & y).sum(axis=1))
        out[j] = grid[int(np.argmax(f1))]  # the first (lowest) threshold of the best F1
    return out


def model_predictions(models: dict[str, str], val: FrameIndex, device, batch: int, progress=True):
    """(name, predictions) for every checkpoint in ``models`` (name -> path), in order."""
    from tqdm import tqdm

    from pipeline.inference import predict
    from pipeline.models import load_checkpoint

    for name, path in models.items():
        model, ckpt = load_checkpoint(path, device)
        with tqdm(total=len(val), desc=f"evaluate {name}", unit="face", disable=not progress) as bar:
            preds = predict(model, val, device, batch, ckpt.get("train", {}).get("va_centres", "centres"), bar)
        yield name, preds


def evaluate(models: dict[str, str], train: dict[str, FrameIndex], val: FrameIndex, device: torch.device,
             batch: int = 128, au_thresholds: str = "fixed", n_boot: int = 200, seed: int = 0,
             progress: bool = True) -> tuple[pd.DataFrame, dict]:
    """The long prediction table and the evaluation dict for the baselines and ``models``."""
    frames = [prediction_rows(BASELINE, val, baseline_predictions(train, len(val)), 0.5)]
    for name, preds in model_predictions(models, val, device, batch, progress):
        thr = tune_thresholds(val.au, preds["AU"]) if au_thresholds == "tuned" else 0.5
        frames.append(prediction_rows(name, val, preds, thr))
    table = pd.concat(frames, ignore_index=True)
    evaluation = evaluate_predictions(table, n_boot=n_boot, seed=seed)
    for name in evaluation:
        evaluation[name]["au_thresholds"] = "fixed 0.5" if name == BASELINE or au_thresholds == "fixed" else \
            "tuned per AU on the validation set (optimistic)"
    return table, evaluation
