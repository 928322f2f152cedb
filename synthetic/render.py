"""A person in a frame: shoulders and neck, then the head, drawn in a region of interest
around it and softened. Shading, hair, ears, neck, shoulders and a soft edge are what make
a face detector find a drawn face (docs/synthetic-data.md, "How a face is made").
"""
from __future__ import annotations

import numpy as np

from .draw import gaussian_blur, line, poly
from .geometry import FaceGeometry, Pose, face_geometry
from .head import draw_head, head_extent
from .identity import Identity


def draw_body(img: np.ndarray, geom: FaceGeometry, ident: Identity) -> None:
    """Neck and shoulders below the head (drawn first; the head covers their top)."""
    to = geom.to_image
    shirt = to([[-0.42, 1.55], [-1.3, 1.85], [-2.3, 2.3], [-2.6, 4.5], [2.6, 4.5], [2.3, 2.3], [1.3, 1.85], [0.42, 1.55]])
    poly(img, shirt, ident.clothes)
    line(img, to([[-0.42, 1.58], [0, 1.95], [0.42, 1.58]]), ident.clothes * 0.7, geom.pose.size * 0.05)
    neck = to([[-0.48, 0.7], [0.48, 0.7], [0.45, 1.6], [0, 1.85], [-0.45, 1.6]])
    poly(img, neck, ident.skin * 0.82)


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
