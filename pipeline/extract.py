"""Extraction: from a dataset as it ships to aligned 112x112 faces and one frame table.

A reader (``pipeline.sources``) lists jobs (one per video, clip or image); worker
processes find and align the faces of each job and stream them to a temporary raw file;
the parent copies them, in job order, into HDF5 shards and writes the frame table. So the
output depends only on the input, never on the number of workers or on timing, and
memory stays flat however long a video is.

Every worker runs torch with one thread whatever the worker count: MTCNN's results then
do not depend on threading either, and 1 and 2 workers write the same bytes.
"""
from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from pipeline import align
from pipeline import faces as F
from pipeline.config import ExtractParams
from pipeline.labels import AU_NAMES
from pipeline.sources import affwild2, afewva, disfa, expw, unlabelled
from pipeline.errors import DataError
from pipeline.fileio import write_json
from pipeline.sources.base import Job, Problems, SourceRead
from pipeline.store import LANDMARK_COLUMNS, FrameTableWriter, ShardWriter, uid

log = logging.getLogger("mtaffect.extract")

FORMAT_VERSION = 1


def read_source(kind: str, root: str | Path, problems: Problems, params: ExtractParams) -> SourceRead:
    """The jobs of one dataset (``kind``: affwild2, disfa, expw, afewva or input)."""
    if kind == "affwild2":
        return affwild2.read(root, problems, use_cropped_aligned=params.use_cropped_aligned)
    readers = {"disfa": disfa.read, "expw": expw.read, "afewva": afewva.read, "input": unlabelled.read}
    if kind not in readers:
        raise ValueError(f"unknown source kind {kind!r}: use affwild2, disfa, expw, afewva or input")
    return readers[kind](root, problems)


# --- one job, in a worker -------------------------------------------------------------


@dataclass
class JobResult:
    """What a worker sends back: the kept rows, where their faces are, what went wrong."""

    index: int
    keep: np.ndarray  # bool [n]: rows of the job that got a face
    det_score: np.ndarray  # float32 [n]
    landmarks: np.ndarray  # float32 [n, 5, 2] in source-image pixels (NaN when unknown)
    faces_path: str  # raw uint8 faces of the kept rows, in row order
    frames_read: int = 0
    frames_without_face: int = 0
    labels_without_frame: int = 0
    rejected: list = field(default_factory=list)  # (where, reason, line, n)
    track: dict = field(default_factory=dict)


class _Worker:
    """Per-process state: the detector is built once per worker, not once per job."""

    params: ExtractParams
    detector: F.FaceDetector | None = None
    tmpdir: str

    @classmethod
    def init(cls, params: ExtractParams, tmpdir: str) -> None:
        import torch

        torch.set_num_threads(1)
        cv2.setNumThreads(1)
        fix_mmap_threshold()
        cls.params, cls.tmpdir, cls.detector = params, tmpdir, None

    @classmethod
    def get_detector(cls) -> F.FaceDetector:
        if cls.detector is None:
            p = cls.params
            cls.detector = F.FaceDetector(min_face_size=p.min_face, detect_size=p.detect_size,
                                          batch_size=p.batch, num_threads=1)
        return cls.detector

    @classmethod
    def run(cls, item: tuple[int, Job]) -> JobResult:
        index, job = item
        return process_job(index, job, cls.params, cls.get_detector, cls.tmpdir)


def fix_mmap_threshold() -> None:
    """Serve allocations of 64 kB and more by mmap, so freed memory goes back to the OS.

    MTCNN allocates tensors of a different size on every batch. With glibc's default
    (a threshold that rises as large blocks are freed) the heap fragments and a worker's
    memory grows with the length of the video; at 64 kB it stays flat, at the price of a
    slower MTCNN (its large tensors are mapped afresh on every batch). Flat memory is the
    requirement; the figures are in docs/architecture.md, "Measured choices".
    """
    try:
        import ctypes

        M_MMAP_THRESHOLD = -3
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, 64 * 1024)
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


def read_rgb(path: str) -> np.ndarray | None:
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def process_job(index: int, job: Job, params: ExtractParams, get_detector, tmpdir: str) -> JobResult:
    """Find, align and stream out the faces of one job."""
    n = len(job)
    res = JobResult(index=index, keep=np.zeros(n, bool), det_score=np.full(n, np.nan, np.float32),
                    landmarks=np.full((n, 5, 2), np.nan, np.float32),
                    faces_path=os.path.join(tmpdir, f"job-{index:07d}.raw"))
    size, scale = params.size, params.template_scale
    with open(res.faces_path, "wb") as out:

        def emit(row: int, face: np.ndarray, landmarks=None, score=np.nan) -> None:
            out.write(np.ascontiguousarray(face, dtype=np.uint8).tobytes())
            res.keep[row] = True
            res.det_score[row] = score
            if landmarks is not None:
                res.landmarks[row] = landmarks

        if job.mode == "detect" and job.video_path is not None:
            _detect_video(job, params, get_detector(), res, emit)
        elif job.mode == "detect":
            _detect_images(job, params, get_detector(), res, emit)
        else:
            cache: dict[str, np.ndarray | None] = {}
            for row in range(n):
                path = job.images[row]
                if path not in cache:  # ExpW: several faces share one image
                    cache = {path: read_rgb(path)}
                    res.frames_read += 1
                image = cache[path]
                if image is None:
                    res.rejected.append((path, "unreadable image", None, 1))
                    continue
                if job.mode == "aligned":
                    if image.shape[:2] != (size, size):
                        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
                    emit(row, image)
                elif job.mode == "landmarks":
                    emit(row, align.align_face(image, job.landmarks[row], size, scale), job.landmarks[row])
                else:  # boxes: refine landmarks inside the given box, else derive them from it
                    box = job.boxes[row]
                    points = F.refine_in_box(image, box, get_detector())
                    score = 1.0 if points is not None else np.nan
                    if points is None:
                        points = align.landmarks5_from_box(box)
                    emit(row, align.align_face(image, points, size, scale), points, score)
    return res


def _emit_detections(rows, frames, detections, params, res, emit) -> None:
    for row, frame, det in zip(rows, frames, detections):
        if det is None or det.prob < params.min_prob:
            res.frames_without_face += 1
            continue
        emit(row, align.align_face(frame, det.landmarks, params.size, params.template_scale), det.landmarks, det.prob)


def _detect_video(job: Job, params: ExtractParams, detector, res: JobResult, emit) -> None:
    """Decode once, in order; detect (tracking the face) only on the wanted frames."""
    cap = cv2.VideoCapture(job.video_path)
    if not cap.isOpened():
        res.rejected.append((job.video_path, "cannot open video", None, len(job)))
        res.labels_without_frame += len(job)
        return
    tracker = (F.FaceTracker(detector, block_size=params.batch, min_prob=params.min_prob, side=job.side)
               if params.track else None)
    wanted = job.frames
    row, frame_no = 0, 0
    block_rows, block_frames = [], []

    def flush():
        if not block_rows:
            return
        dets = tracker.track(block_frames) if tracker else [
            f.pick(None, params.min_prob, job.side) for f in detector.detect(block_frames)]
        _emit_detections(block_rows, block_frames, dets, params, res, emit)
        block_rows.clear()
        block_frames.clear()

    while row < len(wanted):
        if wanted[row] != frame_no:  # not wanted: skip without decoding the picture
            if not cap.grab():
                break
            frame_no += 1
            continue
        ok, bgr = cap.read()
        if not ok:
            break
        res.frames_read += 1
        block_rows.append(row)
        block_frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        if len(block_rows) == params.batch:
            flush()
        row += 1
        frame_no += 1
    flush()
    cap.release()
    if tracker is not None:
        res.track = asdict(tracker.stats)
    if row < len(wanted):
        # The labels go on past the video's end (or the file is truncated): counted, never
        # shifted onto other frames.
        missing = len(wanted) - row
        res.labels_without_frame += missing
        res.rejected.append((job.video_path, f"video ends at frame {frame_no}; labels go on to frame "
                             f"{int(wanted[-1])}", None, missing))


def _detect_images(job: Job, params: ExtractParams, detector, res: JobResult, emit) -> None:
    """Unrelated images (a folder): the most confident face of each, in batches."""
    for start in range(0, len(job), params.batch):
        rows, frames = [], []
        for row in range(start, min(start + params.batch, len(job))):
            image = read_rgb(job.images[row])
            res.frames_read += 1
            if image is None:
                res.rejected.append((job.images[row], "unreadable image", None, 1))
                continue
            rows.append(row)
            frames.append(image)
        dets = [f.pick(None, params.min_prob) for f in detector.detect(frames)] if frames else []
        _emit_detections(rows, frames, dets, params, res, emit)


# --- the whole source, in the parent --------------------------------------------------


def extract(kind: str, root: str | Path, out: str | Path, params: ExtractParams, name: str | None = None,
            progress: bool = True) -> dict:
    """Extract one source into ``out`` (shards, ``frames.parquet``, ``extract.json``).

    Returns the report written to ``extract.json``. ``name`` is the source name used in
    uids (default: ``kind``).
    """
    name = name or kind
    out = Path(out)
    problems = Problems(on_error=params.on_error)
    started = time.perf_counter()
    source = read_source(kind, root, problems, params)
    jobs = source.jobs
    total = sum(len(j) for j in jobs)
    if total == 0:
        raise DataError(f"{root}: empty source: no labelled frame to extract")

    # Outputs are replaced whole: old shards must not survive next to new ones.
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    tmpdir = tempfile.mkdtemp(prefix=".extract-", dir=out)
    attrs = {
        "size": params.size, "template": json.dumps(align.template_points(params.size, params.template_scale).tolist()),
        "template_scale": params.template_scale, "detector": "facenet-pytorch MTCNN",
        "format_version": FORMAT_VERSION, "source": name,
    }
    shards = ShardWriter(out, shard_faces=params.shard_faces, size=params.size, attrs=attrs)
    table = FrameTableWriter(out / "frames.parquet")
    counts = Counter()
    track = Counter()
    face_bytes = params.size * params.size * 3
    try:
        ctx = mp.get_context("spawn")  # fork after torch/h5py is unsafe; spawn is the same everywhere
        with ctx.Pool(max(1, params.workers), initializer=_Worker.init, initargs=(params, tmpdir)) as pool, \
                tqdm(total=total, desc=f"extract {name}", unit="frame", disable=not progress) as bar:
            for res in pool.imap(_Worker.run, list(enumerate(jobs))):
                job = jobs[res.index]
                for where, reason, line, n in res.rejected:
                    problems.reject(where, reason, line=line, n=n)
                kept = np.flatnonzero(res.keep)
                where = _copy_faces(res.faces_path, len(kept), face_bytes, params.size, shards)
                table.add(_rows(name, job, res, kept, where))
                counts.update(frames_read=res.frames_read, faces_written=len(kept),
                              frames_without_face=res.frames_without_face,
                              labels_without_frame=res.labels_without_frame)
                track.update(res.track)
                bar.update(len(job))
    except BaseException:
        # Nothing half-done survives: a later stage must never take it for an output.
        shards.abort()
        table.abort()
        shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    written = shards.close()
    table.close()

    report = {
        "source": name,
        "kind": kind,
        "root": str(root),
        "jobs": len(jobs),
        "labelled_frames": total,
        "frames_read": counts["frames_read"],
        "faces_written": counts["faces_written"],
        "frames_without_face": counts["frames_without_face"],
        "labels_without_frame": source.labels_without_frame + counts["labels_without_frame"],
        "frames_without_label": source.frames_without_label,
        "invalid_label_rows": source.invalid_label_rows,
        "rows_rejected": problems.as_dict(),
        "tracking": dict(sorted(track.items())),
        "shards": [p.name for p in written],
        "notes": source.notes,
    }
    write_json(out / "extract.json", report)
    seconds = time.perf_counter() - started
    log.info("%s: %d faces from %d labelled frames in %.1f s (%.1f faces/s)", name, report["faces_written"],
             total, seconds, report["faces_written"] / max(seconds, 1e-9))
    return report


def _copy_faces(path: str, count: int, face_bytes: int, size: int, shards: ShardWriter) -> list:
    """Move a job's raw faces into the shards, 256 at a time (memory does not grow with
    the video: a memory map would keep every page it touched resident)."""
    where = []
    with open(path, "rb") as f:
        for start in range(0, count, 256):
            k = min(256, count - start)
            block = np.frombuffer(f.read(k * face_bytes), dtype=np.uint8).reshape(k, size, size, 3)
            where.extend(shards.add(block))
    os.unlink(path)
    return where


def _rows(name: str, job: Job, res: JobResult, kept: np.ndarray, where: list) -> dict:
    """Frame-table columns for the kept rows of one job."""
    frames = job.frames[kept]
    cols = {
        "uid": [uid(name, job.video, f) for f in frames],
        "source": [name] * len(kept),
        "video": [job.video] * len(kept),
        "subject": [job.subject] * len(kept),
        "frame": frames,
        "split": [job.split] * len(kept),
        "expr": job.expr[kept],
        "valence": job.va[kept, 0],
        "arousal": job.va[kept, 1],
        "shard": [w[0] for w in where],
        "row": np.array([w[1] for w in where], dtype=np.int32),
        "det_score": res.det_score[kept],
    }
    for j, au in enumerate(AU_NAMES):
        cols[au] = job.au[kept, j]
    lm = res.landmarks[kept].reshape(len(kept), 10)
    for j, c in enumerate(LANDMARK_COLUMNS):
        cols[c] = lm[:, j]
    return cols
