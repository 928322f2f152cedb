"""The ensemble bundle on new videos and images (``mtaffect predict``): faces found and
aligned exactly as the extraction does, the members averaged as in the ``ensemble``
stage, one table row per frame (per face with several faces), streamed to disk.

Columns (README, "Predicting on new videos and images"): ``frame``, ``timestamp``,
``file``, ``face``, ``track``, ``box_x1`` ... ``box_y2``, ``det_score``, ``p_AU1`` ...
(a probability per AU of the bundle's label schema), ``AU1`` ... (0/1), ``p_Neutral`` ...
(a probability per class), ``expression``, ``valence``, ``arousal``, ``unc_AU``,
``unc_EXPR``, ``unc_valence``, ``unc_arousal``.
A frame without a face is a row with ``face`` false and the rest empty, never a missing row.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from pipeline.extraction.align import align_face, aligned_crop
from pipeline.core.images import centre_view, to_tensor
from pipeline.inference.ensemble import load_bundle
from pipeline.inference.outputs import combine
from pipeline.core.errors import CheckpointError
from pipeline.extraction.faces import Detection
from pipeline.inference.outputs import outputs
from pipeline.core.labels import va_centres
from pipeline.core.schema import EXPRESSIONS, LabelSchema, prob_column
from pipeline.predict.media import Frame
from pipeline.training.models import recorded_schema

BOX = ("box_x1", "box_y1", "box_x2", "box_y2")
#: The column a table of a damaged video carries in every row: how many frames were lost
#: (its frame numbers may run early after them).
LOST_COLUMN = "frames_not_decoded"


def smoothed_columns(schema: LabelSchema) -> list[str]:
    """What ``--smooth`` averages over time: the probabilities and the VA values."""
    return schema.au_probs + schema.expr_probs + ["valence", "arousal"]


def table_schema(schema: LabelSchema) -> pa.Schema:
    """The columns of a predict table for a bundle of label ``schema``."""
    return pa.schema(
        [("frame", pa.int64()), ("timestamp", pa.float64()), ("file", pa.string()), ("face", pa.bool_()),
         ("track", pa.int32()), *[(k, pa.float32()) for k in BOX], ("det_score", pa.float32())]
        + [(p, pa.float32()) for p in schema.au_probs] + [(a, pa.int8()) for a in schema.aus]
        + [(p, pa.float32()) for p in schema.expr_probs] + [("expression", pa.string())]
        + [(k, pa.float32()) for k in ("valence", "arousal", "unc_AU", "unc_EXPR", "unc_valence", "unc_arousal")])
#: what the extraction uses when a bundle does not say (the params.yaml defaults)
DETECTION_DEFAULTS = {"detect_size": 320, "min_face": 40.0, "min_prob": 0.9, "block": 16}


def lost_frames(table: Path) -> int:
    """The frames not decoded that a predict table says it misses (0 without the column)."""
    if table.suffix == ".parquet":
        if LOST_COLUMN not in pq.read_schema(table).names:
            return 0
        first = pq.ParquetFile(table).read_row_group(0, columns=[LOST_COLUMN]).column(0)
        return int(first[0].as_py() or 0) if len(first) else 0
    with open(table, newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        names, first = next(rows, []), next(rows, [])
    if LOST_COLUMN not in names or len(first) != len(names):
        return 0
    value = first[names.index(LOST_COLUMN)]
    return int(value) if value.isdigit() else 0


def table_labels(table: Path) -> tuple[list[str], list[str]]:
    """The AUs (decision columns ``AU<n>``) and expression classes (``p_<class>`` columns;
    the 7 basic ones without them) of a predict table: its bundle's label schema."""
    if table.suffix == ".parquet":
        names = pq.read_schema(table).names
    else:
        with open(table, newline="", encoding="utf-8") as f:
            names = next(csv.reader(f), [])  # as written: pandas would rename a second AU1 to AU1.1
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"column {twice[0]} twice in its header: which one is meant cannot be told (edited or joined?)")
    if len(names) == 1 and (sep := next((s for s in ";\t|" if s in names[0]), None)):
        raise ValueError(f"its columns are separated by {sep!r}, not commas (saved by a spreadsheet?): save it "
                         "comma-separated")
    aus = [c for c in names if re.fullmatch(r"AU\d+", c)]
    return aus, [e for e in EXPRESSIONS if prob_column(e) in names] or list(EXPRESSIONS[:7])


def alignment_of(bundle: dict) -> tuple[int, float, dict]:
    """A frame bundle's crop size, template scale and MTCNN settings (those of its extraction)."""
    alignment = bundle["alignment"]
    return (int(alignment["size"]), float(alignment["template_scale"]),
            {**DETECTION_DEFAULTS, **alignment.get("detection", {})})


class Ensemble:
    """A bundle's members on aligned faces: mean probabilities, VA and their spread."""

    def __init__(self, path: str | Path, device: torch.device):
        members, info = load_bundle(path, device)  # any schema: its columns follow
        self.schema = recorded_schema(info["schema"], path, "model bundle")
        self.device = device
        self.members = [(model, torch.as_tensor(va_centres(c), dtype=torch.float32, device=device))
                        for _, model, c in members]
        self.thresholds = np.asarray(info["au_thresholds"], dtype=np.float32)
        self.size, self.scale, self.detection = alignment_of(info)

    @torch.no_grad()
    def __call__(self, faces: np.ndarray) -> dict[str, np.ndarray]:
        x = centre_view(to_tensor(faces)).to(self.device, memory_format=torch.channels_last)
        preds = [{k: v.numpy() for k, v in outputs(model, x, c).items()} for model, c in self.members]
        return combine(preds)


@dataclass
class Found:
    """One face of a frame (box, MTCNN probability, five points) and its track id."""

    track: int
    face: Detection


def face_rows(frames: list[Frame], faces: list[list[Found]], size: int, scale: float) -> tuple[list[list[dict]], np.ndarray]:
    """The table rows of each frame (one per face, or one without a face), predictions not
    yet filled in, and the faces aligned [n_faces, size, size, 3] in the rows' order."""
    flat = [(i, f) for i, found in enumerate(faces) for f in found]
    aligned = np.stack([align_face(frames[i].image, f.face.landmarks, size, scale) if f.face.landmarks is not None
                        else aligned_crop(frames[i].image, size)[0] for i, f in flat]) if flat \
        else np.zeros((0, size, size, 3), np.uint8)  # (no landmarks: the image is an aligned crop itself)
    result = [[] for _ in frames]
    for i, f in flat:
        result[i].append({"face": True, "track": f.track, "det_score": f.face.prob, **dict(zip(BOX, map(float, f.face.box)))})
    for frame, rows in zip(frames, result):
        if not rows:
            rows.append({"face": False, "track": -1})
        for row in rows:
            row.update(frame=frame.number, timestamp=None if np.isnan(frame.time) else frame.time, file=frame.file)
    return result, aligned


def fill(row: dict, preds: dict[str, np.ndarray], k: int, thresholds: np.ndarray, schema: LabelSchema) -> dict:
    """``row`` with the ``k``-th face's predictions (``ensemble.combine``'s output) and decisions.
    Outputs that are not numbers stop the run: written down, they would read as a confident
    "Neutral" with every AU off."""
    if not all(np.isfinite(v[k]).all() for v in preds.values()):
        raise CheckpointError(f"frame {row['frame']}: the model's outputs are not finite numbers (a damaged bundle, "
                              "or a face it cannot handle); nothing is reported for this input")
    row.update(zip(schema.au_probs, map(float, preds["AU"][k])))
    row.update(zip(schema.expr_probs, map(float, preds["EXPR"][k])))
    row.update(valence=float(preds["VA"][k, 0]), arousal=float(preds["VA"][k, 1]),
               unc_AU=float(preds["uncertainty_AU"][k]), unc_EXPR=float(preds["uncertainty_EXPR"][k]),
               unc_valence=float(preds["uncertainty_VA"][k, 0]), unc_arousal=float(preds["uncertainty_VA"][k, 1]))
    return decide(row, thresholds, schema)


def rows_for(frames: list[Frame], faces: list[list[Found]], model: Ensemble) -> list[list[dict]]:
    """The table rows of each frame, with the frame ensemble's predictions."""
    rows, aligned = face_rows(frames, faces, model.size, model.scale)
    if len(aligned):
        preds = model(aligned)
        for k, row in enumerate(r for frame_rows in rows for r in frame_rows if r["face"]):
            fill(row, preds, k, model.thresholds, model.schema)
    return rows


def decide(row: dict, thresholds: np.ndarray, schema: LabelSchema) -> dict:
    """AU decisions (probability >= the bundle's threshold) and the expression's name."""
    row["face"] = True
    for a, t in zip(schema.aus, thresholds):
        row[a] = int(row[prob_column(a)] >= t)
    row["expression"] = max(schema.expressions, key=lambda e: row[prob_column(e)])
    return row


def batched(iterable, n: int):
    it = iter(iterable)
    while block := list(islice(it, n)):
        yield block
