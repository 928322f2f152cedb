"""The head: hair, ears, shaded skin, brows, eyes, nose, mouth, and the shading cues
(wrinkles, folds, teeth) that FACS describes for each action unit.

Drawn into a region of interest around the head whose corner is the origin of ``geom``
(see ``render.render_face``); ``head_extent`` bounds everything drawn here.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from .draw import clipped, curve, ellipse, line, mix, poly
from .geometry import FaceGeometry, au_fractions
from .landmarks import BROW_L, BROW_R, DRAWN_AUS, EYE_L, EYE_R
from .face_parts import draw_eye, draw_mouth
from .identity import Identity


def head_extent(geom: FaceGeometry) -> np.ndarray:
    """x0, y0, x1, y1 of everything the head drawing touches (hair and ears included)."""
    pts = np.vstack([geom.points, geom.skull, geom.to_image([[-1.35, 0.5], [1.35, 0.5], [0, 1.9], [-1.3, -1.45], [1.3, -1.45]])])
    return np.array([*pts.min(0), *pts.max(0)])


_WHITE = np.array([255.0, 255.0, 255.0])
_BROW_PROFILE = np.array([0.6, 0.9, 1.0, 1.0, 0.85])  # thickness along a brow, outer end first

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
    a = dict(zip(DRAWN_AUS, au_fractions(ident, aus).tolist()))  # plain floats: cheap scalar arithmetic below
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
        poly(img, np.vstack([back, skull * 1.0 + (skull - skull_c) * 0.08]), ident.hair)
    # Ears; the far one hides when the head is turned.
    for sx in (-1, 1):
        if sx * yaw < -12:
            continue
        c = geom.point(sx * 0.98, -0.05, -0.2)
        ellipse(img, c, (size * 0.14, size * 0.26), geom.pose.roll, skin * 0.9)
        ellipse(img, c, (size * 0.07, size * 0.16), geom.pose.roll, skin * 0.75)

    # The head, shaded: darker towards the edge and away from the light.
    poly(img, head, skin)
    _shade(img, head, geom, light, skin)
    # Highlights where the light catches the forehead, the nose bridge and the cheekbones.
    hi = mix(skin, _WHITE, 0.1)
    lx = min(1.0, max(-1.0, float(light[0]))) * 0.1
    ellipse(img, geom.point(lx, -0.6, 0.4), (size * 0.3, size * 0.13), geom.pose.roll, hi)
    ellipse(img, geom.point(0, 0.05, 0.55), (size * 0.05, size * 0.16), geom.pose.roll, hi)

    # Cheeks: a soft warm tone that rides up with AU6 and out with AU12.
    for sx in (-1, 1):
        c = geom.point(sx * (0.52 + 0.05 * a[12]), 0.25 - 0.12 * a[6], 0.3)
        ellipse(img, c, (size * 0.2, size * 0.14), geom.pose.roll, mix(skin, ident.lips, 0.18 + 0.2 * a[6]))

    # Hair on top of the head (never over the brows).
    if ident.hair_style != "bald":
        hl = ident.hairline
        if ident.hair_style == "fringe":
            fringe = np.stack([_HAIR_X, hl + _FRINGE_CURVE + _FRINGE_WAVE], 1)
        else:
            fringe = np.stack([_HAIR_X, hl + _HAIRLINE_CURVE + _HAIRLINE_WAVE], 1)
        fringe = to(fringe)
        cap = np.vstack([fringe, (skull - skull_c) * 1.06 + skull_c])
        poly(img, cap, ident.hair)
        if ident.hair_style == "short":
            line(img, fringe, ident.hair * 0.7, size * 0.03)
    else:
        poly(img, to([[-0.99, -0.25], [-1.0, -0.55], [-0.9, -0.45], [-0.95, -0.2]]), ident.hair)
        poly(img, to([[0.99, -0.25], [1.0, -0.55], [0.9, -0.45], [0.95, -0.2]]), ident.hair)

    # Forehead wrinkles: AU1 in the middle, AU2 at the sides (and some with age).
    age = ident.age * 0.25
    for y in (-0.62, -0.70, -0.78):
        if y < ident.hairline + 0.05:
            continue
        mid = max(a[1], a[2] * 0.4, age)
        if mid > 0.2:
            col = mix(skin, skin * 0.55, min(1, mid * 0.9))
            line(img, to(curve([-0.3, y + 0.02], [0.3, y + 0.02], 0.12)), col, size * 0.022)
        if a[2] > 0.25:
            col = mix(skin, skin * 0.55, min(1, a[2] * 0.9))
            for sx in (-1, 1):
                line(img, to(curve([sx * 0.35, y + 0.03], [sx * 0.62, y + 0.06], -0.1 * sx)), col, size * 0.02)
    # Glabella: vertical lines between the brows with AU4.
    if a[4] > 0.2:
        col = mix(skin, skin * 0.5, min(1, a[4]))
        for sx in (-1, 1):
            line(img, to([[sx * 0.07, -0.42], [sx * 0.05, -0.28]]), col, size * 0.025)

    # Brows: thickest in the middle, thinning towards the outer end.
    brow_colour = np.minimum(mix(ident.hair * 0.7, skin, 0.1), skin * 0.55)
    for idx in (BROW_L, BROW_R):
        pts = p[idx]
        th = size * ident.brow_thickness * _BROW_PROFILE
        if idx[0] == 22:
            th = th[::-1]
        offset = _normals(pts) * th[:, None]
        poly(img, np.vstack([pts - offset, (pts + offset)[::-1]]), brow_colour)

    # Eyes.
    for idx in (EYE_L, EYE_R):
        draw_eye(img, p[idx], geom, ident, a, yaw)

    # Nose: bridge shadow on the side away from the light, wings, nostrils.
    side = 1 if yaw >= 0 else -1
    bridge = p[27:30] + [-side * size * 0.09, 0]
    line(img, bridge, skin * 0.8, size * 0.03)
    tip = p[30]
    ellipse(img, tip + [0, size * 0.02], (size * 0.1, size * 0.075), geom.pose.roll, mix(skin, _WHITE, 0.12))
    wing_l = curve(p[31] + (p[31] - tip) * 0.3, p[32], 0.5)
    wing_r = curve(p[34], p[35] + (p[35] - tip) * 0.3, 0.5)
    line(img, wing_l, skin * 0.68, size * 0.03)
    line(img, wing_r, skin * 0.68, size * 0.03)
    for k in (32, 34):
        ellipse(img, p[k] + (p[33] - p[k]) * 0.1 - (p[33] - p[27]) * 0.02, (size * 0.045, size * 0.022),
                 geom.pose.roll, skin * 0.45)
    # AU9: horizontal wrinkles across the bridge.
    if a[9] > 0.15:
        col = mix(skin, skin * 0.45, min(1, a[9] * 1.2))
        for y in (-0.16, -0.09, -0.02):
            line(img, to([[-0.09, y, 0.45], [0, y - 0.015, 0.5], [0.09, y, 0.45]]), col, size * 0.022)

    # Nasolabial folds: deeper with AU12, AU6, AU9, AU10 and age.
    fold = min(1.0, 0.2 + 0.8 * a[12] + 0.3 * a[6] + 0.5 * a[9] + 0.2 * ident.age + 0.7 * a[10])
    for wing, corner, sx in ((p[31], p[48], -1), (p[35], p[54], 1)):
        start = wing + (wing - p[33]) * 0.35
        end = corner + np.array([sx * size * 0.06, size * 0.05])
        line(img, curve(start, end, sx * 0.12 * (1 if geom.pose.roll < 90 else -1)),
              mix(skin, skin * 0.55, fold), size * (0.02 + 0.015 * fold))

    # Cheek lines (crow's feet) with AU6, a bulge under the lower lid with AU7 and AU6.
    if a[6] > 0.15:
        col = mix(skin, skin * 0.5, min(1, a[6] * 1.2))
        for sx in (-1, 1):
            for dy in (-0.05, 0.0, 0.05):
                q = to([[sx * 0.62, -0.11 + dy * 1.2, 0.2], [sx * 0.74, -0.11 + dy * 2.4, 0.15]])
                line(img, q, col, size * 0.02)
    if max(a[7], a[6]) > 0.15:
        col = mix(skin, skin * 0.55, min(1, max(a[7], a[6] * 0.6) * 1.2))
        for idx in (EYE_L, EYE_R):
            low = p[idx][[3, 4, 5, 0]] + [0, size * 0.05]
            line(img, low, col, size * 0.02)

    draw_mouth(img, geom, ident, a)

    # AU20: stretch folds running down from the mouth corners.
    if a[20] > 0.15:
        col = mix(skin, skin * 0.55, min(1, a[20] * 1.2))
        for c, sx in ((p[48], -1), (p[54], 1)):
            line(img, np.array([c + [sx * size * 0.05, size * 0.02], c + [sx * size * 0.1, size * 0.22]]), col, size * 0.022)

    # AU17: a chin boss bulging under the lower lip, with a dimpled crease above it.
    if a[17] > 0.15:
        col = mix(skin, skin * 0.5, min(1, a[17] * 1.2))
        mid = p[57] * 0.6 + p[8] * 0.4
        line(img, curve(mid + [-size * 0.17, 0], mid + [size * 0.17, 0], -0.3), col, size * 0.03)
        for dx in (-0.06, 0.0, 0.06):
            ellipse(img, mid + [dx * size, size * 0.1], (size * 0.018, size * 0.014), 0, col)

    if ident.beard > 0:
        beard = np.vstack([p[3:14], to([[0.55, 0.72], [0.3, 0.95], [0, 1.0], [-0.3, 0.95], [-0.55, 0.72]])])
        clipped(img, beard, lambda w, o: poly(w, beard - o, mix(skin, ident.hair, 0.55 * ident.beard)))
    if ident.glasses:
        for idx in (EYE_L, EYE_R):
            c = p[idx].mean(0)
            ellipse(img, c, (size * 0.22, size * 0.15), geom.pose.roll, (30, 30, 30), max(1, int(round(size * 0.03))))
        line(img, np.array([p[39] + [size * 0.04, -size * 0.03], p[42] - [size * 0.04, size * 0.03]]), (30, 30, 30), size * 0.025)


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
    # The soft edge: the head mask blurred at a quarter of the resolution (it is soft anyway).
    q = 4
    small = np.zeros(((ph + q - 1) // q, (pw + q - 1) // q), np.uint8)
    poly(small, (head - [x0, y0]) / q, 255)
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
    poly(mask, head - [x0, y0], 255)
    m = mask.astype(np.float32)
    m *= 1 / 255
    gain -= 1
    gain *= m
    gain += 1
    patch[:] = cv2.multiply(patch, cv2.cvtColor(gain, cv2.COLOR_GRAY2BGR), dtype=cv2.CV_8U)
