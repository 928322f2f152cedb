"""The temporal model's data: windows of cached CNN features with the frames' labels
(docs/architecture.md, "Temporal model"). Nothing here opens a face shard.

:class:`SequenceData` is what ``pipeline.training.train`` needs of a data set, for windows instead
of images: per task, the training windows that hold at least one label of that task
(drawn uniformly by the CNN path's sampler, ``batch_per_task`` windows per step); a
step's batch per task is ``((features [B, L, 3, 128], lengths [B]), labels, windows)``
with the labels of the windows' frames one after the other (unknown stays unknown: the
losses skip it), as the temporal model lays out its outputs. Validation predicts every
frame through the evaluation windows (:func:`predict`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.core.index import FrameIndex
from pipeline.core.errors import CheckpointError, DataError
from pipeline.temporal.features import Features
from pipeline.core.hashing import file_sha256
from pipeline.evaluation.scoring import score
from pipeline.inference.outputs import outputs
from pipeline.core.labels import TASKS, va_centres
from pipeline.training.models import model_schema
from pipeline.training.softlabels import FORMAT_VERSION, to_float16, write_cache
from pipeline.temporal.model import TemporalNet
from pipeline.temporal.windows import eval_windows, fuse, runs, train_windows


@dataclass
class Split:
    """Some rows of a features file (one split, or its first videos) and their windows,
    as (start, stop) positions into ``rows``."""

    rows: np.ndarray
    windows: np.ndarray  # int64 [n_windows, 2]

    @classmethod
    def of(cls, features: Features, rows: np.ndarray, length: int, training: bool) -> "Split":
        make = train_windows if training else eval_windows
        windows = [w for a, b in runs(features.video[rows], features.frame[rows]) for w in make(a, b, length)]
        return cls(rows, np.asarray(windows, dtype=np.int64).reshape(-1, 2))

    def frames(self, k: int) -> np.ndarray:
        """The feature-file rows of window ``k``."""
        return self.rows[self.windows[k, 0]:self.windows[k, 1]]


def labels_of(features: Features, table: FrameIndex) -> FrameIndex:
    """The frame table ``table`` (the features' own rows, in order), checked to be it."""
    if len(table) != len(features.uid) or not np.array_equal(table.uid.astype(str), features.uid.astype(str)):
        raise CheckpointError(f"{features.path}: not the features of this frame table ({len(features.uid)} frames "
                              f"against {len(table)}, or in another order): rerun `dvc repro features`")
    return table


def check_length(length: int, split: Split, name: str) -> None:
    """A sequence length longer than every run of ``split`` would make each window a whole
    run: not a window of that length any more."""
    longest = int((split.windows[:, 1] - split.windows[:, 0]).max()) if len(split.windows) else 0
    if length > longest:
        raise DataError(f"sequence length {length}: longer than every {name} video's run of consecutive frames "
                        f"(the longest has {longest} frames); choose temporal.sequence_lengths of at most {longest}")


def window_batch(features: Features, split: Split, windows) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """The padded features [B, L, 3, 128] and lengths [B] of some windows, and their
    frames' rows one after the other."""
    frames = [split.frames(k) for k in windows]
    lengths = np.array([len(f) for f in frames])
    x = np.zeros((len(frames), lengths.max(), *features.features.shape[1:]), np.float32)
    for i, f in enumerate(frames):
        x[i, :len(f)] = features.features[f]
    return torch.from_numpy(x), torch.from_numpy(lengths), np.concatenate(frames)


@torch.no_grad()
def predict(model: TemporalNet, features: Features, split: Split, device, batch: int = 128,
            centres: str = "centres") -> dict[str, np.ndarray]:
    """Every frame of ``split`` (in ``split.rows`` order) through its evaluation windows:
    AU sigmoids, EXPR softmax, VA expectations and the 55 logits, the mean over the
    windows that hold the frame (``windows.fuse``)."""
    model.eval()
    c = torch.as_tensor(va_centres(centres), dtype=torch.float32, device=device)
    parts = []
    for start in range(0, len(split.windows), batch):
        x, lengths, _ = window_batch(features, split, range(start, min(start + batch, len(split.windows))))
        out = outputs(model, (x.to(device), lengths), c)
        parts.extend(zip(*(torch.split(v, lengths.tolist()) for v in out.values())))
    keys = (*TASKS, "logits")
    windows = [tuple(w) for w in split.windows]
    return {k: fuse(len(split.rows), windows, [p[i].numpy() for p in parts]).astype(np.float32)
            for i, k in enumerate(keys)}


class WindowSteps(torch.utils.data.Dataset):
    """Item ``k`` = step ``start_step + k`` of one epoch: ``{task: ((features, lengths), labels, windows)}``;
    with soft labels, the labels carry the teacher's logits of each frame under ``"teacher"``."""

    def __init__(self, data: "SequenceData", sampler, epoch: int, start_step: int):
        self.data, self.draws = data, sampler.epoch_draws(epoch)
        self.start_step, self.steps = start_step, sampler.steps_per_epoch

    def __len__(self) -> int:
        return self.steps - self.start_step

    def __getitem__(self, k: int):
        d, batch = self.data, {}
        for task in TASKS:
            windows = d.task_windows[task][self.draws[task][self.start_step + k]]
            x, lengths, frames = window_batch(d.features, d.train, windows)
            labels = d.table.labels(frames)
            if d.targets is not None:  # read from the cache's memory map as windows need them
                logits = d.targets.array("logits")[d.cache_rows[frames], 0]
                labels["teacher"] = torch.from_numpy(np.asarray(logits, dtype=np.float32))
            batch[task] = ((x, lengths), labels, torch.from_numpy(windows))
        return batch


class SequenceData:
    """What ``pipeline.training.train`` trains a temporal model on: the features' training windows
    of ``length`` frames, validation on the validation frames (the first
    ``selection_videos`` videos, if set). ``soft_labels`` (a ``softlabels.SoftLabels``
    cache of the temporal teacher) makes it a student's data."""

    def __init__(self, features: Features, table: FrameIndex, length: int, selection_videos: int | None = None,
                 soft_labels=None):
        self.features, self.table, self.length = features, labels_of(features, table), length
        self.schema = features.schema  # the labels the CNN under the features learnt
        self.schema.require_same(table.schema, "the frame table's labels")
        self.train = Split.of(features, np.flatnonzero(features.split == "train"), length, training=True)
        check_length(length, self.train, "training")
        val_rows = np.flatnonzero(features.split == "val")
        if selection_videos is not None:
            val_rows = val_rows[np.isin(features.video[val_rows], sorted(set(features.video[val_rows]))[:selection_videos])]
        self.val = Split.of(features, val_rows, length, training=False)
        if not len(val_rows):
            raise DataError(f"{features.path}: no validation frames: the epoch choice needs Aff-Wild2's validation videos")
        self.task_windows = {task: np.flatnonzero([known[self.train.frames(k)].any() for k in range(len(self.train.windows))])
                             for task, known in self.known().items()}
        for task, w in self.task_windows.items():
            if len(w) == 0:
                raise DataError(f"{features.path}: no training window holds a {task} label")
        self.weights = {task: np.ones(len(w)) for task, w in self.task_windows.items()}
        self.targets = soft_labels
        self.cache_rows = None  # the cache's row of each training frame; every one must be there
        if soft_labels is not None:
            self.schema.require_same(soft_labels.schema, f"{soft_labels.path}: the soft-label cache")
            self.cache_rows = np.full(len(table), -1, np.int64)
            self.cache_rows[self.train.rows] = soft_labels.rows(table.subset(self.train.rows))
        self.inputs = {"features": features.attrs["checkpoint_sha256"], "length": length,
                       **({"teacher": soft_labels.attrs["teacher_sha256"]} if soft_labels is not None else {})}

    def known(self) -> dict[str, np.ndarray]:
        t = self.table
        return {"AU": (t.au >= 0).any(axis=1), "EXPR": t.expr >= 0, "VA": ~np.isnan(t.va).any(axis=1)}

    def make_model(self, params) -> TemporalNet:
        return TemporalNet(params.hidden, self.features.features.shape[-1], self.schema)

    def steps(self, sampler, epoch: int, start_step: int, params) -> WindowSteps:
        return WindowSteps(self, sampler, epoch, start_step)

    @staticmethod
    def to_device(x, device, params):
        features, lengths = x
        return features.to(device, non_blocking=True), lengths

    def validate(self, model: TemporalNet, device, params) -> dict:
        preds = predict(model, self.features, self.val, device, params.eval_batch, params.va_centres)
        return score(self.table.subset(self.val.rows), preds)


def dump_soft_labels(model: TemporalNet, features: Features, length: int, out, teacher, batch: int, device,
                     centres: str) -> dict:
    """The temporal teacher's logits of every training frame, in the soft-label cache's
    format (``softlabels``, centre mode: one target per frame): each frame's logits through
    the evaluation windows, the mean where two windows hold it (the teacher's own per-frame
    prediction; a student's window then sees that target whichever window it draws)."""
    rows = np.flatnonzero(features.split == "train")
    logits = predict(model, features, Split.of(features, rows, length, training=False), device, batch,
                     centres)["logits"]
    order = np.argsort(features.uid[rows].astype(str), kind="stable")
    n = len(rows)
    attrs = {"format_version": FORMAT_VERSION, "mode": "centre", "views": 1, "teacher_sha256": file_sha256(teacher),
             "teacher_backbone": model.backbone_name, "va_centres": centres, "sequence_length": length,
             "label_schema": json.dumps(model_schema(model.schema), sort_keys=True),
             "index_sha256": json.dumps({"features": features.sha256}, sort_keys=True)}
    write_cache(out, features.uid[rows][order], np.zeros((n, 1, 2), np.uint8), np.zeros((n, 1), np.uint8), attrs,
                [to_float16(torch.from_numpy(logits[order])).reshape(n, 1, -1)], logits.shape[1])
    return {"frames": n, "sequence_length": length, "teacher_sha256": attrs["teacher_sha256"]}


def check_cache(cache, features: Features, length: int) -> None:
    """Refuse a temporal soft-label cache of other features or another sequence length."""
    made = cache.index_sha256.get("features")
    if made != features.sha256 or int(cache.attrs.get("sequence_length", -1)) != length:
        raise CheckpointError(f"{cache.path}: computed from other features (sha256 {str(made)[:12]}...) or another "
                              f"sequence length ({cache.attrs.get('sequence_length')}) than {features.path} at "
                              f"{length}: rerun `dvc repro rnn_soft_labels`")


def ensemble_predict(members, features: Features, split: Split, device, batch: int = 128) -> dict:
    """The ensemble of temporal ``members`` ``(name, model, va_centres)`` on the frames of
    ``split`` (evaluation windows): each member through them, combined by ``ensemble.combine``."""
    from pipeline.inference.outputs import combine

    return combine([predict(model, features, split, device, batch, centres) for _, model, centres in members])


def bundle_predictions(path, features: Features, rows: np.ndarray, device, batch: int = 128) -> tuple[dict, dict]:
    """A temporal ensemble bundle's predictions for the feature-file ``rows`` and the
    bundle's other entries."""
    from pipeline.temporal.model import load_rnn_bundle

    members, bundle = load_rnn_bundle(path, device, features.schema)
    if bundle["features_sha256"] != features.attrs["checkpoint_sha256"]:
        raise CheckpointError(f"{path}: trained on features of another checkpoint (sha256 "
                              f"{bundle['features_sha256'][:12]}...) than {features.path}: rerun `dvc repro rnn_ensemble`")
    split = Split.of(features, rows, bundle["sequence_length"], training=False)
    return ensemble_predict(members, features, split, device, batch), bundle
