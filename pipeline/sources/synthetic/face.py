"""A drawn face whose geometry is driven by FACS action-unit intensities.

The face lives in a canonical frame: x to the image right, y down, z towards the camera,
in units of the face's half-width (ear to ear is about 2). Its 68 points follow the iBUG
order, so the landmarks written for AFEW-VA and the five points used for alignment are the
very points the features are drawn from. Action units move those points linearly (one
displacement field per AU, scaled by intensity / 5) and add shading cues (wrinkles, folds,
teeth) that FACS describes; identity changes the neutral shape and the colours.

A pose (centre, size in pixels, roll, yaw, pitch) maps the canonical points into the image.
Yaw and pitch use the points' depth (a pseudo-3D turn), roll and size a similarity; both are
linear, so one 2x4 affine map per face takes canonical (x, y, z, 1) to image (x, y).

Everything is drawn with anti-aliased OpenCV primitives in a region of interest around the
head, then softened: a flat cartoon face is found by MTCNN about 70% of the time, a shaded
one with hair, ears, neck, shoulders and a soft edge almost always (docs/synthetic-data.md).
Colours are BGR throughout, as OpenCV writes them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

#: The action units the renderer draws, in the order of every intensity vector.
DRAWN_AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 12, 15, 17, 20, 23, 25, 26)
AU_INDEX = {au: i for i, au in enumerate(DRAWN_AUS)}
#: What each drawn AU is, for the contact sheet and the data card.
AU_DESCRIPTIONS = {
    1: "inner brow raiser", 2: "outer brow raiser", 4: "brow lowerer", 5: "upper lid raiser",
    6: "cheek raiser", 7: "lid tightener", 9: "nose wrinkler", 12: "lip corner puller",
    15: "lip corner depressor", 17: "chin raiser", 20: "lip stretcher", 23: "lip tightener",
    25: "lips part", 26: "jaw drop",
}

_SUBPIXEL = 4  # cv2 drawing with 1/16 pixel precision
_SCALE = float(1 << _SUBPIXEL)

# --- the neutral canonical face -----------------------------------------------------------


def _neutral_points() -> np.ndarray:
    """68 iBUG points (x, y, z) of an average neutral face, in half-widths."""
    p = np.zeros((68, 3), np.float64)
    # Jaw 0..16: a rounded-square curve from the image-left ear level down to the chin.
    theta = np.linspace(0.0, np.pi, 17)
    c, s = np.cos(theta), np.sin(theta)
    p[:17, 0] = -np.sign(c) * np.abs(c) ** 0.8 * 0.98
    p[:17, 1] = -0.18 + 1.40 * s ** 1.25
    p[:17, 2] = -0.15 + 0.45 * s
    # Brows: 17..21 image-left (outer to inner), 22..26 image-right (inner to outer).
    bx = np.linspace(-0.70, -0.16, 5)
    by = -0.42 - 0.07 * np.sin(np.linspace(0.35, 2.6, 5))
    p[17:22, 0], p[17:22, 1] = bx, by
    p[22:27, 0], p[22:27, 1] = -bx[::-1], by[::-1]
    p[17:27, 2] = 0.30
    # Nose: bridge 27..30 (top to tip), lower edge 31..35.
    p[27:31] = [[0, -0.22, 0.35], [0, -0.05, 0.48], [0, 0.11, 0.60], [0, 0.27, 0.72]]
    p[31:36] = [[-0.16, 0.37, 0.40], [-0.08, 0.40, 0.50], [0, 0.41, 0.55],
                [0.08, 0.40, 0.50], [0.16, 0.37, 0.40]]
    # Eyes: 36 outer, 37-38 upper lid, 39 inner, 40-41 lower lid; 42..47 mirrored.
    left_eye = np.array([[-0.58, -0.11], [-0.46, -0.195], [-0.30, -0.195],
                         [-0.18, -0.11], [-0.30, -0.045], [-0.46, -0.045]])
    p[36:42, :2] = left_eye
    right_eye = left_eye[[3, 2, 1, 0, 5, 4]] * [-1, 1]
    p[42:48, :2] = right_eye
    p[36:48, 2] = 0.28
    # Mouth: outer 48..59 (48 left corner, 54 right corner), inner 60..67.
    p[48:60, :2] = [[-0.31, 0.69], [-0.20, 0.625], [-0.08, 0.595], [0, 0.612], [0.08, 0.595],
                    [0.20, 0.625], [0.31, 0.69], [0.20, 0.775], [0.09, 0.805], [0, 0.81],
                    [-0.09, 0.805], [-0.20, 0.775]]
    p[60:68, :2] = [[-0.27, 0.69], [-0.10, 0.683], [0, 0.686], [0.10, 0.683], [0.27, 0.69],
                    [0.10, 0.692], [0, 0.694], [-0.10, 0.692]]
    p[48:68, 2] = 0.45
    p[[48, 54, 60, 64], 2] = 0.32
    return p


NEUTRAL = _neutral_points()

# Index groups.
JAW = np.arange(0, 17)
BROW_L, BROW_R = np.arange(17, 22), np.arange(22, 27)
EYE_L, EYE_R = np.arange(36, 42), np.arange(42, 48)
LIPS_OUTER, LIPS_INNER = np.arange(48, 60), np.arange(60, 68)
UPPER_LIP = [48, 49, 50, 51, 52, 53, 54, 64, 63, 62, 61, 60]
LOWER_LIP = [48, 60, 67, 66, 65, 64, 54, 55, 56, 57, 58, 59]


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
    return d


AU_FIELDS = _au_fields()
_AU_FIELDS_FLAT = AU_FIELDS.reshape(len(DRAWN_AUS), -1)  # for one (14,) @ (14, 136) product per face

# --- identity ---------------------------------------------------------------------------

SKIN_TONES_RGB = np.array([
    (238, 208, 188), (232, 196, 172), (224, 180, 150), (205, 160, 125), (190, 140, 105),
    (165, 115, 85), (142, 97, 72), (120, 82, 60), (104, 70, 52), (92, 62, 46),
], np.float64)
HAIR_RGB = np.array([
    (28, 24, 22), (50, 36, 28), (78, 54, 38), (112, 78, 52), (165, 130, 85), (205, 180, 120),
    (130, 60, 32), (150, 150, 150), (205, 205, 200),
], np.float64)
IRIS_RGB = np.array([(70, 45, 30), (100, 65, 40), (60, 100, 150), (80, 120, 90), (110, 110, 115)], np.float64)
CLOTHES_RGB = np.array([
    (40, 40, 50), (200, 200, 205), (150, 40, 40), (40, 70, 140), (60, 110, 60), (220, 190, 90),
    (120, 80, 130), (90, 90, 90), (30, 30, 30), (200, 120, 60),
], np.float64)
HAIR_STYLES = ("short", "long", "bald", "fringe", "bun")


@dataclass
class Identity:
    """What stays the same for one person: shape offsets, colours, style."""

    shape: np.ndarray  #: (68, 2) offsets of the neutral points, in half-widths
    face_length: float  #: vertical stretch of the whole face
    skin: np.ndarray  #: BGR
    lips: np.ndarray
    hair: np.ndarray
    iris: np.ndarray
    clothes: np.ndarray
    hair_style: str
    hairline: float  #: canonical y of the hairline (-0.95 high .. -0.6 low)
    brow_thickness: float
    glasses: bool
    beard: float  #: 0 none .. 1 full
    age: float  #: 0 young .. 1 old; deepens permanent lines
    au_bias: np.ndarray = field(default_factory=lambda: np.zeros(len(DRAWN_AUS)))  #: resting AU intensity


def sample_identity(rng: np.random.Generator, spread: float = 1.0, skin_range=(0, 10)) -> Identity:
    """A random person. ``spread`` scales the shape variety (0 = everyone average)."""
    s = spread
    shape = np.zeros((68, 2))
    eye_dx = rng.normal(0, 0.03) * s  # eye spacing
    eye_scale = 1 + rng.normal(0, 0.08) * s
    for idx, sign in ((EYE_L, -1), (EYE_R, 1)):
        centre = NEUTRAL[idx, :2].mean(0)
        shape[idx] += (NEUTRAL[idx, :2] - centre) * (eye_scale - 1)
        shape[idx, 0] += sign * eye_dx
    brow_dy = rng.normal(0, 0.03) * s
    shape[17:27, 1] += brow_dy
    shape[17:27, 0] *= 1 + rng.normal(0, 0.04) * s
    nose_len = rng.normal(0, 0.04) * s
    shape[29:36, 1] += nose_len * np.array([0.5, 1, 1, 1, 1, 1, 1])
    nose_w = 1 + rng.normal(0, 0.12) * s
    shape[31:36, 0] += NEUTRAL[31:36, 0] * (nose_w - 1)
    mouth_w = 1 + rng.normal(0, 0.08) * s
    shape[48:68, 0] += NEUTRAL[48:68, 0] * (mouth_w - 1)
    lip_t = 1 + rng.normal(0, 0.18) * s  # lip thickness
    shape[49:54, 1] += (NEUTRAL[49:54, 1] - 0.69) * (lip_t - 1)
    shape[55:60, 1] += (NEUTRAL[55:60, 1] - 0.69) * (lip_t - 1)
    mouth_dy = rng.normal(0, 0.03) * s
    shape[48:68, 1] += mouth_dy
    jaw_w = 1 + rng.normal(0, 0.06) * s
    shape[2:15, 0] += NEUTRAL[2:15, 0] * (jaw_w - 1)
    chin = rng.normal(0, 0.05) * s
    shape[6:11, 1] += chin * np.array([0.4, 0.8, 1, 0.8, 0.4])

    lo, hi = skin_range
    tone_i = int(rng.integers(lo, hi))
    tone = SKIN_TONES_RGB[tone_i] * (1 + rng.normal(0, 0.04, 3))
    skin = np.clip(tone[::-1], 20, 250)
    lips = np.clip(skin * np.array([0.72, 0.62, 0.88]) + np.array([5, 0, 8]), 0, 255)
    # Hair colour goes with skin tone: blond and red hair are rare on dark skin.
    if tone_i >= 5 or rng.random() < 0.5:
        hair_i = int(rng.choice([0, 1, 2, 7], p=[0.45, 0.3, 0.15, 0.1]))
    else:
        hair_i = int(rng.integers(len(HAIR_RGB)))
    hair = np.clip(HAIR_RGB[hair_i][::-1] * (1 + rng.normal(0, 0.06)), 0, 255)
    iris = IRIS_RGB[rng.integers(len(IRIS_RGB))][::-1]
    clothes = CLOTHES_RGB[rng.integers(len(CLOTHES_RGB))][::-1] * (1 + rng.normal(0, 0.1))
    style = HAIR_STYLES[rng.choice(len(HAIR_STYLES), p=[0.4, 0.25, 0.08, 0.17, 0.10])]
    hairline = {"fringe": -0.62, "bald": -1.3}.get(style, -0.82) + rng.normal(0, 0.04)
    au_bias = np.zeros(len(DRAWN_AUS))
    # Some people rest with slightly raised brows or parted lips: weak, below label level.
    for au in (1, 2, 4, 25):
        if rng.random() < 0.15:
            au_bias[AU_INDEX[au]] = rng.uniform(0.2, 1.0)
    return Identity(
        shape=shape, face_length=1 + rng.normal(0, 0.04) * s, skin=skin, lips=lips, hair=hair,
        iris=np.asarray(iris, np.float64), clothes=np.clip(clothes, 0, 255), hair_style=style,
        hairline=hairline, brow_thickness=float(np.clip(rng.normal(0.055, 0.012), 0.03, 0.085)),
        glasses=bool(rng.random() < 0.12), beard=float(rng.random() < 0.12) * rng.uniform(0.3, 1),
        age=float(rng.uniform(0, 1)), au_bias=au_bias,
    )


# --- pose and geometry ------------------------------------------------------------------


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
    aus = np.clip(np.asarray(aus, np.float64) + ident.au_bias, 0, 5) / 5.0
    canon = NEUTRAL.copy()
    canon[:, :2] += ident.shape + (aus @ _AU_FIELDS_FLAT).reshape(68, 2)
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


# --- drawing ----------------------------------------------------------------------------
# A face is about a hundred small primitives, so these helpers stay cheap per call: plain
# Python numbers where numpy's per-call overhead would cost more than the arithmetic.


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur whose kernel reaches two sigmas each way (OpenCV's default reaches
    three for uint8 images): the weights beyond hold under 5% of the mass, and the small
    blurs of the renderer and the cameras take 3 taps instead of 5."""
    k = 2 * math.ceil(2 * sigma) + 1
    return cv2.GaussianBlur(img, (k, k), sigma)


def _fx(pts: np.ndarray) -> np.ndarray:
    """Image points (n, 2) to cv2's fixed-point format (rounded half to even, as np.round)."""
    return np.rint(np.multiply(pts, _SCALE)).astype(np.int32)


def _poly(img, pts, color, closed=True):
    cv2.fillPoly(img, [_fx(pts)], _c(color), cv2.LINE_AA, _SUBPIXEL)


def _line(img, pts, color, thickness, closed=False):
    cv2.polylines(img, [_fx(pts)], closed, _c(color), max(1, int(round(thickness))), cv2.LINE_AA, _SUBPIXEL)


def _ellipse(img, centre, axes, angle, color, thickness=-1):
    # Python's round() rounds half to even, as np.round does.
    cx, cy = centre.tolist() if isinstance(centre, np.ndarray) else centre
    ax, ay = axes
    cv2.ellipse(img, (round(cx * _SCALE), round(cy * _SCALE)),
                (max(1, round(float(ax) * _SCALE)), max(1, round(float(ay) * _SCALE))),
                float(angle), 0, 360, _c(color), thickness, cv2.LINE_AA, _SUBPIXEL)


def _c(color):
    """A BGR colour (array or sequence) as cv2's scalar. No clipping needed: cv2 saturates
    the colour to the uint8 image's range (rounding, then clamping to 0..255) itself."""
    return color.tolist() if isinstance(color, np.ndarray) else color


def _mix(a, b, t):
    return np.asarray(a, np.float64) * (1 - t) + np.asarray(b, np.float64) * t


# Quadratic Bezier weights (1-t)^2, 2(1-t)t, t^2 at 8 points (every curve drawn has 8).
_CURVE_T = np.linspace(0, 1, 8)[:, None]
_CURVE_W = ((1 - _CURVE_T) ** 2, 2 * (1 - _CURVE_T) * _CURVE_T, _CURVE_T ** 2)


def _curve(a, b, bulge):
    """Points on a quadratic curve from a to b bowing sideways by ``bulge`` (x its length)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mid = (a + b) / 2
    d = b - a
    normal = np.array([-d[1], d[0]])
    ctrl = mid + normal * bulge
    w0, w1, w2 = _CURVE_W
    return w0 * a + w1 * ctrl + w2 * b


def _clipped(img, poly, draw):
    """Run ``draw(patch, origin)`` on a copy of the patch under ``poly`` and keep it only inside."""
    (x0, y0), (x1, y1) = poly.min(0).tolist(), poly.max(0).tolist()
    h, w = img.shape[:2]
    x0, y0 = max(math.floor(x0) - 1, 0), max(math.floor(y0) - 1, 0)
    x1, y1 = min(math.ceil(x1) + 2, w), min(math.ceil(y1) + 2, h)
    if x1 <= x0 or y1 <= y0:
        return
    patch = img[y0:y1, x0:x1]
    work = patch.copy()
    draw(work, np.array([x0, y0], np.float64))
    mask = np.zeros(patch.shape[:2], np.uint8)
    cv2.fillPoly(mask, [_fx(poly - [x0, y0])], 255, cv2.LINE_AA, _SUBPIXEL)
    # patch = trunc(work * a + patch * (1 - a)) in float32, a = mask / 255 (assigning the
    # float sum to the uint8 patch truncates, as astype does).
    a = mask.astype(np.float32)
    a /= 255.0
    a = a[..., None]
    blend = work * a
    blend += patch * (1 - a)
    patch[:] = blend


def head_extent(geom: FaceGeometry) -> np.ndarray:
    """x0, y0, x1, y1 of everything the head drawing touches (hair and ears included)."""
    pts = np.vstack([geom.points, geom.skull, geom.to_image([[-1.35, 0.5], [1.35, 0.5], [0, 1.9], [-1.3, -1.45], [1.3, -1.45]])])
    return np.array([*pts.min(0), *pts.max(0)])


def draw_body(img: np.ndarray, geom: FaceGeometry, ident: Identity) -> None:
    """Neck and shoulders below the head (drawn first; the head covers their top)."""
    to = geom.to_image
    shirt = to([[-0.42, 1.55], [-1.3, 1.85], [-2.3, 2.3], [-2.6, 4.5], [2.6, 4.5], [2.3, 2.3], [1.3, 1.85], [0.42, 1.55]])
    _poly(img, shirt, ident.clothes)
    _line(img, to([[-0.42, 1.58], [0, 1.95], [0.42, 1.58]]), ident.clothes * 0.7, geom.pose.size * 0.05)
    neck = to([[-0.48, 0.7], [0.48, 0.7], [0.45, 1.6], [0, 1.85], [-0.45, 1.6]])
    _poly(img, neck, ident.skin * 0.82)


_WHITE = np.array([255.0, 255.0, 255.0])
_BROW_PROFILE = np.array([0.6, 0.9, 1.0, 1.0, 0.85])  # thickness along a brow, outer end first
_CREASE_SPREAD = np.array([[0.1], [0.45], [0.45], [0.1]])  # eyelid crease: upper lid points pushed out
_SCLERA = np.array([235, 238, 240]) * 0.92

# The hairline across the forehead (canonical x, and y offsets from ident.hairline): wavy, or
# a fringe's tighter curl.
_HAIR_T = np.linspace(0, 1, 9)
_HAIR_X = -0.97 + 1.94 * _HAIR_T
_HAIRLINE_CURVE, _HAIRLINE_WAVE = 0.2 * _HAIR_X ** 4, 0.04 * np.sin(_HAIR_T * np.pi * 5)
_FRINGE_CURVE, _FRINGE_WAVE = 0.12 * np.abs(_HAIR_X) ** 2, 0.05 * np.sin(_HAIR_T * np.pi * 9)


def draw_head(img: np.ndarray, geom: FaceGeometry, ident: Identity, aus: np.ndarray, light: np.ndarray) -> None:
    """Draw the head into ``img`` (a region already offset so geom is in its coordinates).

    ``light`` is a unit 2-vector: where the light comes from, for the shading gradient.
    """
    aus = np.clip(np.asarray(aus, np.float64) + ident.au_bias, 0, 5) / 5.0
    a = dict(zip(DRAWN_AUS, aus.tolist()))  # plain floats: cheap scalar arithmetic below
    p = geom.points
    size = geom.pose.size
    to = geom.to_image
    skin = ident.skin
    yaw = geom.pose.yaw
    head = np.vstack([p[:17], geom.skull])
    skull, skull_c = geom.skull, geom.skull.mean(0)

    # Hair behind the head (long styles reach the shoulders).
    if ident.hair_style in ("long", "bun"):
        if ident.hair_style == "long":
            back = to([[-1.12, -0.2], [-1.2, 0.6], [-1.05, 1.5], [-0.5, 1.35], [0.5, 1.35], [1.05, 1.5], [1.2, 0.6], [1.12, -0.2]])
        else:
            back = to([[-0.45, -1.25], [-0.35, -1.55], [0, -1.65], [0.35, -1.55], [0.45, -1.25]])
        _poly(img, np.vstack([back, skull * 1.0 + (skull - skull_c) * 0.08]), ident.hair)
    # Ears; the far one hides when the head is turned.
    for sx in (-1, 1):
        if sx * yaw < -12:
            continue
        c = geom.point(sx * 0.98, -0.05, -0.2)
        _ellipse(img, c, (size * 0.14, size * 0.26), geom.pose.roll, skin * 0.9)
        _ellipse(img, c, (size * 0.07, size * 0.16), geom.pose.roll, skin * 0.75)

    # The head, shaded: darker towards the edge and away from the light.
    _poly(img, head, skin)
    _shade(img, head, geom, light, skin)
    # Highlights where the light catches the forehead, the nose bridge and the cheekbones.
    hi = _mix(skin, _WHITE, 0.1)
    lx = min(1.0, max(-1.0, float(light[0]))) * 0.1
    _ellipse(img, geom.point(lx, -0.6, 0.4), (size * 0.3, size * 0.13), geom.pose.roll, hi)
    _ellipse(img, geom.point(0, 0.05, 0.55), (size * 0.05, size * 0.16), geom.pose.roll, hi)

    # Cheeks: a soft warm tone that rides up with AU6 and out with AU12.
    for sx in (-1, 1):
        c = geom.point(sx * (0.52 + 0.05 * a[12]), 0.25 - 0.12 * a[6], 0.3)
        _ellipse(img, c, (size * 0.2, size * 0.14), geom.pose.roll, _mix(skin, ident.lips, 0.18 + 0.2 * a[6]))

    # Hair on top of the head (never over the brows).
    if ident.hair_style != "bald":
        hl = ident.hairline
        if ident.hair_style == "fringe":
            fringe = np.stack([_HAIR_X, hl + _FRINGE_CURVE + _FRINGE_WAVE], 1)
        else:
            fringe = np.stack([_HAIR_X, hl + _HAIRLINE_CURVE + _HAIRLINE_WAVE], 1)
        fringe = to(fringe)
        cap = np.vstack([fringe, (skull - skull_c) * 1.06 + skull_c])
        _poly(img, cap, ident.hair)
        if ident.hair_style == "short":
            _line(img, fringe, ident.hair * 0.7, size * 0.03)
    else:
        _poly(img, to([[-0.99, -0.25], [-1.0, -0.55], [-0.9, -0.45], [-0.95, -0.2]]), ident.hair)
        _poly(img, to([[0.99, -0.25], [1.0, -0.55], [0.9, -0.45], [0.95, -0.2]]), ident.hair)

    # Forehead wrinkles: AU1 in the middle, AU2 at the sides (and some with age).
    age = ident.age * 0.25
    for y in (-0.62, -0.70, -0.78):
        if y < ident.hairline + 0.05:
            continue
        mid = max(a[1], a[2] * 0.4, age)
        if mid > 0.2:
            col = _mix(skin, skin * 0.55, min(1, mid * 0.9))
            _line(img, to(_curve([-0.3, y + 0.02], [0.3, y + 0.02], 0.12)), col, size * 0.022)
        if a[2] > 0.25:
            col = _mix(skin, skin * 0.55, min(1, a[2] * 0.9))
            for sx in (-1, 1):
                _line(img, to(_curve([sx * 0.35, y + 0.03], [sx * 0.62, y + 0.06], -0.1 * sx)), col, size * 0.02)
    # Glabella: vertical lines between the brows with AU4.
    if a[4] > 0.2:
        col = _mix(skin, skin * 0.5, min(1, a[4]))
        for sx in (-1, 1):
            _line(img, to([[sx * 0.07, -0.42], [sx * 0.05, -0.28]]), col, size * 0.025)

    # Brows: thickest in the middle, thinning towards the outer end.
    brow_colour = np.minimum(_mix(ident.hair * 0.7, skin, 0.1), skin * 0.55)
    for idx in (BROW_L, BROW_R):
        pts = p[idx]
        th = size * ident.brow_thickness * _BROW_PROFILE
        if idx[0] == 22:
            th = th[::-1]
        offset = _normals(pts) * th[:, None]
        _poly(img, np.vstack([pts - offset, (pts + offset)[::-1]]), brow_colour)

    # Eyes.
    for idx in (EYE_L, EYE_R):
        _draw_eye(img, p[idx], geom, ident, a, yaw)

    # Nose: bridge shadow on the side away from the light, wings, nostrils.
    side = 1 if yaw >= 0 else -1
    bridge = p[27:30] + [-side * size * 0.09, 0]
    _line(img, bridge, skin * 0.8, size * 0.03)
    tip = p[30]
    _ellipse(img, tip + [0, size * 0.02], (size * 0.1, size * 0.075), geom.pose.roll, _mix(skin, _WHITE, 0.12))
    wing_l = _curve(p[31] + (p[31] - tip) * 0.3, p[32], 0.5)
    wing_r = _curve(p[34], p[35] + (p[35] - tip) * 0.3, 0.5)
    _line(img, wing_l, skin * 0.68, size * 0.03)
    _line(img, wing_r, skin * 0.68, size * 0.03)
    for k in (32, 34):
        _ellipse(img, p[k] + (p[33] - p[k]) * 0.1 - (p[33] - p[27]) * 0.02, (size * 0.045, size * 0.022),
                 geom.pose.roll, skin * 0.45)
    # AU9: horizontal wrinkles across the bridge.
    if a[9] > 0.15:
        col = _mix(skin, skin * 0.45, min(1, a[9] * 1.2))
        for y in (-0.16, -0.09, -0.02):
            _line(img, to([[-0.09, y, 0.45], [0, y - 0.015, 0.5], [0.09, y, 0.45]]), col, size * 0.022)

    # Nasolabial folds: deeper with AU12, AU6, AU9 and age.
    fold = min(1.0, 0.2 + 0.8 * a[12] + 0.3 * a[6] + 0.5 * a[9] + 0.2 * ident.age)
    for wing, corner, sx in ((p[31], p[48], -1), (p[35], p[54], 1)):
        start = wing + (wing - p[33]) * 0.35
        end = corner + np.array([sx * size * 0.06, size * 0.05])
        _line(img, _curve(start, end, sx * 0.12 * (1 if geom.pose.roll < 90 else -1)),
              _mix(skin, skin * 0.55, fold), size * (0.02 + 0.015 * fold))

    # Cheek lines (crow's feet) with AU6, a bulge under the lower lid with AU7 and AU6.
    if a[6] > 0.15:
        col = _mix(skin, skin * 0.5, min(1, a[6] * 1.2))
        for sx in (-1, 1):
            for dy in (-0.05, 0.0, 0.05):
                q = to([[sx * 0.62, -0.11 + dy * 1.2, 0.2], [sx * 0.74, -0.11 + dy * 2.4, 0.15]])
                _line(img, q, col, size * 0.02)
    if max(a[7], a[6]) > 0.15:
        col = _mix(skin, skin * 0.55, min(1, max(a[7], a[6] * 0.6) * 1.2))
        for idx in (EYE_L, EYE_R):
            low = p[idx][[3, 4, 5, 0]] + [0, size * 0.05]
            _line(img, low, col, size * 0.02)

    _draw_mouth(img, geom, ident, a)

    # AU20: stretch folds running down from the mouth corners.
    if a[20] > 0.15:
        col = _mix(skin, skin * 0.55, min(1, a[20] * 1.2))
        for c, sx in ((p[48], -1), (p[54], 1)):
            _line(img, np.array([c + [sx * size * 0.05, size * 0.02], c + [sx * size * 0.1, size * 0.22]]), col, size * 0.022)

    # AU17: a chin boss bulging under the lower lip, with a dimpled crease above it.
    if a[17] > 0.15:
        col = _mix(skin, skin * 0.5, min(1, a[17] * 1.2))
        mid = p[57] * 0.6 + p[8] * 0.4
        _line(img, _curve(mid + [-size * 0.17, 0], mid + [size * 0.17, 0], -0.3), col, size * 0.03)
        for dx in (-0.06, 0.0, 0.06):
            _ellipse(img, mid + [dx * size, size * 0.1], (size * 0.018, size * 0.014), 0, col)

    if ident.beard > 0:
        beard = np.vstack([p[3:14], to([[0.55, 0.72], [0.3, 0.95], [0, 1.0], [-0.3, 0.95], [-0.55, 0.72]])])
        _clipped(img, beard, lambda w, o: _poly(w, beard - o, _mix(skin, ident.hair, 0.55 * ident.beard)))
    if ident.glasses:
        for idx in (EYE_L, EYE_R):
            c = p[idx].mean(0)
            _ellipse(img, c, (size * 0.22, size * 0.15), geom.pose.roll, (30, 30, 30), max(1, int(round(size * 0.03))))
        _line(img, np.array([p[39] + [size * 0.04, -size * 0.03], p[42] - [size * 0.04, size * 0.03]]), (30, 30, 30), size * 0.025)


def _normals(pts: np.ndarray) -> np.ndarray:
    # The tangent as np.gradient gives it (central differences, one-sided at the ends),
    # written out: np.gradient's generality costs more than the arithmetic here.
    d = np.empty_like(pts)
    d[1:-1] = (pts[2:] - pts[:-2]) / 2.0
    d[0], d[-1] = pts[1] - pts[0], pts[-1] - pts[-2]
    n = np.stack([-d[:, 1], d[:, 0]], 1)
    return n / (np.sqrt(np.add.reduce(n * n, axis=1, keepdims=True)) + 1e-9)


def _shade(img, head, geom: FaceGeometry, light, skin) -> None:
    """Darken the head towards its edge and on the side away from the light."""
    (x0, y0), (x1, y1) = head.min(0).tolist(), head.max(0).tolist()
    h, w = img.shape[:2]
    x0, y0 = max(math.floor(x0), 0), max(math.floor(y0), 0)
    x1, y1 = min(math.ceil(x1) + 1, w), min(math.ceil(y1) + 1, h)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return
    patch = img[y0:y1, x0:x1]
    ph, pw = patch.shape[:2]
    size = geom.pose.size
    # The soft edge: the head mask blurred at a quarter of the resolution (4x cheaper).
    q = 4
    small = np.zeros(((ph + q - 1) // q, (pw + q - 1) // q), np.uint8)
    cv2.fillPoly(small, [_fx((head - [x0, y0]) / q)], 255, cv2.LINE_AA, _SUBPIXEL)
    k = max(3, int(size * 0.45 / q) | 1)
    soft = cv2.resize(cv2.GaussianBlur(small, (k, k), 0), (pw, ph), interpolation=cv2.INTER_LINEAR)
    # The gain is a float32 image computed in place: float64 temporaries of the patch size
    # cost more than the rest of the shading.
    cx, cy = (geom.points[27:31].mean(0) - [x0, y0]).tolist()
    lx, ly = float(light[0]) / size, float(light[1]) / size
    gx = np.clip((np.arange(pw, dtype=np.float32) - cx) * lx, -1.5, 1.5)
    gy = np.clip((np.arange(ph, dtype=np.float32) - cy) * ly, -1.5, 1.5)
    # Dark skin is shaded less: the same relative darkening would swallow its features.
    edge = 0.62 + 0.18 * min(1.0, max(0.0, 1 - sum(skin.tolist()) / 3 / 160))
    # gain = (edge + soft * (1 - edge) / 255) * (1 + 0.12 * (gy + gx))
    gain = soft.astype(np.float32)
    gain *= (1 - edge) / 255
    gain += edge
    tilt = np.add.outer(gy, gx)
    tilt *= 0.12
    tilt += 1.0
    gain *= tilt
    # Only inside the head: outside, gain 1 (the mask at full resolution keeps the edge
    # crisp): g = 1 + (gain - 1) * mask / 255.
    mask = np.zeros((ph, pw), np.uint8)
    cv2.fillPoly(mask, [_fx(head - [x0, y0])], 255, cv2.LINE_AA, _SUBPIXEL)
    m = mask.astype(np.float32)
    m *= 1 / 255
    gain -= 1
    gain *= m
    gain += 1
    patch[:] = cv2.multiply(patch, cv2.cvtColor(gain, cv2.COLOR_GRAY2BGR), dtype=cv2.CV_8U)


def _draw_eye(img, pts, geom: FaceGeometry, ident: Identity, a, yaw) -> None:
    size = geom.pose.size
    skin = ident.skin
    centre = pts.mean(0)
    (x1, y1), (x2, y2), (x4, y4), (x5, y5) = pts[[1, 2, 4, 5]].tolist()
    opening = math.hypot(x1 - x5, y1 - y5) + math.hypot(x2 - x4, y2 - y4)
    # Eyelid crease and a shadow under the brow.
    up = pts[:4]
    crease = up + (up - centre) * _CREASE_SPREAD - [0, size * 0.03]
    _line(img, crease, skin * 0.7, size * 0.02)
    # The open eye: sclera, iris (shifted with gaze/yaw), pupil, clipped by the lids.
    iris_r = size * 0.075
    iris = centre + [math.sin(math.radians(yaw)) * size * 0.03, 0.0]

    def inside(work, o):
        _poly(work, pts - o, _SCLERA)
        c = iris - o
        _ellipse(work, c, (iris_r, iris_r), 0, ident.iris)
        _ellipse(work, c, (iris_r * 0.45, iris_r * 0.45), 0, (20, 20, 20))
        _ellipse(work, c + [-iris_r * 0.3, -iris_r * 0.35], (iris_r * 0.18, iris_r * 0.18), 0, (250, 250, 250))

    if opening > size * 0.03:
        _clipped(img, pts, inside)
    # Lids: a dark upper line (lashes) and a thin lower one.
    _line(img, up, (25, 25, 30), size * 0.035)
    _line(img, pts[[3, 4, 5, 0]], skin * 0.55, size * 0.015)


def _draw_mouth(img, geom: FaceGeometry, ident: Identity, a) -> None:
    p = geom.points
    size = geom.pose.size
    inner = p[LIPS_INNER]
    gap = (p[66, 1] - p[62, 1]) + (p[65, 1] - p[63, 1]) + (p[67, 1] - p[61, 1])
    if gap > size * 0.02:
        def interior(work, o):
            _poly(work, inner - o, (30, 25, 60))
            # Upper teeth hang from the upper inner lip; lower teeth show with a wide jaw drop.
            top = p[[60, 61, 62, 63, 64]] - o
            teeth = np.vstack([top, top[::-1] + [0, size * 0.07]])
            _poly(work, teeth, (225, 232, 238))
            if a[26] > 0.5:
                bot = p[[64, 65, 66, 67, 60]] - o
                _poly(work, np.vstack([bot, bot[::-1] - [0, size * 0.04]]), (200, 208, 215))
        _clipped(img, inner, interior)
    _poly(img, p[UPPER_LIP], ident.lips)
    _poly(img, p[LOWER_LIP], _mix(ident.lips, _WHITE, 0.06))
    _line(img, p[[48, 60, 61, 62, 63, 64, 54]], ident.lips * (0.5 - 0.2 * a[23]), size * (0.018 + 0.02 * a[23]))
    if a[23] > 0.2:  # pressed lips bulge the skin just outside the corners
        col = _mix(ident.skin, ident.skin * 0.55, min(1, a[23]))
        for c, sx in ((p[48], -1), (p[54], 1)):
            _ellipse(img, c + [sx * size * 0.03, 0], (size * 0.025, size * 0.04), 0, col, max(1, int(size * 0.015)))
    # A highlight on the lower lip.
    _line(img, (p[[57, 56]] + p[[66, 65]]) / 2 + [0, -size * 0.005], _mix(ident.lips, _WHITE, 0.25), size * 0.015)


def render_face(frame: np.ndarray, ident: Identity, aus: np.ndarray, pose: Pose, light=(-0.6, -0.8),
                soften: float = 0.6, body: bool = True) -> FaceGeometry:
    """Draw one face into ``frame`` (in place) and return its geometry in frame coordinates."""
    geom = face_geometry(ident, aus, pose)
    h, w = frame.shape[:2]
    if body:
        draw_body(frame, geom, ident)
    ext = head_extent(geom)
    x0, y0 = (np.floor(ext[:2]) - 2).astype(int)
    x1, y1 = (np.ceil(ext[2:]) + 3).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return geom
    roi = frame[y0:y1, x0:x1]
    draw_head(roi, geom.shifted(x0, y0), ident, aus, np.asarray(light, np.float64) / (np.linalg.norm(light) + 1e-9))
    if soften > 0:
        roi[:] = gaussian_blur(roi, soften * max(0.5, pose.size / 60.0))
    return geom
