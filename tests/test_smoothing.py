"""The smoothed frame model and predict's --smooth, one smoother: moving averages against
pandas, gaps never crossed, rows in any order, the streamed version equal to the whole-table
one to the last bit (two tracks, gaps, every other frame), and the window chosen by the
validation total."""
import numpy as np
import pandas as pd
import pytest

from pipeline.core.index import FrameIndex
from pipeline.evaluation.smoothing import best_window
from pipeline.inference.smoothing import CentredStream, centred_mean, smooth


def test_centred_mean_is_pandas_centred_rolling_mean():
    x = np.random.default_rng(0).random((20, 3))
    for window in (1, 3, 5, 21, 41):
        expected = pd.DataFrame(x).rolling(window, center=True, min_periods=1).mean().to_numpy()
        np.testing.assert_allclose(centred_mean(x, window), expected, rtol=1e-12)


def test_smoothing_stays_within_runs_and_follows_rows_in_any_order():
    videos = np.array(["a"] * 5 + ["b"] * 3)
    frames = np.array([0, 1, 2, 6, 7, 0, 1, 2])  # video a loses its face on frames 3-5
    values = np.arange(8, dtype=np.float64)[:, None]
    preds = {"AU": np.repeat(values, 8, 1), "EXPR": np.repeat(values, 7, 1), "VA": np.repeat(values, 2, 1)}
    out = smooth(preds, videos, frames, 3)
    np.testing.assert_allclose(out["VA"][:, 0], [0.5, 1, 1.5, 3.5, 3.5, 5.5, 6, 6.5])
    shuffle = np.random.default_rng(1).permutation(8)
    shuffled = smooth({k: v[shuffle] for k, v in preds.items()}, videos[shuffle], frames[shuffle], 3)
    np.testing.assert_allclose(shuffled["AU"], out["AU"][shuffle])


def test_the_window_is_the_one_with_the_best_validation_total():
    rng = np.random.default_rng(0)
    n, videos = 400, np.repeat(["v1", "v2", "v3", "v4"], 100)
    frames = np.tile(np.arange(100), 4)
    truth = np.clip(np.sin(frames / 15 + np.repeat(np.arange(4), 100))[:, None] * [1, 0.8], -1, 1)
    expr = (truth[:, 0] > 0).astype(np.int8)
    au = (truth[:, [0] * 8] > 0.2).astype(np.int8)
    index = FrameIndex(uid=np.arange(n).astype(str), video=videos, frame=frames, shard=np.array([""] * n),
                       row=np.zeros(n, int), au=au, expr=expr, va=truth.astype(np.float32), weight=np.ones(n))
    noisy = truth + rng.normal(0, 0.5, truth.shape)  # noise: averaging neighbours helps
    p_expr = np.zeros((n, 7))
    p_expr[:, 0], p_expr[:, 1] = 1 - (noisy[:, 0] > 0), noisy[:, 0] > 0
    preds = {"AU": 1 / (1 + np.exp(-3 * noisy[:, [0] * 8])), "EXPR": p_expr, "VA": np.clip(noisy, -1, 1)}
    window, totals = best_window(index, preds)
    assert window > 1 and totals[window] == max(totals.values()) and totals[window] > totals[1] + 0.1


@pytest.mark.parametrize("window, step", [(1, 1), (3, 1), (5, 2), (9, 1)])
def test_the_stream_gives_the_tables_numbers_bit_for_bit_in_frame_order(window, step):
    """Two face tracks over 60 predicted frames (every ``step``-th frame), each lost now and
    then: streamed, each track's values equal ``smooth`` on that track's rows alone (a
    run per stretch of consecutive predicted frames), and frames leave in order."""
    rng = np.random.default_rng(window)
    numbers = np.arange(60) * step
    present = {0: rng.random(60) > 0.15, 1: rng.random(60) > 0.3}
    values = {t: rng.random((60, 3)).astype(np.float32) for t in present}
    columns = ["p_a", "p_b", "valence"]
    decided = []
    stream = CentredStream(window, step, columns, lambda row: decided.append(row["track"]))
    out = []
    for k, number in enumerate(numbers):
        rows = [{"face": True, "track": t, **dict(zip(columns, map(float, values[t][k])))}
                for t in present if present[t][k]] or [{"face": False, "track": -1}]
        out += stream.push(number, number, rows)
    out += stream.flush()
    assert [f for f, _ in out] == list(numbers) and len(decided) == sum(p.sum() for p in present.values())
    for t in present:
        kept = np.flatnonzero(present[t])
        # runs of the table version: consecutive frame numbers, so count predicted frames
        expected = smooth({"AU": values[t][kept], "EXPR": values[t][kept], "VA": values[t][kept]},
                          np.zeros(len(kept)), kept, window)["AU"]
        got = np.array([[r[c] for c in columns] for _, rows in out for r in rows if r["face"] and r["track"] == t],
                       dtype=np.float32)
        np.testing.assert_array_equal(got, expected)


def test_a_frame_without_the_face_ends_its_run():
    columns = ["valence"]
    stream = CentredStream(3, 1, columns, lambda row: None)
    seen = [1.0, 2.0, None, 10.0, 20.0]  # the face is lost on frame 2
    out = []
    for k, v in enumerate(seen):
        rows = [{"face": True, "track": 0, "valence": v}] if v is not None else [{"face": False, "track": -1}]
        out += stream.push(k, k, rows)
    out += stream.flush()
    assert [r[0].get("valence") for _, r in out] == [1.5, 1.5, None, 15.0, 15.0]


def _stream_by_track(frames_rows, window=3):
    """Push (number, {track: valence}) frames through a CentredStream; each track's smoothed valences."""
    stream = CentredStream(window, 1, ["valence"], lambda row: None)
    out = []
    for number, faces in frames_rows:
        rows = [{"face": True, "track": t, "valence": v} for t, v in faces.items()] or [{"face": False, "track": -1}]
        out += stream.push(number, number, rows)
    out += stream.flush()
    by_track = {}
    for _, rows in out:
        for r in rows:
            if r["face"]:
                by_track.setdefault(r["track"], []).append(r["valence"])
    return by_track


def test_two_tracks_in_the_same_frames_are_smoothed_separately():
    a, b = [100.0, 200.0, 300.0, 400.0, 500.0], [1.0, 2.0, 4.0, 8.0, 16.0]
    got = _stream_by_track([(k, {0: a[k], 1: b[k]}) for k in range(5)])
    # window 3 by hand: the ends average two frames
    assert got[0] == pytest.approx([150, 200, 300, 400, 450], rel=1e-12)
    assert got[1] == pytest.approx([1.5, 7 / 3, 14 / 3, 28 / 3, 12], rel=1e-12)


def test_a_track_missing_for_one_frame_starts_a_new_run_while_the_other_goes_on():
    a, b = [100.0, 200.0, 300.0, 400.0, 500.0], [1.0, 2.0, None, 8.0, 16.0]
    got = _stream_by_track([(k, {0: a[k]} | ({1: b[k]} if b[k] is not None else {})) for k in range(5)])
    assert got[0] == pytest.approx([150, 200, 300, 400, 450], rel=1e-12)
    assert got[1] == pytest.approx([1.5, 1.5, 12, 12], rel=1e-12)  # runs [1, 2] and [8, 16]


def test_the_frame_where_the_face_is_missing_releases_the_run_at_once():
    stream = CentredStream(3, 1, ["valence"], lambda row: None)
    assert [f for f, _ in stream.push(0, 0, [{"face": True, "track": 0, "valence": 1.0}])] == []
    assert [f for f, _ in stream.push(1, 1, [{"face": True, "track": 0, "valence": 2.0}])] == [0]
    # the face is lost on frame 2: its run ends there, so frame 1 (mean of 1 and 2) and 2 leave now
    ready = stream.push(2, 2, [{"face": False, "track": -1}])
    assert [f for f, _ in ready] == [1, 2] and ready[0][1][0]["valence"] == 1.5


def test_windows_with_the_same_total_go_to_the_smallest():
    # each video's predictions are constant (multiples of 1/4: exact means), so every
    # window gives the same predictions and the same total
    n, videos, frames = 40, np.repeat(["v1", "v2"], 20), np.tile(np.arange(20), 2)
    truth = np.stack([np.sin(np.arange(n) / 3), np.cos(np.arange(n) / 3)], 1)
    index = FrameIndex(uid=np.arange(n).astype(str), video=videos, frame=frames, shard=np.array([""] * n),
                       row=np.zeros(n, int), au=(truth[:, [0] * 8] > 0).astype(np.int8),
                       expr=(truth[:, 1] > 0).astype(np.int8), va=truth.astype(np.float32), weight=np.ones(n))
    first = videos == "v1"
    preds = {"AU": np.where(first, 0.75, 0.25)[:, None].repeat(8, 1),
             "EXPR": np.where(first[:, None], [0.25, 0.75, 0, 0, 0, 0, 0], [0.75, 0.25, 0, 0, 0, 0, 0]),
             "VA": np.where(first[:, None], [0.5, -0.25], [-0.5, 0.25])}
    window, totals = best_window(index, preds, windows=(5, 3, 1, 9))
    assert window == 1 and len(set(totals.values())) == 1
    assert best_window(index, preds, windows=(9, 3, 5))[0] == 3
