"""Tests of pipeline.extraction.align: the similarity fit, the template, the warp and the five points
from 68 landmarks or a box, checked exactly against transforms built by hand."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.extraction import align as A


# --- geometry -------------------------------------------------------------------------


def similarity(angle_deg: float, scale: float, tx: float, ty: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), tx],
                     [scale * np.sin(a), scale * np.cos(a), ty]])


def test_similarity_transform_recovers_a_known_transform_exactly():
    truth = similarity(23.0, 1.7, -12.5, 40.25)
    src = A.ARCFACE_TEMPLATE_112 * 3 + [5.0, -7.0]
    dst = A.apply_transform(truth, src)
    assert np.allclose(A.similarity_transform(src, dst), truth, rtol=0, atol=1e-9)


def test_similarity_transform_never_mirrors():
    src = A.ARCFACE_TEMPLATE_112
    mirrored = src * [-1.0, 1.0]
    m = A.similarity_transform(src, mirrored)
    assert np.linalg.det(m[:, :2]) > 0


def test_similarity_transform_rejects_coincident_points():
    with pytest.raises(ValueError, match="coincide"):
        A.similarity_transform(np.ones((5, 2)), A.ARCFACE_TEMPLATE_112)


def test_template_scale_shrinks_around_the_crop_centre_and_resizes_on_pixel_centres():
    assert np.array_equal(A.template_points(), A.ARCFACE_TEMPLATE_112)
    half = A.template_points(112, 0.5)
    assert np.allclose(half - 55.5, 0.5 * (A.ARCFACE_TEMPLATE_112 - 55.5))
    assert np.allclose(A.template_points(224), (A.ARCFACE_TEMPLATE_112 + 0.5) * 2 - 0.5)


def test_align_face_puts_the_landmarks_on_the_template():
    # A synthetic image with five bright dots at known, rotated and scaled positions: after
    # alignment each dot's centroid must sit on its template point.
    truth = similarity(-15.0, 2.5, 60.0, 30.0)
    dots = A.apply_transform(truth, A.ARCFACE_TEMPLATE_112)
    image = np.zeros((420, 420, 3), np.uint8)
    for x, y in dots:
        cv2.circle(image, (int(round(x * 16)), int(round(y * 16))), 5 * 16, (255, 255, 255), -1,
                   lineType=cv2.LINE_AA, shift=4)
    crop = A.align_face(image, dots)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    gray = crop[..., 0].astype(np.float64)
    for tx, ty in A.ARCFACE_TEMPLATE_112:
        x0, y0 = int(tx) - 5, int(ty) - 5
        patch = gray[y0:y0 + 11, x0:x0 + 11]
        ys, xs = np.mgrid[y0:y0 + 11, x0:x0 + 11]
        centroid = np.array([(xs * patch).sum(), (ys * patch).sum()]) / patch.sum()
        assert np.allclose(centroid, [tx, ty], atol=0.15)


def test_align_face_antialiases_big_faces_and_keeps_the_geometry():
    # A face 8x larger than the crop goes through the INTER_AREA shrink: a fine
    # checkerboard must average to grey (a bare bilinear warp would alias it into stripes),
    # and the five points must still land on the template.
    dots = A.ARCFACE_TEMPLATE_112 * 8
    board = ((np.indices((900, 900)).sum(axis=0) % 2) * 255).astype(np.uint8)
    image = np.repeat(board[..., None], 3, axis=2)
    crop = A.align_face(image, dots)
    assert abs(crop[20:90, 20:90].astype(float).mean() - 127.5) < 2
    assert crop[20:90, 20:90].std() < 3
    m = A.similarity_transform(dots, A.template_points())
    assert np.sqrt(np.linalg.det(m[:, :2])) == pytest.approx(1 / 8)


def test_align_face_fills_outside_the_image_with_black():
    image = np.full((60, 60, 3), 200, np.uint8)
    crop = A.align_face(image, A.ARCFACE_TEMPLATE_112 * 0.5 + 40)  # face near the corner
    assert (crop[-1, -1] == 0).all() and (crop[0, 0] == 200).all()


def test_landmarks5_from_68_uses_the_ibug_points():
    points = np.zeros((68, 2))
    points[36:42] = [[10, 20], [12, 18], [14, 18], [16, 20], [14, 22], [12, 22]]  # mean (13, 20)
    points[42:48] = points[36:42] + [30, 2]                                     # mean (43, 22)
    points[30] = [28, 40]
    points[48] = [15, 55]
    points[54] = [41, 56]
    points[27:30] = 999  # neighbours that must not leak in
    points[49:54] = 999
    expected = [[13, 20], [43, 22], [28, 40], [15, 55], [41, 56]]
    assert np.allclose(A.landmarks5_from_68(points), expected)
    with pytest.raises(ValueError):
        A.landmarks5_from_68(points[:67])


def test_landmarks5_from_box_scales_with_the_box():
    unit = A.landmarks5_from_box([0, 0, 1, 1])
    assert np.allclose(unit, A.BOX_LANDMARK_FRACTIONS)
    moved = A.landmarks5_from_box([100, 50, 300, 300])
    assert np.allclose(moved, [100, 50] + A.BOX_LANDMARK_FRACTIONS * [200, 250])
    assert moved[0, 0] < moved[2, 0] < moved[1, 0] and moved[0, 1] < moved[2, 1] < moved[3, 1]
