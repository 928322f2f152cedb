"""What the files say against what is true: the annotators' errors (flipped labels,
skipped runs, drifting valence and arousal) and the ground-truth rows that record both.
"""
from __future__ import annotations

import numpy as np

from pipeline.core.labels import DISFA_INTENSITY_THRESHOLD, TASKS
from pipeline.core.tables import LANDMARK_COLUMNS, uid

from . import writers
from .episodes import Track, smooth_noise
from .eras import Era
from .geometry import FaceGeometry
from .landmarks import AU_INDEX

# --- per-face ground truth ------------------------------------------------------------------


def face_rows(source, video, subject, split, frames, track: Track, geoms: list[FaceGeometry],
              labelled: dict[str, np.ndarray], lab_au, lab_expr, lab_va, visible, occlusion, blur, era: Era) -> dict:
    """Ground-truth columns (``writers.ground_truth_schema(era)``) of one person over ``frames``.

    ``track`` holds the true labels, ``lab_*`` what the files say (AUs: ``era.truth_aus``;
    -1 / NaN where they say nothing), ``geoms`` where the face was drawn.
    """
    n = len(frames)
    c: dict = {
        "uid": [uid(source, video, f) for f in frames],
        "source": [source] * n, "video": [video] * n, "subject": [subject] * n,
        "frame": np.asarray(frames, np.int32), "split": [split] * n,
    }
    for au in era.drawn_aus:
        c[f"AUI{au}"] = track.aus[:, AU_INDEX[au]].astype(np.float32)
    binary = true_au(track.aus, era.truth_aus)
    for j, au in enumerate(era.truth_aus):
        c[f"AU{au}"] = binary[:, j]
    c["expr"] = track.expr.astype(np.int8)
    c["valence"], c["arousal"] = track.valence.astype(np.float32), track.arousal.astype(np.float32)
    c["expr_intensity"] = track.envelope.astype(np.float32)
    for t in TASKS:
        c[f"labelled_{t}"] = np.asarray(labelled[t], bool)
    for j, au in enumerate(era.truth_aus):
        c[f"lab_AU{au}"] = np.asarray(lab_au[:, j], np.int8)
    c["lab_expr"] = np.asarray(lab_expr, np.int8)
    c["lab_valence"] = np.asarray(lab_va[:, 0], np.float32)
    c["lab_arousal"] = np.asarray(lab_va[:, 1], np.float32)
    c["face_visible"] = np.asarray(visible, bool)
    boxes = np.array([g.box for g in geoms], np.float32).reshape(n, 4)
    for j, name in enumerate(writers.BOX_COLUMNS):
        c[name] = boxes[:, j]
    lms = np.array([g.landmarks5 for g in geoms], np.float32).reshape(n, 10)
    for j, name in enumerate(LANDMARK_COLUMNS):
        c[name] = lms[:, j]
    c["yaw"] = np.array([g.pose.yaw for g in geoms], np.float32)
    c["roll"] = np.array([g.pose.roll for g in geoms], np.float32)
    c["face_px"] = np.array([g.box[2] - g.box[0] for g in geoms], np.float32)
    c["occlusion"] = np.asarray(occlusion, np.float32)
    c["blur"] = np.asarray(blur, np.float32)
    return c


def true_au(aus: np.ndarray, numbers) -> np.ndarray:
    """The binary AUs ``numbers`` (int8) from intensities over DRAWN_AUS: on from the
    intensity at which DISFA's labels count an AU as on (so its files binarise to the truth)."""
    idx = [AU_INDEX[a] for a in numbers]
    return (np.asarray(aus)[:, idx] >= DISFA_INTENSITY_THRESHOLD).astype(np.int8)


def concat_rows(parts: list[dict]) -> dict:
    out = {}
    for k in parts[0]:
        vals = [p[k] for p in parts]
        out[k] = sum(vals, []) if isinstance(vals[0], list) else np.concatenate(vals)
    return out


# --- label noise and invalid rows ------------------------------------------------------------


def noisy_classes(rng, expr: np.ndarray, p: float, n_classes: int) -> np.ndarray:
    """Each label replaced by a different random class of ``n_classes`` with probability ``p``."""
    out = expr.astype(np.int8).copy()
    hit = rng.random(len(out)) < p
    shift = rng.integers(1, n_classes, len(out))
    out[hit] = ((out[hit].astype(np.int64) + shift[hit]) % n_classes).astype(np.int8)
    return out


def noisy_binary(rng, au: np.ndarray, p: float) -> np.ndarray:
    out = au.astype(np.int8).copy()
    hit = rng.random(out.shape) < p
    out[hit] = 1 - out[hit]
    return out


def invalid_runs(rng, n: int, p_run: float, length=(3, 12)) -> np.ndarray:
    """A run of frames the annotators skipped (with probability ``p_run``)."""
    bad = np.zeros(n, bool)
    if rng.random() < p_run and n > length[1]:
        ln = int(rng.integers(length[0], length[1] + 1))
        s = int(rng.integers(0, n - ln))
        bad[s:s + ln] = True
    return bad


def annotated_va(rng, track: Track, label_noise: float) -> np.ndarray:
    """Valence and arousal (float64 [n, 2]) as annotators give them: the truth plus a drift
    of sd 2 x ``label_noise`` (annotator disagreement on VA is slow and smooth, not
    per-frame jitter)."""
    va = np.stack([track.valence, track.arousal], 1).astype(np.float64)
    if label_noise > 0:
        n, drift = len(va), 2 * label_noise
        va += np.stack([smooth_noise(rng, n, drift, 15), smooth_noise(rng, n, drift, 15)], 1)
    return va
