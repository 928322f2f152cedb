"""Anti-aliased OpenCV drawing at sub-pixel precision, and the blur shared with the cameras.

A face is about a hundred small primitives, so these helpers stay cheap per call: plain
Python numbers where numpy's per-call overhead would cost more than the arithmetic.
Colours are BGR (arrays or sequences).
"""
from __future__ import annotations

import math

import cv2
import numpy as np

_SUBPIXEL = 4  # cv2 drawing with 1/16 pixel precision
_SCALE = float(1 << _SUBPIXEL)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur whose kernel reaches two sigmas each way (OpenCV's default reaches
    three for uint8 images): the weights beyond hold under 5% of the mass, and the small
    blurs of the renderer and the cameras take 3 taps instead of 5."""
    k = 2 * math.ceil(2 * sigma) + 1
    return cv2.GaussianBlur(img, (k, k), sigma)


def _fx(pts: np.ndarray) -> np.ndarray:
    """Image points (n, 2) to cv2's fixed-point format (rounded half to even, as np.round)."""
    return np.rint(np.multiply(pts, _SCALE)).astype(np.int32)


def poly(img, pts, color):
    """A filled polygon through image points (n, 2)."""
    cv2.fillPoly(img, [_fx(pts)], _c(color), cv2.LINE_AA, _SUBPIXEL)


def line(img, pts, color, thickness):
    """An open polyline, at least one pixel thick."""
    cv2.polylines(img, [_fx(pts)], False, _c(color), max(1, int(round(thickness))), cv2.LINE_AA, _SUBPIXEL)


def ellipse(img, centre, axes, angle, color, thickness=-1):
    """An ellipse of half-axes ``axes`` turned by ``angle`` degrees; filled unless ``thickness`` > 0."""
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


def mix(a, b, t):
    """``a`` blended towards ``b`` by ``t`` (0 = a, 1 = b)."""
    return np.asarray(a, np.float64) * (1 - t) + np.asarray(b, np.float64) * t


# Quadratic Bezier weights (1-t)^2, 2(1-t)t, t^2 at 8 points (every curve drawn has 8).
_CURVE_T = np.linspace(0, 1, 8)[:, None]
_CURVE_W = ((1 - _CURVE_T) ** 2, 2 * (1 - _CURVE_T) * _CURVE_T, _CURVE_T ** 2)


def curve(a, b, bulge):
    """Points on a quadratic curve from a to b bowing sideways by ``bulge`` (x its length)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mid = (a + b) / 2
    d = b - a
    normal = np.array([-d[1], d[0]])
    ctrl = mid + normal * bulge
    w0, w1, w2 = _CURVE_W
    return w0 * a + w1 * ctrl + w2 * b


def clipped(img, outline, draw):
    """Run ``draw(patch, origin)`` on a copy of the patch under ``outline`` and keep it only inside."""
    (x0, y0), (x1, y1) = outline.min(0).tolist(), outline.max(0).tolist()
    h, w = img.shape[:2]
    x0, y0 = max(math.floor(x0) - 1, 0), max(math.floor(y0) - 1, 0)
    x1, y1 = min(math.ceil(x1) + 2, w), min(math.ceil(y1) + 2, h)
    if x1 <= x0 or y1 <= y0:
        return
    patch = img[y0:y1, x0:x1]
    work = patch.copy()
    draw(work, np.array([x0, y0], np.float64))
    mask = np.zeros(patch.shape[:2], np.uint8)
    poly(mask, outline - [x0, y0], 255)
    # patch = trunc(work * a + patch * (1 - a)) in float32, a = mask / 255 (assigning the
    # float sum to the uint8 patch truncates, as astype does).
    a = mask.astype(np.float32)
    a /= 255.0
    a = a[..., None]
    blend = work * a
    blend += patch * (1 - a)
    patch[:] = blend
