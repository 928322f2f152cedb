"""Face detection (MTCNN) and per-video tracking.

What the extraction stage calls:

* :class:`FaceDetector` finds every face in a batch of frames (MTCNN from
  facenet-pytorch, whose wheel ships the weights: nothing is downloaded).
* :func:`pick_face` chooses the one face of a video frame.
* :class:`FaceTracker` follows that face through a video, running MTCNN on a small crop
  around the last known face instead of the whole frame (several times cheaper:
  ``benchmarks/bench_faces.py``).
* :func:`refine_in_box` finds the five points of a face in a given box (ExpW).

Alignment onto the template and the five points from 68 landmarks or a box are in
:mod:`pipeline.align` (no torch). Conventions as there: images RGB ``uint8 [H, W, 3]``,
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

from pipeline.align import apply_transform

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


# --- square crops (tracking, refinement) ----------------------------------------------


@dataclass(frozen=True)
class SquareWindow:
    """A square region of a frame (integer top-left ``x0, y0`` and ``side``) that is
    resized to ``out_size`` pixels; it may extend beyond the frame (padded with black)."""

    x0: int
    y0: int
    side: int
    out_size: int

    @classmethod
    def around(cls, box, factor: float, out_size: int) -> "SquareWindow":
        """The square of side ``factor`` x the box's longer side, centred on the box."""
        x1, y1, x2, y2 = np.asarray(box, dtype=np.float64)
        side = max(int(round(factor * max(x2 - x1, y2 - y1))), 8)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        return cls(int(round(cx - side / 2)), int(round(cy - side / 2)), side, out_size)

    def to_frame(self) -> np.ndarray:
        """2x3 matrix from crop pixels to frame pixels (pixel-centre convention)."""
        f = self.side / self.out_size
        return np.array([[f, 0, self.x0 + 0.5 * f - 0.5], [0, f, self.y0 + 0.5 * f - 0.5]])

    def cut(self, frame: np.ndarray) -> np.ndarray:
        """The window's pixels resized to out_size x out_size (INTER_AREA averages pixels
        when shrinking, which is what MTCNN's own pyramid does too)."""
        h, w = frame.shape[:2]
        x1, y1 = self.x0 + self.side, self.y0 + self.side
        inside = frame[max(self.y0, 0):min(y1, h), max(self.x0, 0):min(x1, w)]
        if inside.size == 0:  # the window lies wholly outside the frame
            return np.zeros((self.out_size, self.out_size, 3), np.uint8)
        if inside.shape[:2] != (self.side, self.side):  # part of the window is off-frame
            inside = cv2.copyMakeBorder(
                inside, max(-self.y0, 0), max(y1 - h, 0), max(-self.x0, 0), max(x1 - w, 0),
                cv2.BORDER_CONSTANT, value=(0, 0, 0))
        return cv2.resize(inside, (self.out_size, self.out_size), interpolation=cv2.INTER_AREA)

    def holds(self, box, frame_shape, margin_px: float) -> bool:
        """Whether ``box`` stays ``margin_px`` away from every window edge that lies inside
        the frame. A face touching such an edge is probably cut off by the crop, so its
        box and landmarks are unreliable. Edges outside the frame do not count: there the
        full frame cuts the face just the same."""
        h, w = frame_shape[:2]
        x1, y1 = self.x0 + self.side, self.y0 + self.side
        return bool((self.x0 <= 0 or box[0] >= self.x0 + margin_px)
                    and (self.y0 <= 0 or box[1] >= self.y0 + margin_px)
                    and (x1 >= w or box[2] <= x1 - margin_px)
                    and (y1 >= h or box[3] <= y1 - margin_px))


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


# --- one face per frame through a video -----------------------------------------------


@dataclass
class TrackStats:
    """Where each frame's face came from: the crop around the last face (``tracked``),
    a full-frame detection (``full``), or nowhere (``missing``)."""

    frames: int = 0
    tracked: int = 0
    full: int = 0
    missing: int = 0


@dataclass
class FaceTracker:
    """Follows one face through the consecutive frames of one video.

    Frames are processed in blocks of ``block_size``. When a face was seen before the
    block, every frame of the block is cut to one square window, ``margin`` x the size of
    that face, centred where the face is expected in the middle of the block (its last
    position moved at its recent speed: the median frame-to-frame motion of the previous
    block), and resized to ``crop_size`` pixels, so the crops stack into one batch
    whatever the frame size. MTCNN runs once on that small batch, searching faces down to
    ``min_face_ratio`` of the expected size. A frame counts as lost when its crop holds no
    face with prob >= ``min_prob`` that overlaps the face of the frame before (IoU >=
    ``min_iou``) and stays clear of the window's edges. Lost frames, and every frame of a
    block that starts without a known face, get a full-frame detection (one batch), which
    picks the face nearest the last one. After ``forget_after`` frames without the face,
    the tracker stops looking where it was and detects on full frames only.

    Trade-off: a 128 px crop costs MTCNN several times less than a 640x360 frame
    (benchmarks/bench_faces.py), but the window is fixed for the whole block: a face that
    moves or grows faster than predicted by more than about half its size within a block
    falls back to the full-frame path for the rest of the block. Small blocks follow
    motion better, large ones batch better (8 by default: the best on the benchmark). A
    person entering the window is taken only if they overlap the tracked face.
    Faces in the crop are seen at about ``crop_size / margin`` pixels (64 by default),
    enough for MTCNN's O-net, which looks at 48x48 anyway; the landmarks agree with
    full-resolution detection better than a full-frame detection at detect_size 320 does.

    Deterministic for the same frames given in the same calls: the blocks start at each
    call's first frame, so feed calls of a fixed length (a multiple of ``block_size``).
    """

    detector: FaceDetector
    block_size: int = 8
    margin: float = 2.0
    crop_size: int = 128
    min_face_ratio: float = 0.75
    min_prob: float = 0.9
    min_iou: float = 0.3
    thresholds: tuple[float, float, float] | None = None
    forget_after: int = 25
    side: str | None = None  #: "left"/"right": which person to start from (see pick_face)
    stats: TrackStats = field(default_factory=TrackStats)
    #: the latest face seen, how many frames ago (0: the last frame given), and its
    #: estimated motion in pixels per frame
    last: Detection | None = field(default=None, init=False)
    last_age: int = field(default=0, init=False)
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2), init=False)

    def reset(self) -> None:
        """Forget the face (call between videos)."""
        self.last, self.last_age, self.velocity = None, 0, np.zeros(2)

    def track(self, frames: list[np.ndarray]) -> list[Detection | None]:
        """The face of every frame (None where there is none), continuing from the face
        of the previous call."""
        results: list[Detection | None] = []
        for start in range(0, len(frames), self.block_size):
            results.extend(self._track_block(frames[start:start + self.block_size]))
        return results

    def _track_block(self, frames: list[np.ndarray]) -> list[Detection | None]:
        found: list[Detection | None] = [None] * len(frames)
        lost = list(range(len(frames)))
        if self.last is not None:
            found = self._from_crops(frames)
            lost = [i for i, det in enumerate(found) if det is None]
            self.stats.tracked += len(frames) - len(lost)
        if lost:
            full = self.detector.detect([frames[i] for i in lost])
            previous_box = None if self.last is None else self.last.box
            for i, faces in zip(lost, full):
                found[i] = faces.pick(previous_box, self.min_prob, self.side)
                # with no face to follow yet, follow the first one found in this block
                if previous_box is None and found[i] is not None:
                    previous_box = found[i].box
            self.stats.full += sum(found[i] is not None for i in lost)
        self.stats.frames += len(frames)
        self.stats.missing += sum(det is None for det in found)
        self._update_state(found)
        return found

    def _from_crops(self, frames: list[np.ndarray]) -> list[Detection | None]:
        box = self.last.box
        side = max(box[2] - box[0], box[3] - box[1])
        # expected shift by the middle of the block, at most a quarter of the window so
        # the last seen position stays inside it
        shift = self.velocity * (self.last_age + (len(frames) + 1) / 2)
        shift *= min(1.0, 0.25 * self.margin * side / max(np.hypot(*shift), 1e-9))
        window = SquareWindow.around(box + np.tile(shift, 2), self.margin, self.crop_size)
        crops = np.stack([window.cut(frame) for frame in frames])
        expected_face = self.crop_size / self.margin
        all_faces = self.detector.detect_stacked(
            crops, max(12.0, self.min_face_ratio * expected_face), self.thresholds)
        to_frame = window.to_frame()
        edge_px = 2.0 * window.side / self.crop_size  # two crop pixels
        found: list[Detection | None] = []
        # the same face must overlap where it was (or is predicted) in the frame before
        previous_box = box + np.tile(self.velocity * (self.last_age + 1), 2)
        for frame, faces in zip(frames, all_faces):
            det = faces.mapped(to_frame).pick(previous_box, self.min_prob)
            if (det is None or det.prob < self.min_prob
                    or box_iou(previous_box, det.box)[0] < self.min_iou
                    or not window.holds(det.box, frame.shape, edge_px)):
                det = None
            else:
                previous_box = det.box
            found.append(det)
        return found

    def _update_state(self, found: list[Detection | None]) -> None:
        seen = [i for i, det in enumerate(found) if det is not None]
        if not seen:  # keep looking where the face was (the crop is cheap), for a while
            self.last_age += len(found)
            if self.last_age >= self.forget_after:
                self.reset()
            return
        self.last, self.last_age = found[seen[-1]], len(found) - 1 - seen[-1]
        # median motion between consecutive frames that both have the face: robust to
        # one jump (a full-frame re-detection elsewhere) and to MTCNN's jitter
        steps = [_centre(found[i + 1].box) - _centre(found[i].box)
                 for i in range(len(found) - 1) if found[i] is not None and found[i + 1] is not None]
        self.velocity = np.median(steps, axis=0) if steps else np.zeros(2)


def _centre(box: np.ndarray) -> np.ndarray:
    return (box[:2] + box[2:]) / 2


# --- ExpW: refine a given box --------------------------------------------------------


def refine_in_box(image: np.ndarray, box, detector: FaceDetector, margin: float = 0.5,
                  crop_size: int = 160, min_iou: float = 0.3) -> np.ndarray | None:
    """Five landmarks (image coordinates, [5, 2]) of the face in ``box``, or None.

    Runs MTCNN on the square of (1 + 2 ``margin``) x the box's longer side around the box,
    resized to ``crop_size`` pixels (so tiny and huge faces cost the same), and keeps the
    face that overlaps the given box most, provided IoU >= ``min_iou`` (a neighbouring
    face in a group photo must not be taken instead). On None, fall back to
    ``landmarks5_from_box(box)``.
    """
    window = SquareWindow.around(box, 1.0 + 2.0 * margin, crop_size)
    expected_face = crop_size / (1.0 + 2.0 * margin)
    crop = window.cut(np.asarray(image))[None]
    faces = detector.detect_stacked(crop, max(12.0, 0.5 * expected_face))[0].mapped(window.to_frame())
    if len(faces) == 0:
        return None
    ious = box_iou(box, faces.boxes)
    best = int(np.argmax(ious))
    return faces.landmarks[best].copy() if ious[best] >= min_iou else None
