"""Who a face belongs to: the shape offsets, colours and style of one person.

Identity changes the neutral shape (eye size and spacing, brows, nose, mouth, lips, jaw,
chin, face length) and the colours of skin, lips, hair, eyes and clothes. The tables
are RGB, as colours are usually given; an Identity holds BGR, as OpenCV writes them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .landmarks import AU_INDEX, DRAWN_AUS, EYE_L, EYE_R, NEUTRAL

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
