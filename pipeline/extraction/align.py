"""Five-point similarity alignment onto the 112x112 ArcFace template, and the five points
from what the datasets ship (68 iBUG landmarks, a face box).

Pure numpy/OpenCV geometry, no detector: the synthetic generator and the readers use it
without importing torch. Conventions: images are ``uint8 [H, W, 3]``; coordinates are
``(x, y)`` in pixels with OpenCV's convention that pixel ``(i, j)`` has its centre at
integer ``(j, i)``; boxes are ``[x1, y1, x2, y2]``; the five points are ordered left eye,
right eye, nose tip, left mouth corner, right mouth corner, where "left" is the image's
left (the subject's right eye), as in MTCNN and InsightFace. Deterministic: the same
inputs give bit-identical output.
"""
from __future__ import annotations

import cv2
import numpy as np

# --- the alignment template -----------------------------------------------------------

TEMPLATE_SIZE = 112

#: Five reference points in a 112x112 crop, the ArcFace template of InsightFace
#: (``arcface_dst`` in ``python-package/insightface/utils/face_align.py``; the same
#: numbers as the 96x112 template of SphereFace/CosFace shifted 8 px right). It is the
#: de-facto standard for 112x112 faces from MTCNN landmarks, and Aff-Wild2's
#: ``cropped_aligned`` faces are 112x112 too. Rows: left eye, right eye, nose tip, left
#: mouth corner, right mouth corner, as (x, y) in OpenCV pixel coordinates.
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def template_points(size: int = TEMPLATE_SIZE, scale: float = 1.0) -> np.ndarray:
    """The five template points for a ``size`` x ``size`` crop, float64 [5, 2].

    ``scale`` shrinks (< 1, more context around the face) or grows (> 1, tighter crop) the
    template around the crop centre. Both the resize and the scaling work on pixel
    centres (the crop spans -0.5 .. size-0.5, its centre is (size-1)/2), so size=224 is
    exactly the 112 template at twice the resolution.
    """
    if size <= 0 or scale <= 0:
        raise ValueError(f"size and scale must be positive, got size={size}, scale={scale}")
    points = (ARCFACE_TEMPLATE_112 + 0.5) * (size / TEMPLATE_SIZE) - 0.5
    centre = (size - 1) / 2.0
    return centre + scale * (points - centre)


# --- geometry -------------------------------------------------------------------------


def similarity_transform(src_pts, dst_pts) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src to dst.

    Umeyama (1991), "Least-squares estimation of transformation parameters between two
    point patterns", without reflections (a face is never mirrored). Returns the 2x3
    matrix ``M`` with ``dst ~= M[:, :2] @ src + M[:, 2]``, ready for ``cv2.warpAffine``.
    """
    src = np.asarray(src_pts, dtype=np.float64)
    dst = np.asarray(dst_pts, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need two [n>=2, 2] point arrays, got {src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c**2).sum() / len(src)
    if src_var <= 1e-12:
        raise ValueError("source points coincide: no similarity transform is defined")
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    signs = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # the best fit is a reflection: forbid it
        signs[-1] = -1.0
    rotation = u @ np.diag(signs) @ vt
    scale = (s * signs).sum() / src_var
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


def apply_transform(matrix: np.ndarray, points) -> np.ndarray:
    """Apply a 2x3 affine ``matrix`` to points [..., 2]."""
    pts = np.asarray(points, dtype=np.float64)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def invert_transform(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix (e.g. to map crop points back into the image)."""
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


def align_face(image_rgb: np.ndarray, landmarks5, size: int = TEMPLATE_SIZE,
               scale: float = 1.0) -> np.ndarray:
    """Warp the face with these five landmarks onto the template: uint8 [size, size, 3].

    Bilinear interpolation (``INTER_LINEAR``); pixels that fall outside the image are
    black (``BORDER_CONSTANT``, value 0): replicating the edge would invent texture, and
    black is what InsightFace's aligner and most aligned face sets use. When the face is
    more than twice the crop's resolution, the face region is first shrunk with
    ``INTER_AREA`` (pixel averaging): a bilinear warp alone would alias (skip pixels).
    Pure OpenCV arithmetic on fixed inputs: deterministic.
    """
    image = np.asarray(image_rgb)
    matrix = similarity_transform(landmarks5, template_points(size, scale))
    zoom = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if zoom < 0.5:
        image, matrix = _shrink_region(image, matrix, size, zoom)
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def _shrink_region(image: np.ndarray, matrix: np.ndarray, size: int, zoom: float):
    """Cut the part of ``image`` the crop sees, shrink it by ``zoom`` with pixel
    averaging, and return it with the matrix that maps it (instead of ``image``) onto the
    crop. Only that region is resized, so a small face in a 4K frame stays cheap."""
    h, w = image.shape[:2]
    corners = np.array([[-1, -1], [size, -1], [-1, size], [size, size]], dtype=np.float64)
    seen = apply_transform(invert_transform(matrix), corners)
    x0, y0 = np.maximum(np.floor(seen.min(axis=0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(seen.max(axis=0)).astype(int) + 2, [w, h])
    if x1 - x0 < 2 or y1 - y0 < 2:  # the crop lies outside the image: nothing to shrink
        return image, matrix
    region = image[y0:y1, x0:x1]
    new_w = max(1, int(round((x1 - x0) * zoom)))
    new_h = max(1, int(round((y1 - y0) * zoom)))
    small = cv2.resize(region, (new_w, new_h), interpolation=cv2.INTER_AREA)
    fx, fy = new_w / (x1 - x0), new_h / (y1 - y0)
    # small pixel (u, v) has its centre at image ((u + .5) / fx - .5 + x0, ...)
    small_to_image = np.array([[1 / fx, 0, x0 + 0.5 / fx - 0.5],
                               [0, 1 / fy, y0 + 0.5 / fy - 0.5]])
    return small, _compose(matrix, small_to_image)


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2x3 affine ``outer o inner`` (apply inner first)."""
    return np.hstack([outer[:, :2] @ inner[:, :2], (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]])


# --- landmarks from what the datasets ship ---------------------------------------------


def landmarks5_from_68(points68) -> np.ndarray:
    """Five points from 68 iBUG landmarks (AFEW-VA): eye centres are the means of points
    36-41 and 42-47, nose tip 30, mouth corners 48 and 54 (0-based). float64 [5, 2]."""
    pts = np.asarray(points68, dtype=np.float64)
    if pts.shape != (68, 2):
        raise ValueError(f"expected 68 (x, y) landmarks, got shape {pts.shape}")
    return np.stack([pts[36:42].mean(axis=0), pts[42:48].mean(axis=0), pts[30], pts[48], pts[54]])


#: Where the template's five points sit inside an MTCNN face box, as fractions of the
#: box width (x) and height (y) from its top-left corner. Measured here: the astronaut of
#: ``skimage.data.astronaut()`` and her mirror image aligned to the template at scales
#: 0.5, 0.6 and 0.7 (so the whole head is in view), MTCNN run on each crop, the template
#: points expressed in its box; the mean of those six, made left-right symmetric. MTCNN
#: boxes are taller than wide (about 1.25:1), which is why x and y fractions differ.
#: Only an approximation from one face: ExpW's boxes come from another detector, so a
#: face aligned this way is roughly, not exactly, registered. Use it only when
#: :func:`refine_in_box` finds nothing.
BOX_LANDMARK_FRACTIONS = np.array(
    [
        [0.2752, 0.3301],
        [0.7248, 0.3301],
        [0.5000, 0.5376],
        [0.3139, 0.7494],
        [0.6861, 0.7494],
    ],
    dtype=np.float64,
)


def landmarks5_from_box(box) -> np.ndarray:
    """Approximate five points for a face box [x1, y1, x2, y2] (see
    :data:`BOX_LANDMARK_FRACTIONS`); float64 [5, 2] in the box's coordinates."""
    x1, y1, x2, y2 = np.asarray(box, dtype=np.float64)
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"empty face box {box}")
    return np.array([x1, y1]) + BOX_LANDMARK_FRACTIONS * np.array([x2 - x1, y2 - y1])


def aligned_crop(image: np.ndarray, size: int) -> tuple[np.ndarray | None, str]:
    """A face crop a dataset ships already aligned (Aff-Wild2's and s-Aff-Wild2's
    ``cropped_aligned``) at ``size`` x ``size``, or None and why it is no such crop: one
    far from square, or far from that size, is another picture."""
    h, w = image.shape[:2]
    if not (size / 2 <= min(h, w) and max(h, w) <= 4 * size and max(h, w) <= 1.25 * min(h, w)):
        return None, f"a {w}x{h} crop is not an aligned face (about {size}x{size} expected)"
    if (h, w) != (size, size):
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return image, ""
