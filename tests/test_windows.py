"""Windows for the temporal model, worked out by hand: short videos, exact multiples, gaps
from dropped frames, the end-aligned last window, fusing overlaps; bad frame tables."""
import numpy as np
import pytest

from pipeline.core.errors import DataError
from pipeline.temporal.windows import eval_windows, fuse, runs, train_windows


def test_runs_split_videos_and_gaps_from_dropped_frames():
    videos = np.array(["a"] * 6 + ["b"] * 3)
    frames = np.array([0, 1, 2, 5, 6, 7, 10, 11, 12])  # a loses its face on frames 3-4
    assert runs(videos, frames) == [(0, 3), (3, 6), (6, 9)]
    assert runs(np.array(["a"]), np.array([4])) == [(0, 1)]


def test_runs_split_at_a_one_frame_gap_and_keep_a_single_frame_run_at_the_end():
    videos = np.array(["a"] * 4 + ["b"] * 2 + ["c"])
    frames = np.array([0, 1, 3, 5, 7, 8, 2])  # a misses frames 2 and 4; c has one frame
    assert runs(videos, frames) == [(0, 2), (2, 3), (3, 4), (4, 6), (6, 7)]


@pytest.mark.parametrize("videos, frames, message", [
    (["a", "a", "a"], [0, 2, 1], "frame 1 comes after frame 2"),
    (["a", "a", "a"], [0, 1, 1], "frame 1 comes after frame 1"),
    (["a", "b", "a"], [0, 0, 1], "video a: its frames are not together"),
])
def test_runs_refuse_frames_out_of_order(videos, frames, message):
    with pytest.raises(DataError, match=message):
        runs(np.array(videos), np.array(frames))


def test_training_windows_overlap_by_half_and_end_on_the_last_frame():
    assert train_windows(0, 5, 8) == [(0, 5)]                       # shorter than one window
    assert train_windows(0, 8, 8) == [(0, 8)]                       # exactly one
    assert train_windows(0, 16, 8) == [(0, 8), (4, 12), (8, 16)]    # an exact multiple
    assert train_windows(10, 27, 8) == [(10, 18), (14, 22), (18, 26), (19, 27)]  # last moved back
    assert train_windows(0, 3, 1) == [(0, 1), (1, 2), (2, 3)]


def test_evaluation_windows_tile_with_the_last_aligned_to_the_end():
    assert eval_windows(0, 5, 8) == [(0, 5)]
    assert eval_windows(0, 16, 8) == [(0, 8), (8, 16)]
    assert eval_windows(3, 23, 8) == [(3, 11), (11, 19), (15, 23)]
    for length in (0, -1):
        with pytest.raises(DataError, match="sequence length"):
            eval_windows(0, 5, length)


def test_fuse_means_the_windows_holding_each_frame():
    windows = [(0, 3), (2, 5)]
    outputs = [np.array([[1.0], [2.0], [3.0]]), np.array([[5.0], [6.0], [7.0]])]
    np.testing.assert_allclose(fuse(6, windows, outputs), [[1], [2], [4], [6], [7], [np.nan]])
