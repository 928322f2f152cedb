"""Extraction of one job (a video, clip or image batch) in a worker process: decode, find
and align every face, and stream the faces to a raw file the parent copies into shards.

Every worker runs torch with one thread whatever the worker count, so MTCNN's results do
not depend on threading and 1 and 2 workers write the same bytes.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pipeline.extraction import align
from pipeline.extraction import faces as F
from pipeline.extraction import tracking as T
from pipeline.core.config import ExtractParams
from pipeline.core.fileio import HashingReader
from pipeline.core.labels import AU_UNKNOWN, EXPR_UNKNOWN
from pipeline.extraction.sources.base import Job


@dataclass
class JobResult:
    """What a worker sends back: the kept rows, where their faces are, what went wrong."""

    index: int
    keep: np.ndarray  # bool [n]: rows of the job that got a face
    det_score: np.ndarray  # float32 [n]
    landmarks: np.ndarray  # float32 [n, 5, 2] in source-image pixels (NaN when unknown)
    timestamp: np.ndarray  # float64 [n]: the decoder's time of each video frame, seconds (NaN: not a video)
    faces_path: str  # raw uint8 faces of the kept rows, in row order
    frames_read: int = 0
    frames_without_face: int = 0
    labels_without_frame: int = 0
    rejected: list = field(default_factory=list)  # (where, reason, line, n)
    track: dict = field(default_factory=dict)
    hashes: dict = field(default_factory=dict)  # SHA-256 of every file read, as read
    notes: list = field(default_factory=list)  # what the user should know, though nothing was skipped


class Worker:
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


def read_rgb(path: str) -> tuple[np.ndarray | None, str | None, str | None]:
    """An image file as RGB, or (None, why not), and the SHA-256 of the bytes read (None if
    unreadable). OpenCV 5 refuses a truncated JPEG or PNG outright (tested), so an
    interrupted copy is a skip, never a face with grey rows."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        return None, f"unreadable image ({e.strerror})", None
    sha = hashlib.sha256(data).hexdigest()
    if not data:
        return None, "empty image file (0 bytes)", sha
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return None, "unreadable or truncated image", sha
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), None, sha


def box_inside(box, shape, least: float = 0.5) -> bool:
    """Whether at least ``least`` of a face box's area lies inside an image of ``shape``."""
    x1, y1, x2, y2 = (float(v) for v in box)
    h, w = shape[:2]
    inside = max(0.0, min(x2, w) - max(x1, 0.0)) * max(0.0, min(y2, h) - max(y1, 0.0))
    return inside >= least * (x2 - x1) * (y2 - y1)


def process_job(index: int, job: Job, params: ExtractParams, get_detector, tmpdir: str) -> JobResult:
    """Find, align and stream out the faces of one job."""
    n = len(job)
    res = JobResult(index=index, keep=np.zeros(n, bool), det_score=np.full(n, np.nan, np.float32),
                    landmarks=np.full((n, 5, 2), np.nan, np.float32), timestamp=np.full(n, np.nan),
                    faces_path=os.path.join(tmpdir, f"job-{index:07d}.raw"))
    size, scale = params.face_size, params.template_scale
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
            cache: dict[str, tuple] = {}
            for row in range(n):
                path = job.images[row]
                if path not in cache:  # ExpW: several faces share one image
                    cache = {path: read_rgb(path)}
                    res.frames_read += 1
                image, why, sha = cache[path]
                if sha is not None:
                    res.hashes[path] = sha
                if image is None:
                    res.rejected.append((path, why, None, 1))
                    continue
                if job.mode == "aligned":
                    h, w = image.shape[:2]
                    if not (size / 2 <= min(h, w) and max(h, w) <= 4 * size and max(h, w) <= 1.25 * min(h, w)):
                        res.rejected.append((path, f"a {w}x{h} crop is not an aligned face (about {size}x{size} "
                                             "expected)", None, 1))
                        continue
                    if image.shape[:2] != (size, size):
                        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
                    emit(row, image)
                elif job.mode == "landmarks":
                    try:
                        face = align.align_face(image, job.landmarks[row], size, scale)
                    except (ValueError, np.linalg.LinAlgError) as e:
                        res.rejected.append((path, f"its landmarks give no alignment ({e})", None, 1))
                        continue
                    emit(row, face, job.landmarks[row])
                else:  # boxes: refine landmarks inside the given box, else derive them from it
                    box = job.boxes[row]
                    if not box_inside(box, image.shape):
                        res.rejected.append((path, f"face box lies mostly outside the {image.shape[1]}x"
                                             f"{image.shape[0]} image", None, 1))
                        continue
                    points = T.refine_in_box(image, box, get_detector())
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
        emit(row, align.align_face(frame, det.landmarks, params.face_size, params.template_scale), det.landmarks, det.prob)


def _detect_video(job: Job, params: ExtractParams, detector, res: JobResult, emit) -> None:
    """Decode once, in order, hashing the file as the decoder reads it; detect (tracking
    the face) only on the wanted frames, each timed by the decoder's own time stamp."""
    try:
        reader = HashingReader(job.video_path)
    except OSError as e:
        res.rejected.append((job.video_path, f"cannot open video ({e.strerror})", None, len(job)))
        res.labels_without_frame += len(job)
        return
    try:
        cap = cv2.VideoCapture(reader, cv2.CAP_FFMPEG, [])
        try:
            if not cap.isOpened():
                res.rejected.append((job.video_path, "cannot open video", None, len(job)))
                res.labels_without_frame += len(job)
                return
            _decode(cap, job, params, detector, res, emit)
        finally:
            cap.release()
    finally:
        res.hashes[job.video_path] = reader.sha256()


def _decode(cap, job: Job, params: ExtractParams, detector, res: JobResult, emit) -> None:
    tracker = (T.FaceTracker(detector, block_size=params.batch, min_prob=params.min_prob, side=job.side)
               if params.track else None)
    wanted = job.frames
    row, frame_no, last_ms = 0, 0, -np.inf
    block_rows, block_frames = [], []
    listed = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    disordered = None  # the first frame whose time stamp is not after the one before

    def flush():
        if not block_rows:
            return
        dets = tracker.track(block_frames) if tracker else [
            f.pick(None, params.min_prob, job.side) for f in detector.detect(block_frames)]
        _emit_detections(block_rows, block_frames, dets, params, res, emit)
        block_rows.clear()
        block_frames.clear()

    def timed() -> None:
        nonlocal last_ms, disordered
        ms = cap.get(cv2.CAP_PROP_POS_MSEC)
        if ms <= last_ms and disordered is None:
            disordered = frame_no
        last_ms = ms

    while row < len(wanted):
        if wanted[row] != frame_no:  # not wanted: skip without decoding the picture
            if not cap.grab():
                break
            timed()
            frame_no += 1
            continue
        ok, bgr = cap.read()
        if not ok:
            break
        timed()
        res.frames_read += 1
        res.timestamp[row] = last_ms / 1000
        block_rows.append(row)
        block_frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        if len(block_rows) == params.batch:
            flush()
        row += 1
        frame_no += 1
    flush()
    decoded = frame_no
    while listed > 0 and cap.grab():  # count the frames after the last label too
        timed()
        decoded += 1
    if tracker is not None:
        res.track = asdict(tracker.stats)
    labelled = (job.au != AU_UNKNOWN).any() or (job.expr != EXPR_UNKNOWN).any() or not np.isnan(job.va).all()
    if labelled and (disordered is not None or (listed > 0 and decoded != listed)):
        # The decoder's frame order is the labels' only when every frame the file lists
        # came out, in time order: a damaged stretch makes the decoder skip frames without
        # an error, and from there on the labels cannot be placed exactly. Nothing of the
        # video is kept (never a label on a neighbour's face). A variable frame rate is no
        # such sign: frames are counted, never placed by time x average rate.
        why = (f"frame {disordered} is not later than the frame before it" if disordered is not None else
               f"decoded {decoded} of the {listed} frames the file lists")
        res.keep[:] = False
        res.frames_without_face = 0
        res.rejected.append((job.video_path, f"{why}: frames are missing or damaged, the labels cannot be placed "
                             "exactly; video skipped", None, len(job)))
        return
    if not labelled and listed > 0 and decoded < listed:
        res.notes.append(f"{job.video_path}: decoded {decoded} of the {listed} frames the file lists "
                         "(truncated or damaged?): faces of those only")
    if row < len(wanted):
        # The labels go on past the video's end (or the file is truncated): counted, never
        # shifted onto other frames.
        missing = len(wanted) - row
        res.labels_without_frame += missing
        res.rejected.append((job.video_path, f"the video has {frame_no} frames but labels for {int(wanted[-1]) + 1}",
                             None, missing))


def _detect_images(job: Job, params: ExtractParams, detector, res: JobResult, emit) -> None:
    """Unrelated images (a folder): the most confident face of each, in batches."""
    for start in range(0, len(job), params.batch):
        rows, frames = [], []
        for row in range(start, min(start + params.batch, len(job))):
            image, why, sha = read_rgb(job.images[row])
            res.frames_read += 1
            if sha is not None:
                res.hashes[job.images[row]] = sha
            if image is None:
                res.rejected.append((job.images[row], why, None, 1))
                continue
            rows.append(row)
            frames.append(image)
        dets = [f.pick(None, params.min_prob) for f in detector.detect(frames)] if frames else []
        _emit_detections(rows, frames, dets, params, res, emit)
