"""The fixed views of the soft-label cache: recomputable from (uid, view) alone."""
import hashlib

import numpy as np

from pipeline.training.views import CENTRE, frame_views, view_geometry


def test_view_geometry_is_the_documented_hash():
    for uid, view in (("affwild2/7-30-480x270/12", 0), ("expw/img_000001/2", 5), ("disfa/SN001/0", 7)):
        digest = hashlib.sha256(f"{uid}#{view}".encode()).digest()
        assert view_geometry(uid, view) == (digest[0] % 23, digest[1] % 23, view % 2 == 1)


def test_frame_views_cover_offsets_and_mirror_half():
    uids = [f"disfa/SN001/{i}" for i in range(300)]
    offsets, flips = frame_views(uids, 8)
    assert offsets.shape == (300, 8, 2) and flips.shape == (300, 8)
    assert offsets.min() == 0 and offsets.max() == 22
    assert flips[:, 1::2].all() and not flips[:, ::2].any()
    assert len(np.unique(offsets.reshape(-1, 2), axis=0)) > 400  # spread over the 23 x 23 positions
    np.testing.assert_array_equal(frame_views(uids[:5], 8)[0], offsets[:5])  # a frame's views do not depend on others
    centre, no_flip = frame_views(uids, 8, mode="centre")
    assert centre.shape == (300, 1, 2) and (centre == CENTRE).all() and not no_flip.any()
