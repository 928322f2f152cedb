"""``predict --temporal``: a temporal ensemble bundle (``rnn_ensemble``) on new videos.

Each face goes through the CNN whose features the GRUs were trained on (a member of the
frame bundle, found by its checkpoint's SHA-256), and each track's run of consecutive
frames through the evaluation windows the temporal stages score with
(``windows.eval_windows``: tiling the run, the last window aligned to its end, outputs
averaged where two windows hold a frame). Streaming: a frame is final once no later
window can hold it, so a track holds at most 2L - 1 frames (L the sequence length) and
rows leave in frame order as soon as all their faces are final; memory does not grow
with the video.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pipeline.core.images import centre_view, to_tensor
from pipeline.inference.ensemble import load_bundle
from pipeline.inference.smoothing import pop_ready
from pipeline.temporal.model import load_rnn_bundle
from pipeline.core.errors import CheckpointError
from pipeline.temporal.features import task_outputs
from pipeline.predict.rows import alignment_of, fill
from pipeline.training.models import recorded_schema
from pipeline.temporal.sequences import Split, ensemble_predict
from pipeline.temporal.windows import eval_windows


class _InMemory:
    """Features held in memory [m, 3, 128], read as ``sequences.window_batch`` reads a features file."""

    def __init__(self, features: np.ndarray):
        self.features = features


def segment_predict(members, features: np.ndarray, length: int, device, batch: int = 128) -> dict:
    """The ensemble of temporal ``members`` ``(name, model, va_centres)`` on the features
    [m, 3, 128] of one run of consecutive frames, or of a run's part that starts a multiple
    of ``length`` frames into it (whose evaluation windows are then the run's own)."""
    split = Split(np.arange(len(features)), np.asarray(eval_windows(0, len(features), length)).reshape(-1, 2))
    return ensemble_predict(members, _InMemory(features), split, device, batch)


class TemporalModel:
    """A temporal bundle and the CNN that makes its features (taken from ``frame_bundle``)."""

    def __init__(self, path: str | Path, frame_bundle: str | Path, device: torch.device):
        self.members, info = load_rnn_bundle(path, device)
        cnns, cnn_info = load_bundle(frame_bundle, device)
        self.schema = recorded_schema(info["schema"], path, "model bundle")
        frame_schema = recorded_schema(cnn_info["schema"], frame_bundle, "model bundle")
        if frame_schema != self.schema:
            raise CheckpointError(f"{path}: a temporal bundle of schema {self.schema.describe()}, but the frame bundle "
                                  f"{frame_bundle} is of {frame_schema.describe()}: pass the frame bundle of the same "
                                  "run with --model")
        sha = info["features_sha256"]
        found = [model for name, model, _ in cnns if cnn_info["member_sha256"][name] == sha]
        if not found:
            raise CheckpointError(f"{path}: its GRUs were trained on the features of a checkpoint (sha256 {sha[:12]}...) "
                                  f"that is not a member of {frame_bundle}: pass the frame bundle of the same run "
                                  "with --model")
        self.cnn, self.device = found[0], device
        self.length = int(info["sequence_length"])
        self.thresholds = np.asarray(info["au_thresholds"], dtype=np.float32)
        self.size, self.scale, self.detection = alignment_of(cnn_info)

    @torch.no_grad()
    def features(self, faces: np.ndarray) -> np.ndarray:
        """The CNN's per-task features [n, 3, 128] of aligned faces (the features stage's view)."""
        x = centre_view(to_tensor(faces)).to(self.device, memory_format=torch.channels_last)
        return task_outputs(self.cnn, x)[0].cpu().numpy()

    def segment(self, features: np.ndarray) -> dict[str, np.ndarray]:
        return segment_predict(self.members, features, self.length, self.device)


@dataclass
class _Run:
    """A track's frames not yet final: the last frame number, rows, features and frame entries."""

    last: int
    rows: list = field(default_factory=list)
    features: list = field(default_factory=list)
    entries: list = field(default_factory=list)


class TemporalStream:
    """Rows of a video's frames in, the same rows with the temporal model's predictions out,
    in order. ``push`` takes a frame, its rows (``predict.face_rows``) and the features of
    its faces; a track's run ends when a frame comes without that track's face."""

    def __init__(self, model: TemporalModel):
        self.model = model
        self.runs: dict[int, _Run] = {}
        self.queue: deque = deque()  # [frame, rows, faces not yet predicted]

    def push(self, frame, rows: list[dict], features: list[np.ndarray]):
        entry = [frame, rows, 0]
        present = {row["track"]: (row, f) for row, f in zip([r for r in rows if r["face"]], features)}
        for track in list(self.runs):
            if track not in present or self.runs[track].last + 1 != frame.number:
                run = self.runs.pop(track)
                self._predict(run, len(run.rows))
        length = self.model.length
        for track, (row, f) in present.items():
            run = self.runs.setdefault(track, _Run(frame.number))
            run.last = frame.number
            run.rows.append(row)
            run.features.append(f)
            run.entries.append(entry)
            entry[2] += 1
            if len(run.rows) >= 2 * length:  # the run's end is L or more frames away: its next window is final
                self._predict(run, length)
        self.queue.append(entry)
        return self._ready()

    def flush(self):
        for run in self.runs.values():
            self._predict(run, len(run.rows))
        self.runs.clear()
        return self._ready()

    def _predict(self, run: _Run, k: int) -> None:
        """The first ``k`` frames of ``run`` (a window, or the run's rest), predicted and dropped."""
        preds = self.model.segment(np.stack(run.features[:k]))
        for i, (row, entry) in enumerate(zip(run.rows[:k], run.entries[:k])):
            fill(row, preds, i, self.model.thresholds, self.model.schema)
            entry[2] -= 1
        del run.rows[:k], run.features[:k], run.entries[:k]

    def _ready(self) -> list:
        return pop_ready(self.queue)
