"""The neutral face: its 68 points (the iBUG order) in the canonical frame, their groups, and
the action units the renderer draws (``geometry`` moves the points; ``identity`` shapes them)."""
from __future__ import annotations

import numpy as np

#: The action units the renderer draws, in the order of every intensity vector. The last,
#: :data:`LATER_AUS`, are the 2022 label set's (ABAW 2022+ labels AU10 and AU24): drawn
#: apart, so that faces without them keep the exact bytes they had before them.
DRAWN_AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 12, 15, 17, 20, 23, 25, 26, 10, 24)
LATER_AUS: tuple[int, ...] = (10, 24)
AU_INDEX = {au: i for i, au in enumerate(DRAWN_AUS)}
#: What each drawn AU is, for the contact sheet and the data card.
AU_DESCRIPTIONS = {
    1: "inner brow raiser", 2: "outer brow raiser", 4: "brow lowerer", 5: "upper lid raiser",
    6: "cheek raiser", 7: "lid tightener", 9: "nose wrinkler", 12: "lip corner puller",
    15: "lip corner depressor", 17: "chin raiser", 20: "lip stretcher", 23: "lip tightener",
    25: "lips part", 26: "jaw drop", 10: "upper lip raiser", 24: "lip pressor",
}

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
