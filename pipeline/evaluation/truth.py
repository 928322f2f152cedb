"""What only the synthetic data can show: scores against the complete ground truth.

The generator writes every face's true labels for all three tasks
(``ground_truth.parquet``, docs/synthetic-data.md), which no real data set has. Two
reports come from it:

- every model scored on all three tasks of every validation face, from the true labels
  rather than the files' (the same on noise-free validation files, by construction);
- the quality of the cached soft labels on the tasks a training frame was *not*
  labelled for (say the teacher's AU F1 on ExpW and AFEW-VA frames): the very thing the
  students learn from, and the method's premise.

Frames are matched by uid; a frame table of real data matches no synthetic uid, and then
there is nothing to report. The truth is projected onto the run's label schema as the
build projects the files' labels: an AU it does not hold is unknown.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from pipeline.core.errors import DataError
from pipeline.evaluation import metrics
from pipeline.core.index import FrameIndex
from pipeline.core.labels import TASKS, split_logits, va_centres
from pipeline.core.schema import LabelSchema
from pipeline.inference.outputs import va_expectation
from pipeline.training.softlabels import SoftLabels

def read_ground_truth(path: str | Path | None, uids) -> pd.DataFrame | None:
    """The true labels of the frames ``uids`` that the ground truth has (indexed by uid),
    or None when there is no ground truth or it knows none of them."""
    if path is None or not Path(path).exists():
        return None
    wanted = set(map(str, uids))
    try:
        aus = [c for c in pq.read_schema(path).names if c.startswith("AU")]
        gt = pq.read_table(path, columns=["uid", *aus, "expr", "valence", "arousal"]).to_pandas().set_index("uid")
    except (pa.ArrowInvalid, OSError, KeyError) as e:
        raise DataError(f"{path}: not a readable ground-truth table ({str(e).splitlines()[0][:100]}): rerun "
                        "`dvc repro synth`, or leave --ground-truth out") from None
    twice = gt.index[gt.index.duplicated()]
    if len(twice):  # e.g. a prediction table: a row per model and face
        raise DataError(f"{path}: face {twice[0]} has {int((gt.index == twice[0]).sum())} rows: not a ground-truth "
                        "table (one row per face, as synth writes it)")
    gt = gt[gt.index.isin(wanted)]
    return gt if len(gt) else None


def true_labels(gt: pd.DataFrame, schema: LabelSchema) -> dict[str, np.ndarray]:
    """The truth's AUs, expressions and VA in ``schema`` (what it does not hold: unknown)."""
    return {"AU": schema.project_aus({a: gt[a].to_numpy() for a in schema.aus if a in gt}, len(gt)),
            "EXPR": schema.project_expressions(gt["expr"].to_numpy()), "VA": gt[["valence", "arousal"]].to_numpy()}


def with_true_labels(table: pd.DataFrame, gt: pd.DataFrame, schema: LabelSchema) -> pd.DataFrame:
    """The prediction table's rows that the ground truth knows, with its labels as truth."""
    rows = table[table["uid"].isin(gt.index)].copy()
    truth = true_labels(gt.loc[rows["uid"]], schema)
    for j, au in enumerate(schema.aus):
        rows[au] = truth["AU"][:, j]
    rows["expr"] = truth["EXPR"]
    rows["valence"], rows["arousal"] = truth["VA"][:, 0], truth["VA"][:, 1]
    return rows


def task_scores(task: str, truth: dict[str, np.ndarray], probs: dict[str, np.ndarray],
                schema: LabelSchema) -> dict | None:
    if task == "AU":
        return metrics.au_metrics(truth["AU"], probs["AU"], names=schema.aus)
    if task == "EXPR":
        return metrics.expr_metrics(truth["EXPR"], probs["EXPR"], schema.expressions)
    return metrics.va_metrics(truth["VA"], probs["VA"])


def cache_probabilities(cache: SoftLabels, rows: np.ndarray, centres: str, block: int = 4096) -> dict:
    """The teacher's predictions on frames ``rows`` of the cache, averaged over their views:
    AU sigmoids, EXPR softmaxes, VA expectations."""
    out = {t: [] for t in TASKS}
    c = torch.as_tensor(va_centres(centres), dtype=torch.float32)
    logits = cache.array("logits")
    for start in range(0, len(rows), block):
        x = split_logits(torch.from_numpy(np.asarray(logits[rows[start:start + block]], dtype=np.float32)),
                         cache.schema)
        n, k = x["AU"].shape[:2]
        out["AU"].append(torch.sigmoid(x["AU"]).mean(1))
        out["EXPR"].append(torch.softmax(x["EXPR"], dim=-1).mean(1))
        out["VA"].append(va_expectation(x["VA"].reshape(n * k, -1), c).reshape(n, k, 2).mean(1))
    return {t: torch.cat(v).numpy() if v else np.zeros((0, 1)) for t, v in out.items()}


def soft_label_quality(cache: SoftLabels, train: dict[str, FrameIndex], gt_path: str | Path | None,
                       centres: str = "centres") -> dict | None:
    """Per training source and task, the cached soft labels scored against the truth on
    the frames labelled for that task and on those that are not (what students fill in)."""
    gt = read_ground_truth(gt_path, cache.uid)
    if gt is None:
        return None
    labelled = {t: set(map(str, ix.uid)) for t, ix in train.items()}
    known = np.flatnonzero(np.isin(cache.uid, gt.index))
    probs = cache_probabilities(cache, known, centres)
    uids = cache.uid[known]
    sources = np.array([u.split("/", 1)[0] for u in uids])
    truth = true_labels(gt.loc[uids], cache.schema)
    report = {}
    for source in sorted(set(sources)):
        report[source] = {}
        for task in TASKS:
            entry = {}
            for kind, wanted in (("labelled", True), ("unlabelled", False)):
                pick = (sources == source) & (np.isin(uids, list(labelled[task])) == wanted)
                scores = (task_scores(task, {t: v[pick] for t, v in truth.items()}, {t: p[pick] for t, p in probs.items()},
                                      cache.schema) if pick.any() else None)
                entry[kind] = {"frames": int(pick.sum()), "scores": scores}
            report[source][task] = entry
    return {"note": "the teacher's cached soft labels (mean over views) against the synthetic ground truth; "
                    "'unlabelled' frames are those a student learns that task from the teacher only",
            "sources": report}
