"""The runners of the still-photo data sets, ExpW and AffectNet: render a job's images and
write them with their label lines and every face's ground-truth rows (``runners.run_job``
calls them)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.core.labels import UNIFIED_TO_EXPW
from pipeline.extraction.sources.affectnet import NO_FACE, TO_EXPR
from synthetic.params import SynthParams

from . import writers
from .annotation import concat_rows, face_rows, noisy_classes
from .camera import develop, source_look
from .episodes import expression_shares, still_labels
from .eras import ERAS
from .geometry import Pose, face_geometry
from .identity import sample_identity
from .landmarks import DRAWN_AUS
from .nuisances import grain_bank
from .planning import Job, job_rng
from .render import draw_body, render_face
from .scene import POSE_RANGES, background


def _tilt(rng, pr, d: float) -> dict:
    """A still face's roll, yaw and pitch within the source's ranges scaled by difficulty ``d``."""
    return {"roll": float(np.clip(rng.normal(0, pr.roll * d / 2), -pr.roll * d, pr.roll * d)),
            "yaw": float(np.clip(rng.normal(0, pr.yaw * d / 2), -pr.yaw * d, pr.yaw * d)),
            "pitch": float(rng.uniform(-pr.pitch, pr.pitch) * d)}


# --- ExpW ------------------------------------------------------------------------------------

EXPW_SIZES = [(320, 240), (400, 300), (360, 360), (300, 400), (448, 336), (400, 240)]
EXPW_FACES_P = [0.6, 0.3, 0.1]  #: 1, 2 or 3 faces per image
EXPW_QUALITY = 85


def run_expw(job: Job, cfg: SynthParams, root: Path) -> dict:
    rng = job_rng(cfg, job)
    era = ERAS[cfg.label_schema]
    look = source_look("expw", cfg.domain_shift)
    counts = rng.choice(3, size=len(job.images), p=EXPW_FACES_P) + 1
    labels = still_labels(rng, int(counts.sum()), expression_shares("expw", cfg.imbalance, era), cfg.spontaneous_au,
                          forced=job.forced[0], era=era)
    folder = root / "image" / "origin"
    folder.mkdir(parents=True, exist_ok=True)
    pr = POSE_RANGES["expw"]
    d = cfg.difficulty
    lines, parts, nbytes, face = [], [], 0, 0
    big = max(max(wh) for wh in EXPW_SIZES)
    grain = grain_bank(cfg.seed, job.source, big, big, look.grain * d)
    for name, k in zip(job.images, counts):
        w, h = EXPW_SIZES[int(rng.integers(len(EXPW_SIZES)))]
        img = background(rng, h, w, look.background)
        slot = w / k
        geoms, people = [], []
        idx = np.arange(face, face + k)
        face += k
        for j in range(k):
            size = min(rng.uniform(*pr.size), slot / 2.6, h / 3.4)
            cx = slot * (j + 0.5) + rng.uniform(-1, 1) * max(0.0, slot / 2 - size * 1.25)
            cy = rng.uniform(size * 1.4, h - size * 1.5)
            pose = Pose(cx, cy, size, **_tilt(rng, pr, d))
            people.append((sample_identity(rng, cfg.identity_spread), pose))
        # Everyone's shoulders first, then the heads: no body hides another person's face.
        for ident, pose in people:
            draw_body(img, face_geometry(ident, np.zeros(len(DRAWN_AUS)), pose), ident)
        for j, (ident, pose) in enumerate(people):
            geoms.append(render_face(img, ident, labels.aus[idx[j]], pose, body=False,
                                     light=(rng.uniform(-1, 1), rng.uniform(-1, -0.2))))
        frame = develop(img, look, rng, rng.uniform(0.85, 1.15), look.blur * d * rng.uniform(0.5, 1.5), 0.0, grain)
        nbytes += writers.write_jpeg(folder / name, frame, EXPW_QUALITY)
        lab = noisy_classes(rng, labels.expr[idx], cfg.label_noise, len(UNIFIED_TO_EXPW))  # ExpW's 7 classes
        stem = Path(name).stem
        for j in range(k):
            lines.append(writers.expw_line(name, j, geoms[j].box, rng.uniform(30, 99.9), lab[j]))
        labelled = {"AU": np.zeros(k, bool), "EXPR": np.ones(k, bool), "VA": np.zeros(k, bool)}
        # The file holds integer box corners: the ground-truth box is the exact one.
        parts.append(face_rows("expw", stem, stem, "train", np.arange(k), labels.take(idx), geoms, labelled,
                               np.full((k, len(era.truth_aus)), -1, np.int8), lab,
                               np.full((k, 2), np.nan, np.float32), np.ones(k, bool), np.zeros(k),
                               np.full(k, look.blur * d), era))
    return {"rows": concat_rows(parts), "frames": len(job.images), "faces": face, "bytes": nbytes,
            "lines": {"train": lines}}


# --- AffectNet -------------------------------------------------------------------------------

AFFECTNET_SIZES = [(256, 256), (320, 320), (400, 300), (300, 400)]
AFFECTNET_QUALITY = 90
AFFECTNET_VAL_EVERY = 5  #: every 5th image is in validation.csv (same folders, as in the release)
AFFECTNET_UNSURE = 0.02  #: share of images coded None or Uncertain (expression unknown, VA known)
AFFECTNET_NO_FACE = 0.01  #: share coded No-Face (no labels: the reader skips and counts them)
#: AffectNet's code of each class of the frame tables (Other: Contempt).
AFFECTNET_CODES = tuple(TO_EXPR.index(c) for c in range(8))


def run_affectnet(job: Job, cfg: SynthParams, root: Path) -> dict:
    """A batch of AffectNet images: one face each, larger than ExpW's, and their rows of the
    manually annotated file lists (per split)."""
    rng = job_rng(cfg, job)
    era = ERAS[cfg.label_schema]
    look = source_look("expw", cfg.domain_shift)  # web photos, as ExpW's
    n = len(job.images)
    labels = still_labels(rng, n, expression_shares("affectnet", cfg.imbalance, era), cfg.spontaneous_au,
                          forced=job.forced[0], era=era)
    d, pr = cfg.difficulty, POSE_RANGES["expw"]
    big = max(max(wh) for wh in AFFECTNET_SIZES)
    grain = grain_bank(cfg.seed, job.source, big, big, look.grain * d)
    split = np.array(["val" if int(name.rsplit("/", 1)[1][:6]) % AFFECTNET_VAL_EVERY == AFFECTNET_VAL_EVERY - 1
                      else "train" for name in job.images])
    odd = rng.random(n)
    unsure = odd < AFFECTNET_UNSURE
    no_face = (odd >= AFFECTNET_UNSURE) & (odd < AFFECTNET_UNSURE + AFFECTNET_NO_FACE)  # drawn without a face
    lines: dict[str, list[str]] = {"train": [], "val": []}
    geoms, nbytes = [], 0
    for name, aus, empty in zip(job.images, labels.aus, no_face):
        w, h = AFFECTNET_SIZES[int(rng.integers(len(AFFECTNET_SIZES)))]
        img = background(rng, h, w, look.background)
        size = rng.uniform(0.22, 0.3) * min(w, h)
        pose = Pose(w / 2 + rng.uniform(-0.1, 0.1) * w, h * rng.uniform(0.42, 0.5), size, **_tilt(rng, pr, d))
        ident = sample_identity(rng, cfg.identity_spread)
        # No-Face: drawn into a copy, so the image shows none and the random numbers stay in step
        geom = render_face(img if not empty else img.copy(), ident, aus, pose,
                           light=(rng.uniform(-1, 1), rng.uniform(-1, -0.2)))
        geoms.append(geom)
        frame = develop(img, look, rng, rng.uniform(0.85, 1.15), look.blur * d * rng.uniform(0.5, 1.5), 0.0, grain)
        path = root / "Manually_Annotated_Images" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        nbytes += writers.write_jpeg(path, frame, AFFECTNET_QUALITY)
    noise = np.where(split == "train", cfg.label_noise, 0.0)
    expr = np.where(rng.random(n) < noise, noisy_classes(rng, labels.expr, 1.0, era.n_classes), labels.expr)
    va = np.stack([labels.valence, labels.arousal], 1) + rng.normal(0, 1, (n, 2)) * 2 * noise[:, None]
    va = np.clip(va, -1, 1)
    codes = np.array([AFFECTNET_CODES[c] for c in expr])
    codes[unsure] = rng.choice([8, 9], int(unsure.sum()))
    codes[no_face] = NO_FACE
    va[no_face] = np.nan
    for i, name in enumerate(job.images):
        lines[split[i]].append(writers.affectnet_line(name, geoms[i].box, geoms[i].points, codes[i], va[i]))
    lab_expr = np.where(codes < len(AFFECTNET_CODES), expr, -1).astype(np.int8)
    labelled = {"AU": np.zeros(n, bool), "EXPR": lab_expr >= 0, "VA": ~no_face}
    # The reader numbers the images of one split and folder in name order, No-Face ones left
    # out: so does the truth (they show no face).
    folder = job.images[0].split("/")[0]
    parts = []
    for s in ("train", "val"):
        rows = np.flatnonzero((split == s) & ~no_face)
        if len(rows):
            parts.append(face_rows("affectnet", f"{s}-{folder}", f"{s}-{folder}", s, np.arange(len(rows)),
                                   labels.take(rows), [geoms[i] for i in rows],
                                   {t: v[rows] for t, v in labelled.items()},
                                   np.full((len(rows), len(era.truth_aus)), -1, np.int8), lab_expr[rows],
                                   va[rows].astype(np.float32), np.ones(len(rows), bool), np.zeros(len(rows)),
                                   np.full(len(rows), look.blur * d), era))
    return {"rows": concat_rows(parts), "frames": n, "faces": int((~no_face).sum()), "bytes": nbytes, "lines": lines}
