"""Videos as phones, editors and damage make them (written with PyAV, decoded by the
pipeline's OpenCV): a variable frame rate extracts in full, every frame on the decoder's
own time stamp; a decode gap, or a container listing more frames than it holds, never moves
a label (the video is skipped and counted); an edited video's container counting frames it
never shows is no "damage" for predict. Through the real ``extract`` and ``predict``
commands."""
import fractions
import json

import av
import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from skimage import data as skimage_data

from pipeline.core.provenance import ROOT
from stages.cli import main

N = 40
#: frames every 1/30 s, with two pauses (a phone dropping frames): the container's average
#: rate is about 17 frames/s, so frame / average rate is off by up to a second
TIMES = np.cumsum([0] + [1 / 30 + (0.5 if i in (14, 27) else 0) for i in range(N - 1)])


def frames(n: int = N) -> list[np.ndarray]:
    """A face (a photograph) drifting right by 6 pixels a frame: each stored face is told
    apart by where it was found."""
    face = cv2.resize(skimage_data.astronaut()[:260, 120:380], (150, 150), interpolation=cv2.INTER_AREA)
    out = []
    for k in range(n):
        frame = np.full((360, 640, 3), 60, np.uint8)
        frame[100:250, 100 + 6 * k:250 + 6 * k] = face
        out.append(frame)
    return out


def encode(path, pictures, times, codec="mpeg4", faststart=True, first_pts=0):
    """``pictures`` at ``times`` (seconds), as a real muxer writes them; ``first_pts`` < 0
    gives the first frames negative times, which an edit list then hides (as editors do)."""
    container = av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {})
    stream = container.add_stream(codec, rate=30)
    stream.width, stream.height, stream.pix_fmt = pictures[0].shape[1], pictures[0].shape[0], "yuv420p"
    stream.options = {"qscale": "2"} if codec == "mpeg4" else {}
    base = fractions.Fraction(1, 3000)
    stream.codec_context.time_base = base
    for picture, t in zip(pictures, times):
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
        frame.pts, frame.time_base = int(round(t * 3000)) + first_pts * 100, base
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def extract(*args):
    return run("extract", "--params", ROOT / "params.yaml", *args)


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def in_frame_order(out) -> bool:
    """Whether the stored faces were found 6 pixels further right frame after frame, as
    drawn (a face stored under another frame's number breaks the progression)."""
    table = pd.read_parquet(out / "frames.parquet")
    offset = table["lm0_x"] - 6 * table["frame"]  # where frame 0's face would be, by each frame
    return bool((np.abs(offset - offset.median()) < 3).all())  # one frame off is 6 pixels off


def affwild2(root, videos: dict) -> None:
    """An Aff-Wild2 (2020 layout) of raw videos: EXPR labels, one per frame, k % 7."""
    for name, path in videos.items():
        ann = root / "annotations" / "EXPR_Set" / "Training_Set" / f"{name}.txt"
        ann.parent.mkdir(parents=True, exist_ok=True)
        ann.write_text("Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise\n" + "".join(f"{k % 7}\n" for k in range(N)))
        (root / "videos").mkdir(exist_ok=True)
        path.rename(root / "videos" / path.name)


@pytest.mark.parametrize("suffix", [".mov", ".mp4"])
def test_a_variable_frame_rate_video_extracts_in_full_on_its_own_time_stamps(tmp_path, suffix):
    video = encode(tmp_path / f"phone{suffix}", frames(), TIMES)
    assert cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FPS) < 20  # the container's average: not 30
    out = tmp_path / "faces"
    result = extract("--source", "input", "--root", video, "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out / "frames.parquet")
    assert table["frame"].tolist() == list(range(N))  # every frame, none skipped
    np.testing.assert_allclose(table["timestamp"], TIMES, atol=5e-4)  # the true times, not frame / 20
    assert in_frame_order(out)  # each face is its own frame's
    assert json.loads((out / "extract.json").read_text())["rows_rejected"] == {}


def test_labelled_videos_keep_every_label_on_its_frame_or_are_skipped_whole(tmp_path):
    pictures = frames()
    root = tmp_path / "affwild2"
    gap = encode(tmp_path / "gap.mp4", pictures, TIMES)  # a decode gap: bytes damaged mid-file
    raw = bytearray(gap.read_bytes())
    raw[len(raw) // 2:len(raw) // 2 + 4000] = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    gap.write_bytes(bytes(raw))
    cut = encode(tmp_path / "cut.mp4", pictures, TIMES)  # lists 40 frames, holds about 24
    cut.write_bytes(cut.read_bytes()[:cut.stat().st_size * 6 // 10])
    affwild2(root, {"phone": encode(tmp_path / "phone.mp4", pictures, TIMES), "gap": gap, "cut": cut})
    out = tmp_path / "faces"
    result = extract("--source", "affwild2", "--root", root, "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out / "frames.parquet")
    assert set(table["video"]) == {"phone"}  # the damaged ones: nothing kept
    assert table["frame"].tolist() == list(range(N)) and table["expr"].tolist() == [k % 7 for k in range(N)]
    np.testing.assert_allclose(table["timestamp"], TIMES, atol=5e-4)
    assert in_frame_order(out)
    skipped = json.loads((out / "extract.json").read_text())["rows_rejected"]
    assert sum(v["count"] for v in skipped.values()) == 2 * N, skipped  # every label of both, counted
    assert all("labels cannot be placed exactly; video skipped" in reason for reason in skipped)


def test_unlabelled_damaged_video_keeps_what_decodes_in_order(tmp_path):
    cut = encode(tmp_path / "cut.mp4", frames(), TIMES)
    cut.write_bytes(cut.read_bytes()[:cut.stat().st_size * 6 // 10])
    out = tmp_path / "faces"
    assert extract("--source", "input", "--root", cut, "--out", out, "--quiet").exit_code == 0
    table = pd.read_parquet(out / "frames.parquet")
    k = len(table)
    assert 10 < k < N and table["frame"].tolist() == list(range(k))
    np.testing.assert_allclose(table["timestamp"], TIMES[:k], atol=5e-4)
    assert in_frame_order(out)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from test_predict import bundle as make_bundle

    return make_bundle.__wrapped__(tmp_path_factory)


def test_predict_times_frames_by_the_decoder_and_warns_only_for_real_damage(bundle, tmp_path):
    pictures = frames()
    phone = encode(tmp_path / "phone.mov", pictures, TIMES)
    edited = encode(tmp_path / "edited.mp4", pictures, np.arange(N) / 30, codec="libx264", first_pts=-3)
    cut = encode(tmp_path / "cut.mp4", pictures, np.arange(N) / 30)
    cut.write_bytes(cut.read_bytes()[:cut.stat().st_size * 6 // 10])
    assert int(cv2.VideoCapture(str(edited)).get(cv2.CAP_PROP_FRAME_COUNT)) == N  # lists N, shows N - 3
    result = run("predict", phone, edited, cut, "--model", bundle, "--out", tmp_path / "out", "--quiet", "--no-timeline")
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(tmp_path / "out" / "phone.csv")
    np.testing.assert_allclose(rows["timestamp"], TIMES, atol=5e-4)
    assert len(pd.read_csv(tmp_path / "out" / "edited.csv")) == N - 3
    assert "edited.mp4" not in result.output.replace(f"{tmp_path / 'edited.mp4'}: ", "")  # no warning about it
    lost = N - len(pd.read_csv(tmp_path / "out" / "cut.csv"))
    assert f"{cut}: {lost} of the {N} frames the file lists were not decoded" in result.output
