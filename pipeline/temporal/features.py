"""The frozen CNN's per-frame features for the temporal model, computed once
(docs/architecture.md, "Temporal model").

The authors run the frozen CNN again inside every step of GRU training; here it runs once
over every Aff-Wild2 frame (training and validation), in eval mode, and the GRUs train on
what it wrote. One view per frame, the evaluation view (centre crop): a window's frames
must share one view for the sequence to make sense, and the GRUs learn from the features'
changes over time, not from the CNN's invariance to crops, which is already trained in.

File (``data/features.h5``), the frame table's rows in its order: ``uid``, ``video``
(strings), ``frame`` int64 [M], ``split`` (strings), ``features`` float32 [M, 3, 128]
(the AU, EXPR and VA heads' features after their second BatchNorm, before the last
linear layer), ``logits`` float32 [M, 55] (8 AU, 7 EXPR, 20 + 20 VA, as the CNN's own
output); attributes ``format_version``, ``sha256`` (each dataset's, checked when the file
is opened), ``checkpoint_sha256``, ``backbone``, ``va_centres``.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch

from pipeline.core.index import FrameIndex, eval_batches
from pipeline.core.errors import CheckpointError, ParamsError
from pipeline.core.hashing import file_sha256
from pipeline.core.h5file import new_h5
from pipeline.core.labels import TASKS, n_logits
from pipeline.training.models import attr_schema, model_schema, read_torch_file
from pipeline.core.shards import MappedDatasets, read_stage_h5, seal_h5

FORMAT_VERSION = 3  # 2: every dataset's SHA-256 (``pipeline.core.shards.seal_h5``); 3: its label schema
FEATURE_DIM = 128


@torch.no_grad()
def task_outputs(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-task head features [n, 3, 128] and the logits [n, all heads'] of one batch, from one
    backbone pass (the logits are the heads' last layers on those very features)."""
    feats = model.task_features(x)
    logits = torch.cat([model.heads[t][-1](feats[t]) for t in TASKS], dim=1)
    return torch.stack([feats[t] for t in TASKS], dim=1), logits


def dump(model: torch.nn.Module, table: str | Path, out: str | Path, checkpoint: str | Path, batch: int,
         device: torch.device, va_centres: str, progress=None) -> dict:
    """Features and logits of every frame of the frame table ``table`` with ``model`` (the
    checkpoint at ``checkpoint``, in eval mode), written to ``out``; returns a summary."""
    index = FrameIndex.read(table, model.schema)
    split = pd.read_parquet(table, columns=["split"])["split"].to_numpy()
    model.eval()
    n = len(index)
    with new_h5(out) as h5:  # a full disk: an error naming the file, never a crash
        strings = h5py.string_dtype("utf-8")
        h5.create_dataset("uid", data=index.uid.astype(object), dtype=strings, track_times=False)
        h5.create_dataset("video", data=index.video.astype(object), dtype=strings, track_times=False)
        h5.create_dataset("frame", data=index.frame.astype(np.int64), track_times=False)
        h5.create_dataset("split", data=split.astype(object), dtype=strings, track_times=False)
        feats = h5.create_dataset("features", shape=(n, len(TASKS), FEATURE_DIM), dtype=np.float32, track_times=False)
        logits = h5.create_dataset("logits", shape=(n, n_logits(model.schema)), dtype=np.float32, track_times=False)
        for x, positions in eval_batches(index, batch):
            f, lg = task_outputs(model, x.to(device, memory_format=torch.channels_last))
            feats[positions[0]:positions[-1] + 1] = f.cpu().numpy()
            logits[positions[0]:positions[-1] + 1] = lg.cpu().numpy()
            if progress is not None:
                progress.update(len(positions))
        attrs = {"format_version": FORMAT_VERSION, "checkpoint_sha256": file_sha256(checkpoint),
                 "backbone": getattr(model, "backbone_name", ""), "va_centres": va_centres,
                 "label_schema": json.dumps(model_schema(model.schema), sort_keys=True)}
        for key in sorted(attrs):
            h5.attrs[key] = attrs[key]
        seal_h5(h5)
    return {"frames": n, "videos": int(len(np.unique(index.video))),
            "train_frames": int((split == "train").sum()), "val_frames": int((split == "val").sum()),
            "checkpoint_sha256": attrs["checkpoint_sha256"], "backbone": attrs["backbone"]}


class Features:
    """A features file: the frames' names in memory, ``features`` and ``logits`` memory-mapped
    (float32 [M, 3, 128] is 1.5 kB a frame: read as windows need them)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with read_stage_h5(self.path, "features file", FORMAT_VERSION, "features",
                           ("uid", "video", "frame", "split", "features", "logits")) as (h5, self.attrs):
            self.uid, self.video, self.split = (h5[k].asstr()[:] for k in ("uid", "video", "split"))
            self.frame = h5["frame"][:]
            self._mapped = MappedDatasets(self.path, h5, ("features", "logits"))
        self.schema = attr_schema(self.attrs.get("label_schema"), self.path, "features file")

    @property
    def features(self) -> np.ndarray:
        return self._mapped["features"]

    @property
    def logits(self) -> np.ndarray:
        return self._mapped["logits"]

    @functools.cached_property
    def sha256(self) -> str:
        """The file's SHA-256, computed once (the file is gigabytes at real sizes)."""
        return file_sha256(self.path)

    def check_checkpoint(self, checkpoint: str | Path) -> None:
        """Refuse features computed by another checkpoint than ``checkpoint``."""
        ours, theirs = file_sha256(checkpoint), self.attrs["checkpoint_sha256"]
        if ours != theirs:
            raise CheckpointError(f"{self.path}: computed by another checkpoint (sha256 {theirs[:12]}...) than "
                                  f"{checkpoint} (sha256 {ours[:12]}...): rerun `dvc repro features`")


def choose_checkpoint(choice: str, members: list[str], students_dir: str, teacher: str) -> str:
    """The checkpoint ``features.checkpoint`` names: the member with the best validation
    total recorded in its checkpoint (``best_member``), the teacher, or a path."""
    if choice == "teacher":
        return teacher
    if choice != "best_member":
        if not Path(choice).is_file():
            raise ParamsError(f"features.checkpoint: {choice!r} is not a checkpoint file (nor best_member, nor "
                              "teacher)")
        return choice
    totals = {}
    for name in members:
        path = Path(students_dir) / f"{name}.pt"
        if not path.exists():
            raise FileNotFoundError(f"{path}: checkpoint of ensemble member {name!r} not found "
                                    f"(run `dvc repro train_student@{name}`)")
        totals[str(path)] = float(read_torch_file(path, "checkpoint").get("metrics_total", float("-inf")))
    return max(totals, key=lambda p: (totals[p], p))
