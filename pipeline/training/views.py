"""The fixed views of a frame that the soft-label cache stores (docs/method.md, "Soft labels").

The teacher trains on a random 112 crop of the 134 resize plus a random flip, and a
student's distillation target must be the teacher's output on the very image the
student sees. So the cache holds the teacher's logits on K fixed views per frame, and a
student draws among exactly those views. View ``v`` of frame ``uid`` is a function of the
two alone, so anyone can recompute it:

- crop offsets ``(dy, dx)``: the first two bytes of SHA-256(``"<uid>#<v>"``), each modulo
  23 (the 134 - 112 + 1 possible positions);
- mirrored when ``v`` is odd (half of the views).

``centre`` mode stores one view, the evaluation's centre crop: the cheaper approximation
in which a student augments freely and every augmentation gets the centre's target.
"""
from __future__ import annotations

import hashlib

import numpy as np

from pipeline.core.images import IMAGE_SIZE, RESIZE

POSITIONS = RESIZE - IMAGE_SIZE + 1  # crop offsets 0..22 in each direction
CENTRE = (RESIZE - IMAGE_SIZE) // 2
MODES = ("views", "centre")


def view_geometry(uid: str, view: int) -> tuple[int, int, bool]:
    """``(dy, dx, mirrored)`` of view ``view`` of frame ``uid`` (see the module docstring)."""
    digest = hashlib.sha256(f"{uid}#{int(view)}".encode()).digest()
    return digest[0] % POSITIONS, digest[1] % POSITIONS, bool(view % 2)


def frame_views(uids, k: int, mode: str = "views") -> tuple[np.ndarray, np.ndarray]:
    """Offsets uint8 [n, k, 2] (dy, dx) and flips bool [n, k] of every frame's views."""
    if mode not in MODES:
        raise ValueError(f"unknown soft-label mode {mode!r}: use one of {MODES}")
    n = len(uids)
    if mode == "centre":
        return np.full((n, 1, 2), CENTRE, np.uint8), np.zeros((n, 1), bool)
    offsets, flips = np.empty((n, k, 2), np.uint8), np.empty((n, k), bool)
    for i, uid in enumerate(uids):
        for v in range(k):
            dy, dx, flips[i, v] = view_geometry(uid, v)
            offsets[i, v] = dy, dx
    return offsets, flips
