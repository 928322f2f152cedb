"""Face detection (MTCNN) and the choice of the one face of a frame.

* :class:`FaceDetector` finds every face in a batch of frames (MTCNN from
  facenet-pytorch, whose wheel ships the weights: nothing is downloaded).
* :func:`pick_face` chooses the one face of a video frame.

Following a face through a video and refining a given box are in :mod:`pipeline.extraction.tracking`.

Alignment onto the template and the five points from 68 landmarks or a box are in
:mod:`pipeline.extraction.align` (no torch). Conventions as there: images RGB ``uint8 [H, W, 3]``,
``(x, y)`` pixel coordinates, boxes ``[x1, y1, x2, y2]``, five points left eye, right eye,
nose tip, left and right mouth corner (image left).

Everything runs on the CPU by default and is deterministic: the same frames, sizes,
parameters, thread count and sequence of calls give bit-identical output.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from pipeline.extraction.align import apply_transform

# --- detections -----------------------------------------------------------------------


@dataclass(frozen=True)
class Detection:
    """One face: box [x1, y1, x2, y2], MTCNN probability, five landmarks [5, 2]."""

    box: np.ndarray
    prob: float
    landmarks: np.ndarray


@dataclass(frozen=True)
class FrameFaces:
    """Every face MTCNN found in one frame: boxes [k, 4], probs [k], landmarks [k, 5, 2]
    (float64, full-resolution coordinates; k may be 0)."""

    boxes: np.ndarray
    probs: np.ndarray
    landmarks: np.ndarray

    def __len__(self) -> int:
        return len(self.probs)

    def detection(self, index: int) -> Detection:
        return Detection(self.boxes[index].copy(), float(self.probs[index]),
                         self.landmarks[index].copy())

    def pick(self, previous_box=None, min_prob: float = 0.9, side: str | None = None) -> Detection | None:
        """The one face of this frame (see :func:`pick_face`), or None."""
        index = pick_face(self.boxes, self.probs, previous_box, min_prob, side)
        return None if index is None else self.detection(index)

    def mapped(self, matrix: np.ndarray) -> "FrameFaces":
        """These faces with coordinates passed through the 2x3 affine ``matrix`` (a pure
        scale + translation, such as from a crop or a downscaled frame to the frame)."""
        corners = apply_transform(matrix, self.boxes.reshape(-1, 2, 2)).reshape(-1, 4)
        return FrameFaces(corners, self.probs, apply_transform(matrix, self.landmarks))


NO_FACES = FrameFaces(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))


def box_iou(box, boxes) -> np.ndarray:
    """Intersection over union of one box [4] with boxes [k, 4]; returns [k]."""
    box = np.asarray(box, dtype=np.float64)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = iw * ih
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def pick_face(boxes, probs, previous_box=None, min_prob: float = 0.9, side: str | None = None) -> int | None:
    """Index of the face to keep in a frame, or None when there is no face.

    Without ``previous_box``: the most confident face (first one on a tie), or with
    ``side`` ("left"/"right", for Aff-Wild2's two-person videos ``<name>_left`` and
    ``<name>_right``) the confident face furthest to that side of the image. With it (the
    face of the previous frame): among the faces with prob >= ``min_prob`` (all faces if
    none is that confident), the one that overlaps it most (IoU), or when none overlaps,
    the one whose centre is nearest. Following the same person matters more than the
    score once we know where that person is.
    """
    probs = np.asarray(probs, dtype=np.float64).reshape(-1)
    if len(probs) == 0:
        return None
    if previous_box is None and side is None:
        return int(np.argmax(probs))
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    candidates = np.flatnonzero(probs >= min_prob)
    if len(candidates) == 0:
        candidates = np.arange(len(probs))
    if previous_box is None:
        if side not in ("left", "right"):
            raise ValueError(f"side must be 'left' or 'right', got {side!r}")
        centres_x = boxes[candidates, 0] + boxes[candidates, 2]
        return int(candidates[np.argmin(centres_x) if side == "left" else np.argmax(centres_x)])
    ious = box_iou(previous_box, boxes[candidates])
    if ious.max() > 0:
        return int(candidates[np.argmax(ious)])
    previous_centre = (np.asarray(previous_box[:2], float) + np.asarray(previous_box[2:], float)) / 2
    centres = (boxes[candidates, :2] + boxes[candidates, 2:]) / 2
    return int(candidates[np.argmin(((centres - previous_centre) ** 2).sum(axis=1))])


# --- the detector ---------------------------------------------------------------------


@dataclass
class FaceDetector:
    """MTCNN (facenet-pytorch, bundled weights) for batches of RGB frames.

    ``min_face_size`` is in full-resolution pixels. A frame whose long side exceeds
    ``detect_size`` is shrunk (INTER_AREA) to that long side before detection, and the
    results are mapped back; the smallest face searched at that resolution is never below
    12 px (MTCNN's native window), so heavy shrinking can miss faces smaller than
    ``12 / shrink`` full-resolution pixels: raise ``detect_size`` if you need those.
    ``thresholds`` are MTCNN's per-stage score thresholds (P-, R-, O-net). ``batch_size``
    bounds the frames per forward pass (memory). ``num_threads`` sets torch's
    process-wide intra-op threads when given; None leaves them alone (tests and other
    code in the same process keep theirs). Use 1 per worker and one worker per core: two
    one-thread workers beat one two-thread process, and OpenMP threads that outnumber
    free cores wait for each other (docs/architecture.md, "Measured choices"). Fix the
    thread count too for byte-identical outputs: another count changes the landmarks in
    their last digits; a fixed count repeats bit for bit.
    ``mtcnn_seconds`` and ``mtcnn_images`` count the time spent inside MTCNN and the
    images it saw, so callers can report how much of their time is the detector itself.
    """

    min_face_size: float = 40.0
    detect_size: int = 640
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    factor: float = 0.709
    batch_size: int = 16
    device: str = "cpu"
    num_threads: int | None = None
    mtcnn_seconds: float = field(default=0.0, init=False)
    mtcnn_images: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        from facenet_pytorch import MTCNN  # heavy import, only where detection is used

        if self.num_threads is not None:
            torch.set_num_threads(self.num_threads)
        # keep_all: we choose the face ourselves (pick_face), MTCNN must return them all.
        self.mtcnn = MTCNN(keep_all=True, device=torch.device(self.device),
                           min_face_size=self.min_face_size, thresholds=list(self.thresholds),
                           factor=self.factor)
        self.mtcnn.eval()
        # Channels-last weights make torch's CPU convolutions and, above all, its 3x3
        # max-pooling run on channels-last tensors, the fast path (same landmarks to
        # 1e-3 px; docs/architecture.md, "Measured choices").
        self.mtcnn.to(memory_format=torch.channels_last)

    def detect(self, frames: list[np.ndarray], detect_size: int | None = None) -> list[FrameFaces]:
        """All faces of every frame, in full-resolution coordinates, one FrameFaces per
        frame (empty when there is none). Frames of equal size are batched together;
        frames of different sizes are fine (grouped by size)."""
        detect_size = self.detect_size if detect_size is None else detect_size
        results: list[FrameFaces | None] = [None] * len(frames)
        by_shape: dict[tuple, list[int]] = {}
        for index, frame in enumerate(frames):
            _check_rgb(np.shape(frame), np.asarray(frame).dtype)
            by_shape.setdefault(np.shape(frame), []).append(index)
        for shape, indices in by_shape.items():
            h, w = shape[:2]
            shrink = min(1.0, detect_size / max(h, w))
            small_w, small_h = max(1, int(round(w * shrink))), max(1, int(round(h * shrink)))
            fx, fy = w / small_w, h / small_h
            to_frame = np.array([[fx, 0, 0.5 * fx - 0.5], [0, fy, 0.5 * fy - 0.5]])
            min_face = max(12.0, self.min_face_size / max(fx, fy))
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start:start + self.batch_size]
                batch = np.stack([_shrink(frames[i], (small_w, small_h)) for i in chunk])
                for i, faces in zip(chunk, self.detect_stacked(batch, min_face)):
                    results[i] = faces.mapped(to_frame)
        return results

    def detect_stacked(self, images: np.ndarray, min_face_px: float,
                       thresholds: tuple[float, float, float] | None = None) -> list[FrameFaces]:
        """MTCNN on a stacked uint8 batch [n, h, w, 3] exactly as given (no resizing),
        searching faces of at least ``min_face_px`` pixels, with ``thresholds`` (default:
        the detector's); coordinates are the images'."""
        thresholds = self.thresholds if thresholds is None else thresholds
        images = np.ascontiguousarray(images)
        _check_rgb(images.shape[1:], images.dtype)
        if len(images) == 0 or min(images.shape[1:3]) < min_face_px:
            # MTCNN's pyramid would be empty (and its code fails on that): no face fits.
            return [NO_FACES] * len(images)
        from facenet_pytorch.models.utils.detect_face import detect_face

        started = time.perf_counter()
        with torch.inference_mode():
            batch_boxes, batch_points = detect_face(
                torch.from_numpy(images), min_face_px, self.mtcnn.pnet, self.mtcnn.rnet,
                self.mtcnn.onet, list(thresholds), self.factor, self.mtcnn.device)
        self.mtcnn_seconds += time.perf_counter() - started
        self.mtcnn_images += len(images)
        return [_frame_faces(boxes, points) for boxes, points in zip(batch_boxes, batch_points)]


def _check_rgb(shape, dtype=np.uint8) -> None:
    if len(shape) != 3 or shape[2] != 3 or dtype != np.uint8:
        raise ValueError(f"expected uint8 RGB images [h, w, 3], got {dtype} {tuple(shape)}")


def _shrink(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (frame.shape[1], frame.shape[0]) == size:
        return frame
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def _frame_faces(boxes, points) -> FrameFaces:
    """facenet-pytorch's per-image output ([k, 5] box+score, [k, 5, 2] points; object
    arrays when the batch is ragged) as a FrameFaces sorted by descending probability
    (stable, so ties keep MTCNN's order)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
    if len(boxes) == 0:
        return NO_FACES
    points = np.asarray(points, dtype=np.float64).reshape(-1, 5, 2)
    order = np.argsort(-boxes[:, 4], kind="stable")
    return FrameFaces(boxes[order, :4], boxes[order, 4], points[order])
