"""One runner per source: render a job's frames and write them in the source's format,
with what its annotation files say and every face's ground-truth rows.

A runner takes a job of the plan, the configuration and the source's output folder and
returns its rows and counts; ``run_job`` is what a worker process calls.
"""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from pipeline.extraction.align import align_face
from synthetic.params import SynthParams
from pipeline.core.labels import DISFA_AUS, TASKS, disfa_to_au

from . import writers
from .annotation import annotated_va, concat_rows, face_rows, invalid_runs, noisy_binary, noisy_classes, true_au
from .camera import Look, develop, source_look, vignette_mask
from .episodes import Track, expression_shares, person_track
from .eras import ERAS, Era
from .geometry import FaceGeometry
from .landmarks import AU_INDEX
from .identity import sample_identity
from .nuisances import grain_bank, nuisances, occlude
from .photos import run_affectnet, run_expw
from .planning import Job, job_rng
from .render import render_face
from .scene import POSE_RANGES, background, pose_track


def _backdrop(rng, h: int, w: int, look: Look) -> np.ndarray:
    """The still background of a video, vignetted (uint8 [h, w, 3])."""
    bg = background(rng, h, w, look.background)
    return (bg * vignette_mask(h, w, look.vignette)).astype(np.uint8)


# --- Aff-Wild2 -------------------------------------------------------------------------------

AFFWILD2_CROP = 112
CROP_QUALITY = 90
MTL_EVERY = 5  #: s-Aff-Wild2 keeps every 5th frame of a video (its images are sampled, not whole videos)
MTL_TASK_SHARE = 0.75  #: ... and labels each task of an image with this probability, on its own


def run_affwild2(job: Job, cfg: SynthParams, root: Path) -> dict:
    """An Aff-Wild2 video: the video, the organisers' crops of every frame with a face, each
    task's annotation files. For s-Aff-Wild2 (``job.source``), no video: the crops of every
    :data:`MTL_EVERY`-th frame, and its rows in the multi-task file (``mtl_lines``)."""
    mtl = job.source == "saffwild2"
    rng = job_rng(cfg, job)
    n, w, h = job.frames, job.width, job.height
    look = source_look("affwild2", cfg.domain_shift)
    bg = _backdrop(rng, h, w, look)
    era = ERAS[cfg.label_schema]
    shares = expression_shares("affwild2", cfg.imbalance, era)
    light = np.array([rng.uniform(-1, 1), rng.uniform(-1, -0.2)])
    people = []
    for p in range(job.people):
        ident = sample_identity(rng, cfg.identity_spread)
        track = person_track(rng, n, shares, cfg.spontaneous_au, forced=job.forced[p], era=era)
        if job.people == 2:
            xlim = (0, w / 2) if p == 0 else (w / 2, w)
            poses = pose_track(rng, n, h, w, POSE_RANGES["affwild2"], cfg.difficulty,
                               centre=((xlim[0] + xlim[1]) / 2, h * 0.47), xlim=xlim, size_scale=0.9)
        else:
            poses = pose_track(rng, n, h, w, POSE_RANGES["affwild2"], cfg.difficulty)
        people.append((ident, track, poses))
    nu = nuisances(rng, n, job.people, cfg.difficulty, look, invisible_rate=0.025, occluder_rate=0.06)
    grain = grain_bank(cfg.seed, job.source, h, w, look.grain * cfg.difficulty)

    stems = [job.name] if job.people == 1 else [f"{job.name}_left", f"{job.name}_right"]
    crops = [root / "cropped_aligned" / s for s in stems]
    for c in crops:
        c.mkdir(parents=True, exist_ok=True)
    video = None if mtl else writers.VideoFile(root / "videos" / f"{job.name}.avi", w, h, look.jpeg)
    sampled = np.arange(n) % MTL_EVERY == 0 if mtl else np.ones(n, bool)
    geoms: list[list[FaceGeometry]] = [[] for _ in range(job.people)]
    nbytes = 0
    for t in range(n):
        img = bg.copy()
        for p, (ident, track, poses) in enumerate(people):
            g = render_face(img, ident, track.aus[t], poses[t], light=light)
            occlude(img, g, nu.occ_kind[p, t], nu.occ_cover[p, t], nu.occ_seed[p, t], ident.skin)
            geoms[p].append(g)
        frame = develop(img, look, rng, nu.brightness[t], nu.blur[t], nu.motion[t], grain)
        if video is not None:
            video.write(frame)
        for p in range(job.people):
            if nu.occ_kind[p, t] == "full" or not sampled[t]:
                continue  # no face: no crop, as in the organisers' release
            g = geoms[p][t]
            jitter = rng.normal(0, 0.012 * g.pose.size * cfg.difficulty, (5, 2))
            crop = align_face(frame, g.landmarks5 + jitter, size=AFFWILD2_CROP)
            nbytes += writers.write_jpeg(crops[p] / f"{t + 1:05d}.jpg", crop, CROP_QUALITY)
    if video is not None:
        nbytes += video.close()

    parts, lines = [], []
    train = job.split == "train"
    noise = cfg.label_noise if train else 0.0
    for p, (_ident, track, _poses) in enumerate(people):
        invisible = nu.occ_kind[p] == "full"
        # Annotators skipped about half of the faceless stretches (each stretch has its own
        # occluder seed: its parity decides), and in training a run here and there.
        skipped = invisible & (nu.occ_seed[p] % 2 == 0)
        labelled, lab_au, lab_expr, lab_va = _affwild2_labels(rng, job, track, skipped, noise, train, era)
        if mtl:  # the sampled frames with a face, each in the multi-task file
            kept = np.flatnonzero(sampled & ~invisible)
            lines.extend(_mtl_lines(rng, stems[p], kept, labelled, lab_au, lab_expr, lab_va))
        else:  # every frame, in the files of the video's tasks
            kept = np.arange(n)
            for task in job.tasks:
                values = {"AU": lab_au, "EXPR": lab_expr, "VA": lab_va}[task]
                nbytes += writers.write_affwild2_annotation(root, task, job.split, stems[p], values, era)
            for task in TASKS:  # invalid markers become "unknown" in the unified columns
                if task not in job.tasks:
                    labelled[task][:] = False
        u_au = _truth_columns(np.where(labelled["AU"][:, None], lab_au, -1), _file_aus(era), era)
        u_expr = np.where(labelled["EXPR"], lab_expr, -1).astype(np.int8)
        u_va = np.where(labelled["VA"][:, None], lab_va, np.nan).astype(np.float32)
        blur = nu.blur + nu.motion
        parts.append(face_rows(job.source, stems[p], stems[p], job.split, kept, track.take(kept),
                               [geoms[p][t] for t in kept], {t: v[kept] for t, v in labelled.items()}, u_au[kept],
                               u_expr[kept], u_va[kept], ~invisible[kept], nu.occ_cover[p][kept], blur[kept], era))
    faces = sum(len(part["frame"]) for part in parts)
    return {"rows": concat_rows(parts), "frames": n, "faces": faces, "bytes": nbytes, "lines": {job.split: lines}}


def _mtl_lines(rng, video: str, kept: np.ndarray, labelled: dict, au, expr, va) -> list[str]:
    """s-Aff-Wild2's rows of one video's sampled frames; each task of an image is labelled
    with probability MTL_TASK_SHARE (``labelled`` is narrowed to match)."""
    for task in TASKS:
        labelled[task] &= rng.random(len(expr)) < MTL_TASK_SHARE
    return [writers.mtl_line(video, int(t), va[t] if labelled["VA"][t] else (np.nan, np.nan),
                             expr[t] if labelled["EXPR"][t] else -1, au[t] if labelled["AU"][t] else -np.ones(au.shape[1]))
            for t in kept]


def _file_aus(era: Era) -> tuple[int, ...]:
    return tuple(int(a[2:]) for a in era.affwild2_aus)


def _truth_columns(lab_au: np.ndarray, numbers, era: Era) -> np.ndarray:
    """A file's AU labels (columns ``numbers``) in the ground truth's columns (``era.truth_aus``):
    an AU the file does not label is unknown (-1)."""
    out = np.full((len(lab_au), len(era.truth_aus)), -1, np.int8)
    for j, au in enumerate(numbers):
        out[:, era.truth_aus.index(au)] = lab_au[:, j]
    return out


def _affwild2_labels(rng, job: Job, track: Track, skipped: np.ndarray, noise: float, train: bool, era: Era):
    """What the annotation files say per frame (invalid markers included), per task."""
    n = len(track.expr)
    labelled = {}
    for task in TASKS:
        bad = skipped | (invalid_runs(rng, n, 0.5) if train else np.zeros(n, bool))
        labelled[task] = ~bad
    au = noisy_binary(rng, true_au(track.aus, _file_aus(era)), noise)
    au[~labelled["AU"]] = -1
    expr = noisy_classes(rng, track.expr, noise, era.n_classes)
    expr[~labelled["EXPR"]] = -1
    va = np.clip(np.round(annotated_va(rng, track, noise), 4), -1, 1)
    va[~labelled["VA"]] = -5
    return labelled, au, expr, va.astype(np.float32)


# --- DISFA -----------------------------------------------------------------------------------

DISFA_SIZE = (320, 240)


def run_disfa(job: Job, cfg: SynthParams, root: Path) -> dict:
    rng = job_rng(cfg, job)
    era = ERAS[cfg.label_schema]
    n = job.frames
    w, h = DISFA_SIZE
    look = source_look("disfa", cfg.domain_shift)
    bg = _backdrop(rng, h, w, look)
    ident = sample_identity(rng, cfg.identity_spread)
    track = person_track(rng, n, expression_shares("disfa", cfg.imbalance, era), cfg.spontaneous_au,
                         forced=job.forced[0], era=era)
    poses = pose_track(rng, n, h, w, POSE_RANGES["disfa"], cfg.difficulty, centre=(w / 2, h * 0.45))
    light = np.array([rng.uniform(-0.3, 0.3), -1.0])
    video = writers.VideoFile(root / "Videos_LeftCamera" / f"LeftVideo{job.name}_comp.avi", w, h, look.jpeg)
    geoms = []
    blur = look.blur * cfg.difficulty
    grain = grain_bank(cfg.seed, job.source, h, w, look.grain * cfg.difficulty)
    for t in range(n):
        img = bg.copy()
        geoms.append(render_face(img, ident, track.aus[t], poses[t], light=light))
        video.write(develop(img, look, rng, 1.0, blur, 0.0, grain))
    nbytes = video.close()

    # Intensity files: the integer part of the drawn intensity (so file >= 2 <=> true AU),
    # one step off with probability label_noise.
    m = job.labelled_frames
    intensities = {}
    for au in DISFA_AUS:
        v = np.floor(track.aus[:m, AU_INDEX[au]]).astype(np.int64)
        hit = rng.random(m) < cfg.label_noise
        v[hit] = np.clip(v[hit] + rng.choice([-1, 1], hit.sum()), 0, 5)
        intensities[au] = v
    nbytes += writers.write_disfa_labels(root, job.name, intensities)
    labelled_au = np.arange(n) < m
    lab_au = np.full((n, len(era.truth_aus)), -1, np.int8)  # AUs DISFA does not label: unknown
    for j, au in enumerate(era.truth_aus):
        if au in intensities:
            lab_au[:m, j] = disfa_to_au(intensities[au])
    labelled = {"AU": labelled_au, "EXPR": np.zeros(n, bool), "VA": np.zeros(n, bool)}
    rows = face_rows("disfa", job.name, job.name, "train", np.arange(n), track, geoms, labelled, lab_au,
                     np.full(n, -1, np.int8), np.full((n, 2), np.nan, np.float32), np.ones(n, bool),
                     np.zeros(n), np.full(n, blur), era)
    return {"rows": rows, "frames": n, "faces": n, "bytes": nbytes}


# --- AFEW-VA ---------------------------------------------------------------------------------

AFEWVA_SIZE = (320, 256)  # 5:4, as the PAL film frames of AFEW-VA
AFEWVA_PNG_LEVEL = 1  # see writers.write_png


def run_afewva(job: Job, cfg: SynthParams, root: Path) -> dict:
    rng = job_rng(cfg, job)
    era = ERAS[cfg.label_schema]
    # Actors recur across clips: their looks come from their own seed.
    ident = sample_identity(np.random.default_rng([cfg.seed, 99, job.actor]), cfg.identity_spread)
    n = job.frames
    w, h = AFEWVA_SIZE
    look = source_look("afewva", cfg.domain_shift)
    bg = _backdrop(rng, h, w, look)
    track = person_track(rng, n, expression_shares("afewva", cfg.imbalance, era), cfg.spontaneous_au,
                         forced=job.forced[0], era=era)
    poses = pose_track(rng, n, h, w, POSE_RANGES["afewva"], cfg.difficulty)
    nu = nuisances(rng, n, 1, cfg.difficulty, look, invisible_rate=0.0, occluder_rate=0.03)
    light = np.array([rng.choice([-1, 1]) * rng.uniform(0.6, 1), rng.uniform(-0.6, 0.2)])  # side light
    grain = grain_bank(cfg.seed, job.source, h, w, look.grain * cfg.difficulty)
    folder = root / job.folder / job.name
    folder.mkdir(parents=True, exist_ok=True)
    geoms, frames_json, nbytes = [], {}, 0
    for t in range(n):
        img = bg.copy()
        g = render_face(img, ident, track.aus[t], poses[t], light=light)
        occlude(img, g, nu.occ_kind[0, t], nu.occ_cover[0, t], nu.occ_seed[0, t], ident.skin)
        geoms.append(g)
        frame = develop(img, look, rng, nu.brightness[t], nu.blur[t], nu.motion[t], grain)
        # The films reached AFEW-VA through lossy video: keep its block artefacts (and the
        # PNGs small: grain that went through no codec inflates them).
        frame = cv2.imdecode(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, look.jpeg])[1], cv2.IMREAD_COLOR)
        nbytes += writers.write_png(folder / f"{t:05d}.png", frame, AFEWVA_PNG_LEVEL)
    # Labels: integers in [-10, 10]; annotators drift smoothly around the truth (training only).
    va_int = np.clip(np.round(annotated_va(rng, track, cfg.label_noise) * 10), -10, 10).astype(np.int64)
    for t in range(n):
        # Annotated landmarks: the drawn points plus a little annotator noise.
        lm = geoms[t].points + rng.normal(0, 0.004 * geoms[t].pose.size, (68, 2))
        frames_json[f"{t:05d}"] = (va_int[t, 0], va_int[t, 1], lm)
    text = writers.afewva_json(f"actor_{job.actor:03d}", job.name, frames_json)
    (folder / f"{job.name}.json").write_text(text)
    nbytes += len(text)
    labelled = {"AU": np.zeros(n, bool), "EXPR": np.zeros(n, bool), "VA": np.ones(n, bool)}
    video = f"{job.folder}_{job.name}"
    rows = face_rows("afewva", video, f"actor_{job.actor:03d}", "train", np.arange(n), track, geoms, labelled,
                     np.full((n, len(era.truth_aus)), -1, np.int8), np.full(n, -1, np.int8),
                     (va_int / 10.0).astype(np.float32), np.ones(n, bool), nu.occ_cover[0], nu.blur + nu.motion, era)
    return {"rows": rows, "frames": n, "faces": n, "bytes": nbytes}


RUNNERS = {"affwild2": run_affwild2, "disfa": run_disfa, "expw": run_expw, "afewva": run_afewva,
           "saffwild2": run_affwild2, "affectnet": run_affectnet}


def run_job(args) -> dict:
    """Render and write one job; returns its ground-truth rows and counts (picklable)."""
    job, cfg, out = args
    t0 = time.perf_counter()
    res = RUNNERS[job.source](job, cfg, Path(out) / job.source)
    res["source"] = job.source
    res["seconds"] = time.perf_counter() - t0  # worker time: frames / seconds = rate per core
    return res
