"""The face's geometry: 68 points moved by action units and identity, then posed.

The face lives in a canonical frame: x to the image right, y down, z towards the camera,
in units of the face's half-width (ear to ear is about 2). Its 68 points follow the iBUG
order, so the landmarks written for AFEW-VA and the five points used for alignment are the
very points the features are drawn from. Action units move those points linearly (one
displacement field per AU, scaled by intensity / 5); identity changes the neutral shape.

A pose (centre, size in pixels, roll, yaw, pitch) maps the canonical points into the image.
Yaw and pitch use the points' depth (a pseudo-3D turn), roll and size a similarity; both are
linear, so one 2x4 affine map per face takes canonical (x, y, z, 1) to image (x, y).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from .identity import Identity
from .landmarks import AU_INDEX, DRAWN_AUS, LATER_AUS, NEUTRAL

def _au_fields() -> np.ndarray:
    """Displacement (dx, dy) of the 68 points per AU at intensity 5 (FACS descriptions)."""
    d = np.zeros((len(DRAWN_AUS), 68, 2), np.float64)

    def at(au, idx, dx, dy):
        d[AU_INDEX[au], idx, 0] += dx
        d[AU_INDEX[au], idx, 1] += dy

    # AU1 inner brow raiser: the inner halves of the brows go up (and slightly together).
    at(1, [21, 22], 0, -0.17); at(1, [20, 23], 0, -0.12); at(1, [19, 24], 0, -0.06)
    at(1, [21], 0.01, 0); at(1, [22], -0.01, 0)
    # AU2 outer brow raiser: the outer halves go up.
    at(2, [17, 26], 0, -0.16); at(2, [18, 25], 0, -0.14); at(2, [19, 24], 0, -0.08)
    # AU4 brow lowerer: brows down, inner ends down and together (the knit).
    at(4, np.r_[17:27], 0, 0.08)
    at(4, [21], 0.06, 0.05); at(4, [22], -0.06, 0.05); at(4, [20], 0.04, 0.03); at(4, [23], -0.04, 0.03)
    at(4, [37, 38, 43, 44], 0, 0.02)
    # AU5 upper lid raiser: upper lids up, eyes wide.
    at(5, [37, 38, 43, 44], 0, -0.09); at(5, [36, 39, 42, 45], 0, -0.01)
    # AU6 cheek raiser: lower lids pushed up by the cheeks, eyes narrowed from below.
    at(6, [40, 41, 46, 47], 0, -0.06); at(6, [36], 0.0, -0.015); at(6, [45], 0.0, -0.015)
    # AU7 lid tightener: both lids towards each other, lower lid straightened.
    at(7, [40, 41, 46, 47], 0, -0.06); at(7, [37, 38, 43, 44], 0, 0.04)
    # AU9 nose wrinkler: nostrils up and wider, upper lip up, inner brows slightly down.
    at(9, [31, 35], 0, -0.06); at(9, [32, 33, 34], 0, -0.04)
    at(9, [31], -0.04, 0); at(9, [35], 0.04, 0)
    at(9, [49, 50, 51, 52, 53], 0, -0.06); at(9, [61, 62, 63], 0, -0.03)
    at(9, [20, 21, 22, 23], 0, 0.04)
    # AU12 lip corner puller: corners out and up, the mouth curves into a smile.
    at(12, [48, 60], -0.09, -0.13); at(12, [54, 64], 0.09, -0.13)
    at(12, [49, 59, 61, 67], -0.04, -0.06); at(12, [53, 55, 63, 65], 0.04, -0.06)
    at(12, [50, 58, 52, 56], 0, -0.02)
    # AU15 lip corner depressor: corners down (and slightly in).
    at(15, [48, 60], 0.02, 0.13); at(15, [54, 64], -0.02, 0.13)
    at(15, [49, 59, 61, 67], 0, 0.05); at(15, [53, 55, 63, 65], 0, 0.05)
    at(15, [50, 51, 52], 0, -0.01)
    # AU17 chin raiser: lower lip and chin pushed up, the mouth bows downwards.
    at(17, [55, 56, 57, 58, 59], 0, -0.10); at(17, [56, 57, 58], 0, -0.02); at(17, [65, 66, 67], 0, -0.04)
    at(17, [49, 50, 51, 52, 53, 61, 62, 63], 0, -0.04)
    at(17, [48, 54, 60, 64], 0, 0.06); at(17, [7, 8, 9], 0, -0.06)
    # AU20 lip stretcher: corners pulled sideways and slightly down; lips flatten.
    at(20, [48, 60], -0.16, 0.04); at(20, [54, 64], 0.16, 0.04)
    at(20, [49, 59, 61, 67], -0.08, 0.015); at(20, [53, 55, 63, 65], 0.08, 0.015)
    at(20, [50, 51, 52], 0, 0.025); at(20, [56, 57, 58], 0, -0.025)
    # AU23 lip tightener: narrower, thinner lips.
    at(23, [48, 60], 0.1, 0); at(23, [54, 64], -0.1, 0)
    at(23, [49, 50, 51, 52, 53], 0, 0.05); at(23, [55, 56, 57, 58, 59], 0, -0.06)
    at(23, [49, 59, 61, 67], 0.045, 0); at(23, [53, 55, 63, 65], -0.045, 0)
    # AU25 lips part.
    at(25, [61, 62, 63], 0, -0.02); at(25, [65, 66, 67], 0, 0.06)
    at(25, [55, 56, 57, 58, 59], 0, 0.04); at(25, [50, 51, 52], 0, -0.01)
    # AU26 jaw drop: lower lip, inner lower lip and the lower jaw go down.
    at(26, [65, 66, 67], 0, 0.16); at(26, [55, 56, 57, 58, 59], 0, 0.17)
    at(26, [48, 54, 60, 64], 0, 0.04)
    jaw_drop = np.array([0, 0, 0, 0.03, 0.07, 0.11, 0.15, 0.18, 0.19, 0.18, 0.15, 0.11, 0.07, 0.03, 0, 0, 0])
    d[AU_INDEX[26], :17, 1] += jaw_drop
    at(26, [4], 0.02, 0); at(26, [12], -0.02, 0)
    # AU10 upper lip raiser: the upper lip's middle goes up (a squared upper lip), the
    # nostril wings rise a little; the corners stay (unlike AU12).
    at(10, [50, 51, 52], 0, -0.11); at(10, [49, 53], 0, -0.07); at(10, [61, 62, 63], 0, -0.08)
    at(10, [31, 35], 0, -0.03); at(10, [32, 33, 34], 0, -0.015)
    # AU24 lip pressor: the lips pressed together, thinner, the mouth no narrower (AU23
    # pulls the corners in); the lower lip and chin bunch up a little.
    at(24, [49, 50, 51, 52, 53], 0, 0.045); at(24, [55, 56, 57, 58, 59], 0, -0.065)
    at(24, [61, 62, 63], 0, 0.01); at(24, [65, 66, 67], 0, -0.01); at(24, [7, 8, 9], 0, -0.02)
    return d


AU_FIELDS = _au_fields()
_N_FIRST = len(DRAWN_AUS) - len(LATER_AUS)
# One (14,) @ (14, 136) product per face, and the later AUs' only where a face shows them: a
# longer product may sum in another order (BLAS kernels group terms by vector width) and
# move every 2020 face by a rounding error.
_AU_FIELDS_FLAT = AU_FIELDS.reshape(len(DRAWN_AUS), -1)[:_N_FIRST]
_LATER_FIELDS_FLAT = AU_FIELDS.reshape(len(DRAWN_AUS), -1)[_N_FIRST:]


def au_fractions(ident: Identity, aus) -> np.ndarray:
    """AU intensities plus the person's resting bias, clipped to 0..5, as fractions of 5."""
    return np.clip(np.asarray(aus, np.float64) + ident.au_bias, 0, 5) / 5.0


# --- pose -------------------------------------------------------------------------------


@dataclass
class Pose:
    """Where the face is in the image."""

    cx: float  #: image x of the face centre (between the eyes and the mouth)
    cy: float
    size: float  #: half-width of the face in pixels (the face box is about 2 x this wide)
    roll: float = 0.0  #: degrees, positive turns the face clockwise in the image
    yaw: float = 0.0  #: degrees, positive turns the face to the image right
    pitch: float = 0.0  #: degrees, positive tilts the face down


@dataclass
class FaceGeometry:
    """Where everything landed in the image, for drawing and for the labels."""

    points: np.ndarray  #: (68, 2) image coordinates, iBUG order
    skull: np.ndarray  #: (n, 2) top of the head outline, from the image-right ear to the left
    box: np.ndarray  #: x0, y0, x1, y1 of the face box a detector would draw
    canon: np.ndarray  #: (68, 3) canonical points after identity and AUs
    pose: Pose
    A: np.ndarray  #: 2x4 affine map canonical (x, y, z, 1) -> image (see pose_affine)

    @property
    def landmarks5(self) -> np.ndarray:
        """Eye centres (image-left then image-right), nose tip, mouth corners (left, right)."""
        p = self.points
        return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])

    def to_image(self, pts) -> np.ndarray:
        """Map extra canonical points, (n, 2) with z = 0 or (n, 3), into the image."""
        pts = np.asarray(pts, np.float64)
        return pts @ self.A[:, :pts.shape[1]].T + self.A[:, 3]

    def point(self, x: float, y: float, z: float = 0.0) -> tuple[float, float]:
        """One canonical point in the image, in plain floats (cheaper than an array for one)."""
        (a, b, c, d), (e, f, g, h) = self.A.tolist()
        return a * x + b * y + c * z + d, e * x + f * y + g * z + h

    def shifted(self, dx: float, dy: float) -> "FaceGeometry":
        """The same face in the coordinates of a region whose corner is at (dx, dy)."""
        return replace(self, points=self.points - [dx, dy], skull=self.skull - [dx, dy],
                       A=self.A - np.array([[0, 0, 0, dx], [0, 0, 0, dy]]))


def pose_affine(pose: Pose) -> np.ndarray:
    """The 2x4 map canonical (x, y, z, 1) -> image of a pose.

    First a pseudo-3D turn, yaw then pitch: depth shifts x (and y) as the head turns,
    x' = x cos(yaw) + z sin(yaw), y' = y cos(pitch) + 0.6 z sin(pitch); then a similarity
    (roll, size, centre). Both are linear, so one matrix does it: every projection of a
    face is one small product, not a trigonometric evaluation per call.
    """
    yaw, pitch, roll = math.radians(pose.yaw), math.radians(pose.pitch), math.radians(pose.roll)
    # similarity [[c, -s], [s, c]] @ turn [[cy, 0, sy], [0, cp, 0.6 sp]], in plain floats
    cy_, sy_, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), 0.6 * math.sin(pitch)
    c, s = math.cos(roll) * pose.size, math.sin(roll) * pose.size
    return np.array([[c * cy_, -s * cp, c * sy_ - s * sp, pose.cx],
                     [s * cy_, c * cp, s * sy_ + c * sp, pose.cy]])


def _project(xyz: np.ndarray, A: np.ndarray) -> np.ndarray:
    return xyz @ A[:, :3].T + A[:, 3]


# The top of the head: an elliptic arc over the brows, from ear to ear (angles 0..pi),
# raised by 0.18 x the face length.
_SKULL = np.stack([0.99 * np.cos(np.linspace(0, np.pi, 15)), -1.06 * np.sin(np.linspace(0, np.pi, 15)),
                   0.1 * np.sin(np.linspace(0, np.pi, 15))], 1)
# Forehead points that bound the detector-style box (with the jaw).
_BOX_TOP = np.array([[-0.9, -0.78, 0.2], [0.9, -0.78, 0.2], [0, -0.8, 0.3]])


def face_geometry(ident: Identity, aus: np.ndarray, pose: Pose) -> FaceGeometry:
    """Canonical points moved by identity and AU intensities (0..5), then posed."""
    aus = au_fractions(ident, aus)
    canon = NEUTRAL.copy()
    moved = aus[:_N_FIRST] @ _AU_FIELDS_FLAT
    if aus[_N_FIRST:].any():
        moved = moved + aus[_N_FIRST:] @ _LATER_FIELDS_FLAT
    canon[:, :2] += ident.shape + moved.reshape(68, 2)
    # Lips never cross: the inner lower lip stays at or below the inner upper lip.
    upper = canon[[61, 62, 63], 1]
    canon[[67, 66, 65], 1] = np.maximum(canon[[67, 66, 65], 1], upper)
    canon[:, 1] *= ident.face_length
    A = pose_affine(pose)
    pts = _project(canon, A)
    skull = _project(_SKULL + [0.0, -0.18 * ident.face_length, 0.0], A)
    # A detector-style box: ear to ear, from mid-forehead to the chin.
    outline = np.vstack([pts[:17], _project(_BOX_TOP, A)])
    box = np.concatenate([outline.min(0), outline.max(0)])
    return FaceGeometry(points=pts, skull=skull, box=box, canon=canon, pose=pose, A=A)
