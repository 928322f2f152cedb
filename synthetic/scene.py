"""The scene around the face: backgrounds, occluders and smooth head-pose trajectories.

``difficulty`` scales the nuisances that make faces harder: pose range (here), blur,
grain, occluders and lighting changes (0 = clean frontal faces). The per-frame choice of
occluders and lighting is in ``nuisances``; each source's look and camera in ``camera``.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .episodes import smooth_noise
from .geometry import Pose


# --- backgrounds ------------------------------------------------------------------------


def _clouds(rng, h, w, layers, colour: float = 0.25) -> np.ndarray:
    """Smooth random texture (float32 [h, w, 3]): for each (cells, amp) layer, a random
    grid of one value per ``cells`` pixels, enlarged (cheap low-frequency noise).

    The coarser grids are enlarged to the finest one's size and summed there, so the
    texture costs one full-size resize. Mostly brightness, with a ``colour`` share of
    per-channel variation: real walls and foliage vary in shade far more than in hue.
    """
    grids = []
    for cells, amp in layers:
        gh, gw = max(2, h // cells), max(2, w // cells)
        grids.append(rng.normal(0, amp, (gh, gw, 1)) + rng.normal(0, amp * colour, (gh, gw, 3)))
    fine = max(grids, key=lambda g: g.size)
    size = (fine.shape[1], fine.shape[0])
    total = sum(g if g is fine else cv2.resize(g, size, interpolation=cv2.INTER_CUBIC) for g in grids)
    return cv2.resize(total.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)


def _muted(rng, lo=40, hi=200) -> np.ndarray:
    """A random, somewhat desaturated BGR colour."""
    c = rng.uniform(lo, hi, 3)
    return 0.55 * c + 0.45 * c.mean()


def background(rng: np.random.Generator, h: int, w: int, kind: str) -> np.ndarray:
    """A textured, somewhat desaturated scene of ``kind`` (uint8 BGR [h, w, 3]).

    Drawn at half resolution and enlarged: it is blurred anyway, and ExpW draws one per
    image."""
    full_h, full_w = h, w
    h, w = (h + 1) // 2, (w + 1) // 2
    img = np.empty((h, w, 3), np.float32)
    if kind == "web":  # web photos: half outdoors, half indoors
        kind = "outdoor" if rng.random() < 0.5 else "room"
    if kind == "lab":
        base = rng.uniform(35, 75) * np.array([1.05, 1.0, 0.95]) + rng.normal(0, 5, 3)
        img[:] = base
        img += _clouds(rng, h, w, ((40, 4), (8, 2)), 0.1)
        img += np.linspace(8, -8, w, dtype=np.float32)[None, :, None]
    elif kind == "outdoor":
        sky = _muted(rng, 140, 230) * np.array([1.15, 1.0, 0.85])
        ground = _muted(rng, 50, 150)
        horizon = int(h * rng.uniform(0.3, 0.6))
        img[:horizon] = sky
        img[horizon:] = ground
        img += _clouds(rng, h, w, ((24, 18), (8, 6)))
        for _ in range(int(rng.integers(2, 6))):  # trees, posts, buildings
            x0 = int(rng.integers(0, w))
            bw = int(rng.integers(w // 20, w // 5))
            top = int(rng.integers(0, horizon + 1))
            img[top:horizon + int(rng.integers(0, h // 6)), x0:x0 + bw] = _muted(rng, 30, 140)
    else:  # room, web, film: walls, doors, shelves, windows
        wall = _muted(rng, 60, 210)
        img[:] = wall
        img += np.linspace(rng.normal(0, 15), rng.normal(0, 15), h, dtype=np.float32)[:, None, None]
        for _ in range(int(rng.integers(2, 7))):
            x0, y0 = int(rng.integers(-w // 4, w)), int(rng.integers(-h // 4, h))
            x1, y1 = x0 + int(rng.integers(w // 10, w // 2)), y0 + int(rng.integers(h // 10, h))
            img[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = _muted(rng, 25, 230)
        img += _clouds(rng, h, w, ((24, 12), (8, 4)))
        if kind == "film":
            img *= rng.uniform(0.45, 0.75)
    # Blurred and enlarged in uint8 (cheaper than in float32). Films keep the
    # background out of focus (and PNG frames small).
    img = np.clip(img, 0, 255, out=img).astype(np.uint8)
    img = cv2.GaussianBlur(img, (0, 0), max(0.5, w / 400) * (3.0 if kind == "film" else 1.0))
    return cv2.resize(img, (full_w, full_h), interpolation=cv2.INTER_LINEAR)


# --- occluders ------------------------------------------------------------------------------


def draw_occluder(img: np.ndarray, box: np.ndarray, rng: np.random.Generator, cover: float,
                  kind: str, colour) -> None:
    """Cover part of a face box: ``cover`` ~ the share of the box hidden.

    ``hand``: a skin-coloured hand over the mouth or chin; ``bar``: an object (microphone,
    cup, a passer-by's arm) across the lower face; ``full``: a large object hiding the
    whole face (the frame then has no usable face).
    """
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    col = tuple(float(c) for c in colour)
    if kind == "full":
        cx, cy = (x0 + x1) / 2 + rng.normal(0, 0.05) * bw, (y0 + y1) / 2 + rng.normal(0, 0.05) * bh
        axes = (int(bw * 0.75), int(bh * 0.8))
        cv2.ellipse(img, (int(cx), int(cy)), axes, rng.uniform(-20, 20), 0, 360, col, -1, cv2.LINE_AA)
        return
    if kind == "hand":
        # Palm over the lower face from one side, with fingers: at most the mouth area.
        side = -1 if rng.random() < 0.5 else 1
        cx = (x0 + x1) / 2 + side * bw * (0.55 - 0.45 * cover)
        cy = y0 + bh * rng.uniform(0.78, 0.92)
        axes = (max(2, int(bw * (0.16 + 0.2 * cover))), max(2, int(bh * (0.12 + 0.12 * cover))))
        cv2.ellipse(img, (int(cx), int(cy)), axes, rng.uniform(-30, 30), 0, 360, col, -1, cv2.LINE_AA)
        for f in range(4):
            fx = cx - side * axes[0] * (0.2 + 0.25 * f)
            cv2.line(img, (int(cx), int(cy)), (int(fx), int(cy - axes[1] * 1.6 + f * 2)), col,
                     max(1, int(bw * 0.06)), cv2.LINE_AA)
        return
    # bar: a diagonal object (microphone, arm) across the mouth and chin, never the eyes
    t = max(2, int(bh * (0.06 + 0.1 * cover)))
    yl, yr = y0 + bh * rng.uniform(0.8, 1.0), y0 + bh * rng.uniform(0.78, 0.98)
    cv2.line(img, (int(x0 - bw * 0.3), int(yl)), (int(x1 + bw * 0.3), int(yr)), col, t, cv2.LINE_AA)


# --- head motion ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PoseRange:
    """Where and how a source's faces sit in its frames."""

    size: tuple[float, float]  #: face half-width in pixels
    roll: float  #: +- degrees at difficulty 1
    yaw: float
    pitch: float
    sway: float  #: how far the head drifts, in face half-widths
    speed: float = 25.0  #: frames over which the pose changes noticeably


POSE_RANGES = {
    "affwild2": PoseRange(size=(42, 62), roll=12, yaw=20, pitch=8, sway=0.5),
    "disfa": PoseRange(size=(50, 58), roll=4, yaw=7, pitch=4, sway=0.12, speed=40),
    "expw": PoseRange(size=(34, 64), roll=15, yaw=20, pitch=8, sway=0.0),
    "afewva": PoseRange(size=(40, 64), roll=10, yaw=22, pitch=8, sway=0.45),
}


def pose_track(rng: np.random.Generator, n: int, h: int, w: int, pr: PoseRange, difficulty: float,
               centre=None, xlim=None, size_scale: float = 1.0) -> list[Pose]:
    """A smooth head trajectory of ``n`` frames that keeps the face inside the frame
    (and inside ``xlim`` = (x_min, x_max) when two people share it)."""
    d = float(difficulty)
    size0 = rng.uniform(*pr.size) * size_scale
    size = size0 * np.exp(smooth_noise(rng, n, 0.06 * min(d, 1.5), pr.speed * 1.5))

    def angle(limit: float, offset: bool) -> np.ndarray:
        """A head angle: a per-video offset plus a slow wander, within +-limit x difficulty."""
        if d <= 0:
            return np.zeros(n)
        base = rng.normal(0, limit * d * 0.4) if offset else 0.0
        return np.clip(base + smooth_noise(rng, n, limit * d * 0.45, pr.speed), -limit * d, limit * d)

    roll, yaw = angle(pr.roll, True), angle(pr.yaw, True)
    pitch = angle(pr.pitch, False)
    if centre is None:
        centre = (w / 2 + rng.normal(0, w * 0.06), h * rng.uniform(0.42, 0.52))
    cx = centre[0] + smooth_noise(rng, n, pr.sway * size0, pr.speed * 1.2)
    cy = centre[1] + smooth_noise(rng, n, pr.sway * size0 * 0.5, pr.speed * 1.2)
    # Keep the face box (about 1.0 x 1.3 half-widths around the centre) in the frame.
    lo, hi = xlim if xlim is not None else (0, w)
    cx = np.clip(cx, lo + size * 1.15, hi - size * 1.15)
    cy = np.clip(cy, size * 1.35, h - size * 1.45)
    return [Pose(float(cx[i]), float(cy[i]), float(size[i]), float(roll[i]), float(yaw[i]), float(pitch[i]))
            for i in range(n)]
