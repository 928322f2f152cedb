"""Following one face through a video, and finding the five points inside a given box.

* :class:`FaceTracker` follows the face of a video, running MTCNN on a small crop
  around the last known face instead of the whole frame (several times cheaper:
  ``benchmarks/bench_faces.py``).
* :class:`TrackIds` gives every face of every frame a track id (``predict --all-faces``).
* :func:`refine_in_box` finds the five points of a face in a given box (ExpW).

Conventions as in :mod:`pipeline.extraction.faces`. Deterministic for the same frames given in the
same calls.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from pipeline.extraction.faces import Detection, FaceDetector, box_iou


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


# --- every face of a video: track ids -------------------------------------------------


@dataclass
class TrackIds:
    """Stable ids for the faces of consecutive frames: a face continues the track whose
    last box it overlaps most (IoU >= ``min_iou``, greedy from the largest overlap), if
    that track was seen within ``max_gap`` frames; otherwise it starts a new id. A face
    that leaves for longer, or comes back elsewhere, gets a new id."""

    min_iou: float = 0.3
    max_gap: int = 15
    tracks: dict = field(default_factory=dict, init=False)  # id -> (last box, last frame)
    next_id: int = field(default=0, init=False)

    def assign(self, frame: int, boxes: np.ndarray) -> list[int]:
        """The ids of ``boxes`` [k, 4] found in frame number ``frame``."""
        self.tracks = {t: v for t, v in self.tracks.items() if frame - v[1] <= self.max_gap}  # forget the gone
        alive = list(self.tracks)
        pairs = sorted(((float(box_iou(self.tracks[t][0], boxes[[i]])[0]), i, t)
                        for t in alive for i in range(len(boxes))), reverse=True)
        ids: list[int | None] = [None] * len(boxes)
        taken = set()
        for iou, i, t in pairs:
            if iou >= self.min_iou and ids[i] is None and t not in taken:
                ids[i] = t
                taken.add(t)
        for i in range(len(boxes)):
            if ids[i] is None:
                ids[i], self.next_id = self.next_id, self.next_id + 1
            self.tracks[ids[i]] = (np.asarray(boxes[i], dtype=np.float64), frame)
        return ids


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
