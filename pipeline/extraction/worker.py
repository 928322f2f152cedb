"""Extraction of one job (a video, clip or image batch) in a worker process: decode, find
and align every face, and stream the faces to a raw file the parent copies into shards.

Every worker runs torch with one thread whatever the worker count, so MTCNN's results do
not depend on threading and 1 and 2 workers write the same bytes.
"""
from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pipeline.extraction import align
from pipeline.extraction import faces as F
from pipeline.extraction import tracking as T
from pipeline.extraction.params import ExtractParams
from pipeline.extraction.sources.base import Job
from pipeline.extraction.video import detect_video, emit_detections


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
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as e:  # OpenCV checks the size in the header, before decoding a pixel
        if "CV_IO_MAX_IMAGE_PIXELS" not in str(e):
            return None, f"unreadable image (OpenCV: {str(e).strip().splitlines()[-1][:120]})", sha
        return None, f"image too large ({pixel_size(data)} pixels; OpenCV reads at most 2^30)", sha
    if image is None:
        return None, "unreadable or truncated image", sha
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), None, sha


def pixel_size(data: bytes) -> str:
    """"W x H" of an image from its header alone (PIL reads no pixel to know it), or "over 2^30"."""
    from PIL import Image

    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # its bomb check would refuse to say
    try:
        with Image.open(io.BytesIO(data)) as image:
            return f"{image.size[0]} x {image.size[1]}"
    except Exception:  # a format PIL does not know: OpenCV's refusal is enough
        return "over 2^30"
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def box_inside(box, shape, least: float = 0.5) -> bool:
    """Whether at least ``least`` of a face box's area lies inside an image of ``shape``."""
    x1, y1, x2, y2 = (float(v) for v in box)
    h, w = shape[:2]
    inside = max(0.0, min(x2, w) - max(x1, 0.0)) * max(0.0, min(y2, h) - max(y1, 0.0))
    return inside >= least * (x2 - x1) * (y2 - y1)


def landmarks_problem(points, shape) -> str | None:
    """Why five landmarks cannot be this image's face, or None. A point outside the image
    (landmarks shifted, or an image resized after they were taken) or a mirrored face
    (x and y swapped: the eyes and the mouth then turn the wrong way round) would give an
    all-black or a wrong face under a right label."""
    pts = np.asarray(points, dtype=np.float64)
    h, w = shape[:2]
    if pts.shape != (5, 2) or not np.isfinite(pts).all():
        return "its landmarks are not five finite points"
    # pixel (i, j) has its centre at (j, i): the image spans -0.5 .. w - 0.5
    if ((pts < -0.5) | (pts > np.array([w, h]) - 0.5)).any():
        return f"landmarks lie outside the {w}x{h} image"
    eyes = pts[1] - pts[0]
    down = (pts[3] + pts[4]) / 2 - (pts[0] + pts[1]) / 2
    if np.hypot(*eyes) < 1:
        return "its eyes lie less than 1 pixel apart"
    if eyes[0] * down[1] - eyes[1] * down[0] <= 0:  # left eye, right eye, mouth: clockwise in a face
        return "landmarks are mirrored (left and right eye exchanged, or x and y swapped)"
    return None


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
            detect_video(job, params, get_detector(), res, emit)
        elif job.mode == "detect":
            _detect_images(job, params, get_detector(), res, emit)
        else:
            cache: dict[str, tuple] = {}
            failed: set[str] = set()
            for row in range(n):
                path = job.images[row]
                if path not in cache:  # ExpW: several faces share one image
                    cache = {path: read_rgb(path)}
                    res.frames_read += 1
                image, why, sha = cache[path]
                if sha is not None:
                    res.hashes[path] = sha
                if image is None:
                    if path not in failed:  # one line for the image, however many of its faces are labelled
                        failed.add(path)
                        res.rejected.append((path, why, None, sum(p == path for p in job.images)))
                    continue
                if job.mode == "aligned":
                    face, why = align.aligned_crop(image, size)
                    if face is None:
                        res.rejected.append((path, why, None, 1))
                        continue
                    emit(row, face)
                elif job.mode == "landmarks":
                    why = landmarks_problem(job.landmarks[row], image.shape)
                    if why is None and job.boxes is not None and not box_inside(job.boxes[row], image.shape, 1):
                        why = f"its face box lies outside the {image.shape[1]}x{image.shape[0]} image"  # another picture's row
                    if why is not None:
                        res.rejected.append((path, why, None, 1))
                        continue
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
                                             f"{image.shape[0]} image (face {job.frames[row]} of "
                                             f"{job.labels_from or 'its labels'})", None, 1))
                        continue
                    points = T.refine_in_box(image, box, get_detector())
                    score = 1.0 if points is not None else np.nan
                    if points is None:
                        points = align.landmarks5_from_box(box)
                    emit(row, align.align_face(image, points, size, scale), points, score)
    return res


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
        emit_detections(rows, frames, dets, params, res, emit)
