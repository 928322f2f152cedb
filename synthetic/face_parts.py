"""The eyes and the mouth of the drawn head (``head.draw_head`` places them)."""
from __future__ import annotations

import math

import numpy as np

from .draw import clipped, ellipse, line, mix, poly
from .geometry import FaceGeometry
from .identity import Identity
from .landmarks import LIPS_INNER, LOWER_LIP, UPPER_LIP

_WHITE = np.array([255.0, 255.0, 255.0])
_CREASE_SPREAD = np.array([[0.1], [0.45], [0.45], [0.1]])  # eyelid crease: upper lid points pushed out
_SCLERA = np.array([235, 238, 240]) * 0.92


def draw_eye(img, pts, geom: FaceGeometry, ident: Identity, a, yaw) -> None:
    """One eye at its six points ``pts``: crease, sclera, iris following the yaw, lids."""
    size = geom.pose.size
    skin = ident.skin
    centre = pts.mean(0)
    (x1, y1), (x2, y2), (x4, y4), (x5, y5) = pts[[1, 2, 4, 5]].tolist()
    opening = math.hypot(x1 - x5, y1 - y5) + math.hypot(x2 - x4, y2 - y4)
    # Eyelid crease and a shadow under the brow.
    up = pts[:4]
    crease = up + (up - centre) * _CREASE_SPREAD - [0, size * 0.03]
    line(img, crease, skin * 0.7, size * 0.02)
    # The open eye: sclera, iris (shifted with gaze/yaw), pupil, clipped by the lids.
    iris_r = size * 0.075
    iris = centre + [math.sin(math.radians(yaw)) * size * 0.03, 0.0]

    def inside(work, o):
        poly(work, pts - o, _SCLERA)
        c = iris - o
        ellipse(work, c, (iris_r, iris_r), 0, ident.iris)
        ellipse(work, c, (iris_r * 0.45, iris_r * 0.45), 0, (20, 20, 20))
        ellipse(work, c + [-iris_r * 0.3, -iris_r * 0.35], (iris_r * 0.18, iris_r * 0.18), 0, (250, 250, 250))

    if opening > size * 0.03:
        clipped(img, pts, inside)
    # Lids: a dark upper line (lashes) and a thin lower one.
    line(img, up, (25, 25, 30), size * 0.035)
    line(img, pts[[3, 4, 5, 0]], skin * 0.55, size * 0.015)


def draw_mouth(img, geom: FaceGeometry, ident: Identity, a) -> None:
    """The lips, the mouth's inside and teeth when it opens, AU23's pressed corners and AU24's
    pressed lips."""
    p = geom.points
    size = geom.pose.size
    inner = p[LIPS_INNER]
    gap = (p[66, 1] - p[62, 1]) + (p[65, 1] - p[63, 1]) + (p[67, 1] - p[61, 1])
    if gap > size * 0.02:
        def interior(work, o):
            poly(work, inner - o, (30, 25, 60))
            # Upper teeth hang from the upper inner lip; lower teeth show with a wide jaw drop.
            top = p[[60, 61, 62, 63, 64]] - o
            teeth = np.vstack([top, top[::-1] + [0, size * 0.07]])
            poly(work, teeth, (225, 232, 238))
            if a[26] > 0.5:
                bot = p[[64, 65, 66, 67, 60]] - o
                poly(work, np.vstack([bot, bot[::-1] - [0, size * 0.04]]), (200, 208, 215))
        clipped(img, inner, interior)
    poly(img, p[UPPER_LIP], ident.lips)
    poly(img, p[LOWER_LIP], mix(ident.lips, _WHITE, 0.06))
    line(img, p[[48, 60, 61, 62, 63, 64, 54]], ident.lips * (0.5 - 0.2 * a[23]), size * (0.018 + 0.02 * a[23]))
    if a[23] > 0.2:  # pressed lips bulge the skin just outside the corners
        col = mix(ident.skin, ident.skin * 0.55, min(1, a[23]))
        for c, sx in ((p[48], -1), (p[54], 1)):
            ellipse(img, c + [sx * size * 0.03, 0], (size * 0.025, size * 0.04), 0, col, max(1, int(size * 0.015)))
    if a[24] > 0.2:  # pressed lips: a dark seam and the skin bunched under the lower lip
        line(img, p[[48, 60, 61, 62, 63, 64, 54]], ident.lips * 0.3, size * 0.03 * min(1, a[24] * 1.5))
        col = mix(ident.skin, ident.skin * 0.55, min(1, a[24]))
        line(img, (p[[59, 58, 57, 56, 55]] + [0, size * 0.05]), col, size * 0.02)
    # A highlight on the lower lip.
    line(img, (p[[57, 56]] + p[[66, 65]]) / 2 + [0, -size * 0.005], mix(ident.lips, _WHITE, 0.25), size * 0.015)
