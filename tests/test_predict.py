"""``mtaffect predict`` and ``export-abaw`` on real files: synthetic videos made of a real
photograph, the photograph itself, two faces, every bad input; the rows against the
extraction + ensemble path on the same faces, smoothing against pandas, the pictures read
back. ``--temporal``: the streamed windows against the temporal stages' own (whole runs
through ``windows.eval_windows``), a video against the extraction -> features -> temporal
bundle path on the same faces."""
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from skimage import data as skimage_data

from pipeline.core.index import FrameIndex
from pipeline.core.provenance import ROOT
from pipeline.inference.ensemble import load_bundle, save_bundle
from pipeline.temporal.model import save_rnn_bundle
from pipeline.inference.outputs import combine
from pipeline.temporal.features import Features, dump
from pipeline.core.hashing import file_sha256
from pipeline.inference.runner import predict_many
from pipeline.core.labels import AU_NAMES, EXPR_NAMES
from pipeline.core.schema import ABAW2020, ABAW2022
from pipeline.training.models import MultitaskNet, load_checkpoint, save_checkpoint
from pipeline.predict.temporal import TemporalStream, segment_predict
from pipeline.temporal.sequences import bundle_predictions
from pipeline.temporal.model import TemporalNet
from pipeline.extraction.tracking import TrackIds
from pipeline.predict.run import FaceFinder, Settings
from stages.predict import cli as predict_cli

SIZE = (360, 640)  # h, w
HIDDEN = set(range(12, 16))        # frames where the face is not drawn
OUTSIDE = set(range(28, 31))       # frames where it has left the picture
N_FRAMES = 40

EXTRACT_INPUT = ["--params", str(ROOT / "params.yaml"), "--source", "input", "--workers", "1", "--quiet"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bundle")
    members = {}
    for seed, name in enumerate(("s1", "s2")):
        torch.manual_seed(seed)
        model = MultitaskNet("resnet18")
        with torch.no_grad():  # random weights barely tell faces apart: make the outputs depend on them
            for head in model.heads.values():
                head[-1].weight.mul_(10)
        save_checkpoint(folder / f"{name}.pt", model, {"train": {"va_centres": "centres"}})
        members[name] = str(folder / f"{name}.pt")
    from pipeline.extraction.align import template_points

    alignment = {"size": 112, "template_scale": 1.0, "template": template_points(112, 1.0).tolist(),
                 "detection": {"detect_size": 320, "min_face": 40, "min_prob": 0.9}}
    save_bundle(folder / "ensemble.pt", members, [0.5] * 8, "fixed 0.5", alignment)
    return folder / "ensemble.pt"


@pytest.fixture(scope="module")
def face():
    return cv2.resize(skimage_data.astronaut()[:260, 120:380], (150, 150), interpolation=cv2.INTER_AREA)


def write_video(path, frames, fps=30):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (frames[0].shape[1], frames[0].shape[0]))
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def paste(frame, face, x, y):
    h, w = face.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, frame.shape[1]), min(y + h, frame.shape[0])
    if x0 < x1 and y0 < y1:
        frame[y0:y1, x0:x1] = face[y0 - y:y1 - y, x0 - x:x1 - x]


@pytest.fixture(scope="module")
def one_face_video(tmp_path_factory, face):
    frames = []
    for t in range(N_FRAMES):
        frame = np.full((*SIZE, 3), 70, np.uint8)
        if t in OUTSIDE:
            paste(frame, face, SIZE[1] + 50, 100)  # gone out of the picture
        elif t not in HIDDEN:
            paste(frame, face, 150 + 3 * t, 100 + t)
        frames.append(frame)
    return write_video(tmp_path_factory.mktemp("video") / "clip.avi", frames)


def run(*args):
    result = CliRunner().invoke(predict_cli, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


@pytest.fixture(scope="module")
def predicted(one_face_video, bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    result = run(one_face_video, "--model", bundle, "--out", out, "--overlay", "--quiet")
    assert result.exit_code == 0, result.output
    return out, pd.read_csv(out / "clip.csv")


def test_one_row_per_frame_with_the_face_flag_off_exactly_where_it_is_gone(predicted):
    _, rows = predicted
    assert rows["frame"].tolist() == list(range(N_FRAMES))
    assert set(rows.loc[~rows["face"], "frame"]) == HIDDEN | OUTSIDE
    faces = rows[rows["face"]]
    probs = faces[[f"p_{a}" for a in AU_NAMES] + [f"p_{e}" for e in EXPR_NAMES]]
    assert probs.notna().all().all() and (probs >= 0).all().all() and (probs <= 1).all().all()
    np.testing.assert_allclose(faces[[f"p_{e}" for e in EXPR_NAMES]].sum(axis=1), 1, atol=1e-5)
    assert faces[["valence", "arousal"]].abs().le(1).all().all()
    assert (faces[list(AU_NAMES)].to_numpy() == (faces[[f"p_{a}" for a in AU_NAMES]].to_numpy() >= 0.5)).all()
    assert set(faces["expression"]) <= set(EXPR_NAMES) and (faces["track"] == 0).all()
    assert rows.loc[~rows["face"], ["p_AU1", "valence", "box_x1"]].isna().all().all()  # unknown stays unknown
    np.testing.assert_allclose(rows["timestamp"], rows["frame"] / 30, atol=1e-6)


def test_predictions_equal_the_extraction_and_ensemble_path_on_the_same_faces(predicted, one_face_video, bundle,
                                                                              tmp_path):
    from stages.extract import cli as extract_cli

    _, rows = predicted
    faces_dir = tmp_path / "faces"
    result = CliRunner().invoke(extract_cli, [*EXTRACT_INPUT, "--root", str(one_face_video), "--out", str(faces_dir)])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(faces_dir / "frames.parquet")
    assert sorted(table["frame"]) == sorted(rows.loc[rows["face"], "frame"])  # the same faces found
    index = FrameIndex.read(faces_dir / "frames.parquet")
    members, _ = load_bundle(bundle)
    preds = predict_many({name: (m, c) for name, m, c in members}, index, torch.device("cpu"))
    ensemble = combine(list(preds.values()))
    ours = rows.set_index("frame").loc[table["frame"]]
    np.testing.assert_allclose(ours[[f"p_{a}" for a in AU_NAMES]], ensemble["AU"], atol=1e-5)
    np.testing.assert_allclose(ours[[f"p_{e}" for e in EXPR_NAMES]], ensemble["EXPR"], atol=1e-5)
    np.testing.assert_allclose(ours[["valence", "arousal"]], ensemble["VA"], atol=1e-5)
    np.testing.assert_allclose(ours["unc_AU"], ensemble["uncertainty_AU"], atol=1e-5)


def test_the_tracking_block_is_the_extractions_from_the_bundle(bundle):
    from pipeline.extraction.params import ExtractParams
    from pipeline.predict.rows import DETECTION_DEFAULTS, alignment_of

    info = torch.load(bundle, weights_only=True)
    assert alignment_of(info)[2]["block"] == ExtractParams().batch == 16  # a bundle that does not say
    assert {k: getattr(ExtractParams(), k) for k in ("detect_size", "min_face", "min_prob")} == {
        k: v for k, v in DETECTION_DEFAULTS.items() if k != "block"}
    info["alignment"]["detection"]["block"] = 5
    assert alignment_of(info)[2]["block"] == 5


def test_timeline_and_overlay_are_readable_pictures(predicted):
    out, rows = predicted
    png = cv2.imread(str(out / "clip.png"))
    assert png is not None and png.shape[0] > 400 and png.shape[1] > 800 and png.std() > 20
    cap = cv2.VideoCapture(str(out / "clip_overlay.mp4"))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    assert len(frames) == len(rows) and frames[0].shape[:2] == SIZE
    # the box is drawn in green where the face is, not where it is hidden
    green = [((f[:, :, 1] > 180) & (f[:, :, 0] < 60) & (f[:, :, 2] < 60)).sum() for f in frames]
    assert all(g > 200 for t, g in enumerate(green) if t not in HIDDEN | OUTSIDE)
    assert all(g < 50 for t, g in enumerate(green) if t in HIDDEN)


def test_a_photograph_gives_a_full_row_and_two_faces_two_rows(bundle, tmp_path):
    photo = skimage_data.astronaut()
    cv2.imwrite(str(tmp_path / "astronaut.png"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    pair = tmp_path / "pair"
    pair.mkdir()
    cv2.imwrite(str(pair / "two.png"), cv2.cvtColor(np.hstack([photo, photo[:, ::-1]]), cv2.COLOR_RGB2BGR))
    (pair / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (pair / "notes.txt").write_text("who is who")
    (pair / "more").mkdir()
    result = run(tmp_path / "astronaut.png", pair, "--model", bundle, "--out", tmp_path / "out", "--quiet",
                 "--format", "parquet")
    assert result.exit_code == 0, result.output
    one = pd.read_parquet(tmp_path / "out" / "astronaut.parquet")
    assert len(one) == 1 and one["face"].all() and one.drop(columns=["timestamp"]).notna().all().all()
    two = pd.read_parquet(tmp_path / "out" / "pair.parquet")
    assert two["file"].tolist() == ["two.png", "two.png"] and two["track"].tolist() == [0, 1]
    assert two["box_x1"].iloc[0] < 512 <= two["box_x1"].iloc[1]  # numbered from left to right
    assert "broken.jpg: unreadable or truncated image; skipped" in result.output
    assert (f"{pair}: not read: 1 subfolder(s) (not searched: give them as inputs), e.g. more; 1 other file(s), "
            "e.g. notes.txt") in result.output


def test_a_truncated_image_is_a_counted_skip_never_a_half_grey_row(bundle, tmp_path):
    """An interrupted copy: OpenCV's imread decodes a JPEG cut short as a half-grey picture
    (libjpeg only says "Premature end of JPEG file"); predict reads images as the
    extraction does, so it is a skip with no row."""
    photo = skimage_data.astronaut()
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a_whole.png"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    (folder / "b_cut.jpg").write_bytes(jpeg.tobytes()[:int(len(jpeg) * 0.6)])
    (folder / "c_cut.jpg").write_bytes(jpeg.tobytes()[:3000])
    assert cv2.imread(str(folder / "b_cut.jpg")) is not None  # what predict read before
    result = run(folder, "--model", bundle, "--out", tmp_path / "out", "--quiet")
    assert result.exit_code == 0, result.output
    assert pd.read_csv(tmp_path / "out" / "photos.csv")["file"].tolist() == ["a_whole.png"]
    for name in ("b_cut.jpg", "c_cut.jpg"):
        assert f"{folder / name}: unreadable or truncated image; skipped" in result.output
    assert "2 unreadable image(s) skipped" in result.output
    result = run(folder / "b_cut.jpg", "--model", bundle, "--out", tmp_path / "one", "--quiet")
    assert result.exit_code != 0 and f"Error: {folder / 'b_cut.jpg'}: no frame or image could be decoded " \
        "(unreadable or truncated image)" in result.output
    assert not (tmp_path / "one" / "b_cut.csv").exists()


def test_two_people_keep_their_track_ids(bundle, face, tmp_path):
    frames = []
    for t in range(24):
        frame = np.full((*SIZE, 3), 70, np.uint8)
        paste(frame, face, 40 + 2 * t, 90)                  # left person drifts right
        paste(frame, face[:, ::-1], 440 - 2 * t, 110)       # right person drifts left
        frames.append(frame)
    video = write_video(tmp_path / "two.avi", frames)
    result = run(video, "--model", bundle, "--out", tmp_path / "out", "--all-faces", "--quiet", "--no-timeline")
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(tmp_path / "out" / "two.csv")
    assert len(rows) == 48 and rows["face"].all() and rows.groupby("frame").size().eq(2).all()
    side = rows.assign(left=rows["box_x1"] < SIZE[1] / 2).groupby("track")["left"].agg(["all", "any", "size"])
    assert len(side) == 2 and side["size"].eq(24).all()
    assert sorted(side["all"]) == [False, True] and sorted(side["any"]) == [False, True]  # never swapped


def test_track_ids_follow_overlap_and_start_anew_after_a_long_absence():
    ids = TrackIds(max_gap=3)
    left, right = np.array([[0, 0, 10, 10]]), np.array([[50, 0, 60, 10]])
    assert ids.assign(0, np.vstack([left, right])) == [0, 1]
    assert ids.assign(1, np.vstack([right + 1, left + 1])) == [1, 0]  # order in the frame does not matter
    assert ids.assign(2, left + 2) == [0]
    assert ids.assign(7, right) == [2]  # gone for longer than max_gap: a new id


def test_track_ids_keep_a_track_absent_for_exactly_max_gap_frames():
    ids = TrackIds(max_gap=3)
    box = np.array([[0, 0, 10, 10]])
    assert ids.assign(0, box) == [0]
    assert ids.assign(3, box) == [0]  # 3 - 0 = max_gap: still alive
    assert ids.assign(7, box) == [1]  # 7 - 3 = 4 > max_gap: a new id


def test_track_ids_continue_at_an_iou_exactly_min_iou():
    ids = TrackIds(min_iou=0.5)
    assert ids.assign(0, np.array([[0, 0, 10, 10]])) == [0]
    assert ids.assign(1, np.array([[0, 0, 10, 5]])) == [0]  # IoU 50 / 100 = 0.5 exactly
    assert ids.assign(2, np.array([[0, 0, 10, 2]])) == [1]  # IoU 20 / 50 = 0.4 < 0.5


def test_track_ids_give_a_face_to_the_track_it_overlaps_most():
    ids = TrackIds(min_iou=0.3)
    assert ids.assign(0, np.array([[0, 0, 10, 10], [6, 0, 16, 10]])) == [0, 1]
    # IoU with track 0: 90 / 110 = 0.82, with track 1: 50 / 150 = 0.33, both >= min_iou
    assert ids.assign(1, np.array([[1, 0, 11, 10]])) == [0]


def test_track_ids_give_one_track_to_one_face_only():
    ids = TrackIds(min_iou=0.3)
    assert ids.assign(0, np.array([[0, 0, 10, 10]])) == [0]
    # both overlap track 0 (IoU 0.82 and 0.43): the closer keeps it, the other is new
    assert ids.assign(1, np.array([[4, 0, 14, 10], [1, 0, 11, 10]])) == [1, 0]


def test_track_ids_keep_an_unmatched_track_alive_and_renumber_a_face_back_elsewhere():
    ids = TrackIds(max_gap=3)
    a, b = np.array([[0, 0, 10, 10]]), np.array([[50, 0, 60, 10]])
    assert ids.assign(0, np.vstack([a, b])) == [0, 1]
    assert ids.assign(1, a) == [0]                   # b not seen in frame 1
    assert ids.assign(2, np.vstack([a, b])) == [0, 1]  # b continues its track
    assert ids.assign(3, np.array([[100, 0, 110, 10]])) == [2]  # within the gap but elsewhere


def test_face_finder_track_gap_is_15_predicted_frames_with_every():
    finder = FaceFinder({"detect_size": 320, "min_face": 40, "min_prob": 0.9}, Settings(every=3, all_faces=True))
    finder.reset()
    box = np.array([[100, 100, 160, 160]])
    assert finder.ids.assign(0, box) == [0]
    assert finder.ids.assign(30, box) == [0]   # 10 predicted frames (30 video frames) away: kept
    assert finder.ids.assign(78, box) == [1]   # 16 predicted frames (48 > 45 video frames): new


@pytest.mark.parametrize("case", ["not-media", "empty-folder", "only-subfolders", "missing", "link-loop", "bad-bundle",
                                  "unwritable", "even-smooth", "tpu", "cpu:3", "overlay-on-photo"])
def test_bad_input_is_one_line_and_leaves_no_table(case, bundle, one_face_video, tmp_path):
    out, model, given, extra = tmp_path / "out", bundle, one_face_video, []
    if case == "not-media":
        given = tmp_path / "notes.txt"
        given.write_text("hello")
    elif case == "empty-folder":
        given = tmp_path / "empty"
        given.mkdir()
    elif case == "only-subfolders":  # s-Aff-Wild2's cropped_aligned/: one folder per video
        given = tmp_path / "cropped_aligned"
        (given / "v1").mkdir(parents=True)
    elif case == "missing":
        given = tmp_path / "nowhere.mp4"
    elif case == "link-loop":
        (tmp_path / "a.mp4").symlink_to(tmp_path / "b.mp4")
        (tmp_path / "b.mp4").symlink_to(tmp_path / "a.mp4")
        given = tmp_path / "a.mp4"
    elif case == "bad-bundle":
        other = torch.load(bundle, weights_only=True) | {"format_version": 99}
        torch.save(other, tmp_path / "future.pt")
        model = tmp_path / "future.pt"
    elif case == "unwritable":
        (tmp_path / "a-file").write_text("")
        out = tmp_path / "a-file" / "out"  # (permissions do not stop root: a file in the way does)
    elif case == "even-smooth":
        extra = ["--smooth", "4"]
    elif case in ("tpu", "cpu:3"):  # no such device: the device is named, not the (good) bundle
        extra = ["--device", case]
    elif case == "overlay-on-photo":
        given = tmp_path / "photo.jpg"
        cv2.imwrite(str(given), np.full((*SIZE, 3), 90, np.uint8))
        extra = ["--overlay"]
    result = run(given, "--model", model, "--out", out, "--quiet", *extra)
    expected = {"not-media": "neither a video", "empty-folder": "no video",
                "only-subfolders": "in this folder (subfolders are not searched: give them, e.g. ", "missing": "no such file",
                "link-loop": "a.mp4: no such file or folder (a symbolic link to nothing, or a loop of links)",
                "bad-bundle": "bundle format 99", "unwritable": "a file is where the folder a-file/ goes",
                "even-smooth": "must be odd", "tpu": "unknown device 'tpu': use auto, cpu, cuda or cuda:N",
                "cpu:3": "unknown device 'cpu:3'", "overlay-on-photo": "--overlay: an overlay is a video, and no input "
                                                                        "is a video"}[case]
    assert result.exit_code != 0 and expected in result.output
    assert case in ("even-smooth", "overlay-on-photo") or len([line for line in result.output.splitlines() if line.strip()]) == 1
    assert not list(tmp_path.glob("**/clip.csv")) and not list(tmp_path.glob("**/.*.tmp"))


def test_no_face_at_all_and_a_truncated_video_are_warnings_with_their_rows(bundle, one_face_video, tmp_path):
    blank = write_video(tmp_path / "blank.avi", [np.full((*SIZE, 3), 90, np.uint8)] * 10)
    cut = tmp_path / "cut.avi"
    data = one_face_video.read_bytes()
    cut.write_bytes(data[:len(data) // 2])
    result = run(blank, cut, "--model", bundle, "--out", tmp_path / "out", "--quiet", "--no-timeline")
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(tmp_path / "out" / "blank.csv")
    assert len(rows) == 10 and not rows["face"].any() and "no face found in any frame" in result.output
    cut_rows = pd.read_csv(tmp_path / "out" / "cut.csv")
    assert 0 < len(cut_rows) < N_FRAMES and cut_rows["frame"].tolist() == list(range(len(cut_rows)))
    assert f"{cut}: {N_FRAMES - len(cut_rows)} of the {N_FRAMES} frames the file lists were not decoded" in result.output


# --- --temporal ----------------------------------------------------------------------------

def gru_members(n: int, feature_dim: int, seed: int = 0, schema=ABAW2020):
    members = []
    for i in range(n):
        torch.manual_seed(seed + i)
        model = TemporalNet(8, feature_dim, schema)
        with torch.no_grad():  # larger outputs, so they depend visibly on the features
            for head in model.heads.values():
                head.weight.mul_(10)
        members.append((f"r{i + 1}", model.eval(), "centres"))
    return members


class FakeModel:
    """What ``TemporalStream`` needs of a ``TemporalModel``: the GRUs, no CNN."""

    def __init__(self, members, length):
        self.members, self.length, self.thresholds = members, length, np.full(8, 0.5, np.float32)
        self.schema = ABAW2020

    def segment(self, features):
        return segment_predict(self.members, features, self.length, "cpu")


class Frame:
    def __init__(self, number):
        self.number = number


def test_the_stream_gives_each_run_its_whole_runs_windows_in_frame_order_holding_under_2L_frames():
    length, rng = 4, np.random.default_rng(0)
    model = FakeModel(gru_members(2, 16), length)
    # track 0: runs of 11 (windows streamed before the run ends), 3 (shorter than L), 9 and 2 frames (cut by
    # frames 26-27, which never come); track 1: one run of 18 alongside; frames 30-31 without any face
    numbers = [n for n in range(32) if n not in (26, 27)]
    present = {0: set(range(0, 11)) | set(range(13, 16)) | set(range(17, 30)) - {26, 27}, 1: set(range(5, 23))}
    stream, out, features, most = TemporalStream(model), [], {}, 0
    for n in numbers:
        rows, feats = [], []
        for track in (1, 0):  # any order within a frame
            if n in present[track]:
                rows.append({"face": True, "track": track, "frame": n})
                features[track, n] = rng.normal(size=(3, 16)).astype(np.float32)
                feats.append(features[track, n])
        out += stream.push(Frame(n), rows or [{"face": False, "track": -1, "frame": n}], feats)
        most = max([most, *(len(r.rows) for r in stream.runs.values())])
    out += stream.flush()
    assert [f.number for f, _ in out] == numbers and most < 2 * length
    got = {(r["track"], r["frame"]): r for _, rows in out for r in rows if r["face"]}
    assert len(got) == len(features)
    for track, frames in present.items():
        frames = sorted(frames)
        cuts = [0, *[i for i in range(1, len(frames)) if frames[i] != frames[i - 1] + 1], len(frames)]
        for a, b in zip(cuts, cuts[1:]):  # each run offline, through its own evaluation windows
            run_frames = frames[a:b]
            preds = segment_predict(model.members, np.stack([features[track, n] for n in run_frames]), length, "cpu")
            for k, n in enumerate(run_frames):
                row = got[track, n]
                np.testing.assert_allclose([row[f"p_{a}"] for a in AU_NAMES], preds["AU"][k], atol=1e-6)
                np.testing.assert_allclose([row["valence"], row["arousal"]], preds["VA"][k], atol=1e-6)
                np.testing.assert_allclose(row["unc_EXPR"], preds["uncertainty_EXPR"][k], atol=1e-6)
                assert row["AU1"] == int(row["p_AU1"] >= 0.5)


@pytest.fixture(scope="module")
def temporal_bundle(bundle, tmp_path_factory):
    """GRU members on the features of the frame bundle's member s1, L = 4."""
    folder = tmp_path_factory.mktemp("rnn")
    paths = {}
    for name, model, _ in gru_members(2, 128, seed=5):
        save_checkpoint(folder / f"{name}.pt", model, {"train": {"va_centres": "centres"}})
        paths[name] = str(folder / f"{name}.pt")
    s1 = bundle.parent / "s1.pt"
    save_rnn_bundle(folder / "T4.pt", paths, [0.5] * 8, "fixed 0.5",
                    {"sequence_length": 4, "features_sha256": file_sha256(s1)})
    return folder / "T4.pt"


def test_a_video_gives_what_extraction_features_and_the_temporal_bundle_give(bundle, temporal_bundle, one_face_video,
                                                                           tmp_path):
    from stages.extract import cli as extract_cli

    result = run(one_face_video, "--model", bundle, "--temporal", temporal_bundle, "--out", tmp_path / "out", "--quiet")
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(tmp_path / "out" / "clip.csv")
    assert rows["frame"].tolist() == list(range(N_FRAMES))
    assert set(rows.loc[~rows["face"], "frame"]) == HIDDEN | OUTSIDE  # runs of 12, 12 and 9 frames

    faces = tmp_path / "faces"
    result = CliRunner().invoke(extract_cli, [*EXTRACT_INPUT, "--root", str(one_face_video), "--out", str(faces)])
    assert result.exit_code == 0, result.output
    cnn, _ = load_checkpoint(bundle.parent / "s1.pt")
    dump(cnn, faces / "frames.parquet", tmp_path / "features.h5", bundle.parent / "s1.pt", 16, torch.device("cpu"),
         "centres")
    features = Features(tmp_path / "features.h5")
    preds, _ = bundle_predictions(temporal_bundle, features, np.arange(len(features.uid)), "cpu")
    ours = rows.set_index("frame").loc[features.frame]
    np.testing.assert_allclose(ours[[f"p_{a}" for a in AU_NAMES]], preds["AU"], atol=1e-5)
    np.testing.assert_allclose(ours[[f"p_{e}" for e in EXPR_NAMES]], preds["EXPR"], atol=1e-5)
    np.testing.assert_allclose(ours[["valence", "arousal"]], preds["VA"], atol=1e-5)
    np.testing.assert_allclose(ours["unc_AU"], preds["uncertainty_AU"], atol=1e-5)


@pytest.mark.parametrize("case", ["every", "image", "other-cnn", "frame-bundle", "other-schema"])
def test_bad_temporal_input_is_one_line_and_leaves_no_table(case, bundle, temporal_bundle, one_face_video, face,
                                                            tmp_path):
    given, model, temporal, extra = one_face_video, bundle, temporal_bundle, []
    if case == "every":
        extra = ["--every", "2"]
    elif case == "image":
        given = tmp_path / "photo.png"
        cv2.imwrite(str(given), face)
    elif case == "other-cnn":  # a temporal bundle of features from a checkpoint not in --model
        other = torch.load(temporal_bundle, weights_only=True) | {"features_sha256": "d" * 64}
        torch.save(other, tmp_path / "T4-other.pt")
        temporal = tmp_path / "T4-other.pt"
    elif case == "frame-bundle":
        temporal = bundle
    elif case == "other-schema":  # GRUs of the 2022 labels on a 2020 frame bundle
        paths = {}
        for name, net, _ in gru_members(2, 128, seed=5, schema=ABAW2022):
            save_checkpoint(tmp_path / f"{name}.pt", net, {"train": {"va_centres": "centres"}})
            paths[name] = str(tmp_path / f"{name}.pt")
        temporal = tmp_path / "T4-2022.pt"
        save_rnn_bundle(temporal, paths, [0.5] * 12, "fixed 0.5",
                        {"sequence_length": 4, "features_sha256": file_sha256(bundle.parent / "s1.pt")})
    result = run(given, "--model", model, "--temporal", temporal, "--out", tmp_path / "out", "--quiet", *extra)
    expected = {"every": "leave --every and --smooth at 1", "image": "--temporal needs videos",
                "other-cnn": "not a member of", "frame-bundle": "not an mtaffect temporal ensemble bundle",
                "other-schema": f"{temporal}: a temporal bundle of schema abaw2022 (12 AUs"}[case]
    assert result.exit_code != 0 and expected in result.output, result.output
    assert case in ("every", "image") or len([line for line in result.output.splitlines() if line.strip()]) == 1
    assert not list(tmp_path.glob("**/*.csv")) and not list(tmp_path.glob("**/.*.tmp"))


def test_a_folder_another_run_is_writing_into_is_refused_before_any_work(tmp_path):
    import subprocess
    import sys

    from pipeline.core.errors import DataError
    from pipeline.predict.outputs import OutputFolder

    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pipeline.predict.outputs import OutputFolder; "
        f"OutputFolder({str(out)!r}, 'predict').lock([]); print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    try:
        assert holder.stdout.readline().strip() == "held"
        (out / ".clip.csv.tmp").write_text("the other run's table, half written")
        with pytest.raises(DataError, match=rf"{out}: another mtaffect predict or export-abaw is writing into"):
            OutputFolder(out, "predict").lock([out / "clip.csv"])
        assert (out / ".clip.csv.tmp").exists()  # its temporary left alone
    finally:
        holder.kill()
        holder.wait()
    OutputFolder(out, "predict").lock([out / "clip.csv"])  # released by the system when it ended
    assert not (out / ".clip.csv.tmp").exists()


def test_an_input_name_too_long_for_its_outputs_is_refused_before_any_work(tmp_path):
    from pipeline.core.errors import DataError
    from pipeline.predict.outputs import OutputFolder

    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"too long a name to write \(its temporary name would be 263 bytes"):
        OutputFolder(out, "predict").claim([out / ("v" * 242 + "_overlay.mp4")])
    OutputFolder(out, "predict").claim([out / ("v" * 234 + "_overlay.mp4")])  # 255: fine
    assert not out.exists()


def bundle_2022(folder: Path) -> Path:
    """A bundle of two random abaw2022 members (12 AUs, 8 classes)."""
    from pipeline.extraction.align import template_points

    members = {}
    for seed, name in enumerate(("s1", "s2")):
        torch.manual_seed(seed)
        save_checkpoint(folder / f"{name}.pt", MultitaskNet("resnet18", schema=ABAW2022),
                        {"train": {"va_centres": "centres"}})
        members[name] = str(folder / f"{name}.pt")
    save_bundle(folder / "ensemble.pt", members, [0.5] * 12, "fixed 0.5",
                {"size": 112, "template_scale": 1.0, "template": template_points(112, 1.0).tolist()})
    return folder / "ensemble.pt"


def test_a_2022_bundle_predicts_its_12_aus_and_8_classes_and_export_writes_the_2022_files(one_face_video,
                                                                                          tmp_path):
    from stages.export_abaw import cli as export_cli

    result = run(one_face_video, "--model", bundle_2022(tmp_path), "--out", tmp_path / "out", "--quiet")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "out" / "clip.csv")
    faces = table[table["face"]]
    assert [c for c in table if c.startswith("p_")] == [f"p_{a}" for a in ABAW2022.aus] + [
        f"p_{e}" for e in ABAW2022.expressions]
    np.testing.assert_allclose(faces[[f"p_{e}" for e in ABAW2022.expressions]].sum(axis=1), 1, atol=1e-5)
    assert (faces[list(ABAW2022.aus)].to_numpy() == (faces[[f"p_{a}" for a in ABAW2022.aus]].to_numpy() >= 0.5)).all()
    assert (tmp_path / "out" / "clip.png").stat().st_size > 0  # the timeline draws the 12 AUs
    result = CliRunner().invoke(export_cli, [str(tmp_path / "out" / "clip.csv"), "--out", str(tmp_path / "sub")])
    assert result.exit_code == 0, result.output
    au = (tmp_path / "sub/AU_Set/clip.txt").read_text().splitlines()
    expr = (tmp_path / "sub/EXPR_Set/clip.txt").read_text().splitlines()
    assert au[0] == ",".join(ABAW2022.aus) and len(au) == N_FRAMES + 1 and all(len(x.split(",")) == 12 for x in au[1:])
    assert expr[0] == ",".join(ABAW2022.expressions) and {int(x) for x in expr[1:]} <= set(range(8))


def test_aligned_crops_are_predicted_as_they_are_and_export_writes_the_multi_task_file(bundle, one_face_video,
                                                                                       tmp_path, monkeypatch):
    from pipeline.predict.rows import Ensemble
    from stages.export_abaw import cli as export_cli

    model2022, crops, rng = bundle_2022(tmp_path), tmp_path / "cropped_aligned", np.random.default_rng(0)
    for video, n in (("v1", 3), ("v2", 2)):
        (crops / video).mkdir(parents=True)
        for k in range(n):
            cv2.imwrite(str(crops / video / f"{k + 1:05d}.jpg"), rng.integers(0, 255, (112, 112, 3), np.uint8))
    result = run(crops / "v1", crops / "v2", "--aligned", "--model", model2022, "--out", tmp_path / "p", "--quiet")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "p" / "v1.csv")
    assert table["file"].tolist() == ["00001.jpg", "00002.jpg", "00003.jpg"] and table["face"].all()
    images = np.stack([cv2.cvtColor(cv2.imread(str(crops / "v1" / f)), cv2.COLOR_BGR2RGB) for f in table["file"]])
    direct = Ensemble(model2022, torch.device("cpu"))(images)  # the crops as they are: no detection, no alignment
    np.testing.assert_allclose(table[ABAW2022.au_probs].to_numpy(), direct["AU"], atol=1e-6)
    np.testing.assert_allclose(table[["valence", "arousal"]].to_numpy(), direct["VA"], atol=1e-6)

    tables = [str(tmp_path / "p" / "v1.csv"), str(tmp_path / "p" / "v2.csv")]
    result = CliRunner().invoke(export_cli, [*tables, "--mtl", "--out", str(tmp_path / "sub")])
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "sub" / "MTL_predictions.txt").read_text().splitlines()
    assert lines[0] == "image,valence,arousal,expression,aus"
    assert [x.split(",")[0] for x in lines[1:]] == ["v1/00001.jpg", "v1/00002.jpg", "v1/00003.jpg", "v2/00001.jpg",
                                                    "v2/00002.jpg"]
    first = lines[1].split(",")
    assert len(first) == 16 and float(first[1]) == pytest.approx(table["valence"][0], abs=1e-6)
    assert int(first[3]) == ABAW2022.expressions.index(table["expression"][0])
    assert first[4:] == [str(int(table[a][0])) for a in ABAW2022.aus]

    # what cannot go into the multi-task file is refused, naming the table
    wrong = tmp_path / "cropped_aligned" / "v3"
    wrong.mkdir()
    cv2.imwrite(str(wrong / "00001.jpg"), rng.integers(0, 255, (100, 300, 3), np.uint8))  # no aligned crop
    result = run(wrong, "--aligned", "--model", model2022, "--out", tmp_path / "p", "--quiet")
    assert result.exit_code == 0 and "00001.jpg: a 300x100 crop is not an aligned face" in result.output
    assert run(one_face_video, "--model", bundle, "--out", tmp_path / "p2020", "--quiet").exit_code == 0
    for given, message in ((tmp_path / "p" / "v3.csv", "v3.csv: row 2: no face in 00001.jpg"),
                           (tmp_path / "p2020" / "clip.csv", "predicts the AUs AU1, AU2, AU4, AU6, AU12, AU15, "
                                                            "AU20, AU25 and 7 classes; the multi-task file lists "
                                                            "abaw2022's")):
        result = CliRunner().invoke(export_cli, [str(given), "--mtl", "--out", str(tmp_path / "sub2")])
        assert result.exit_code != 0 and message in result.output, result.output
    bad = pd.read_csv(tmp_path / "p" / "v1.csv")
    for name, edit, message in (
            ("v8.csv", lambda t: t.iloc[:0], "v8.csv: no row: nothing to export"),
            ("v9.csv", lambda t: t.assign(file=["00001.jpg", "0,2.jpg", "00003.jpg"]),
             "v9.csv: row 3: image name '0,2.jpg' holds a comma"),
            ("00001.csv", lambda t: t.iloc[:1], "00001.csv: the table of one image, named after it"),
            ("v7.csv", lambda t: t.rename(columns={"AU26": "AU20", "p_AU26": "p_AU20"}),
             "predicts the AUs AU1, AU2, AU4, AU6, AU7, AU10, AU12, AU15, AU23, AU24, AU25, AU20 and 8 classes")):
        edit(bad).to_csv(tmp_path / name, index=False)
        result = CliRunner().invoke(export_cli, [str(tmp_path / name), "--mtl", "--out", str(tmp_path / "sub2")])
        assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output, result.output
    assert not (tmp_path / "sub2" / "MTL_predictions.txt").exists()
    cut = crops / "v5"  # an unreadable crop keeps its row, without a face: the multi-task file never loses it silently
    cut.mkdir()
    cv2.imwrite(str(cut / "00001.jpg"), rng.integers(0, 255, (112, 112, 3), np.uint8))
    (cut / "00002.jpg").write_bytes((cut / "00001.jpg").read_bytes()[:300])
    result = run(cut, "--aligned", "--model", model2022, "--out", tmp_path / "p", "--quiet")
    assert result.exit_code == 0 and "00002.jpg" in result.output and "skipped" in result.output, result.output
    assert pd.read_csv(tmp_path / "p" / "v5.csv")["face"].tolist() == [True, False]
    result = CliRunner().invoke(export_cli, [str(tmp_path / "p" / "v5.csv"), "--mtl", "--out", str(tmp_path / "s5")])
    assert result.exit_code != 0 and "v5.csv: row 3: no face in 00002.jpg" in result.output, result.output
    monkeypatch.chdir(crops / "v2")
    here = run(".", "--aligned", "--model", model2022, "--out", tmp_path / "p4", "--quiet")
    assert here.exit_code == 0 and (tmp_path / "p4" / "v2.csv").exists(), here.output  # never a hidden .csv
    videos = run(one_face_video, "--aligned", "--model", model2022, "--out", tmp_path / "p3", "--quiet")
    assert videos.exit_code != 0 and "--aligned is for images of aligned faces" in videos.output
    for extra in (["--every", "2"], ["--overlay"], ["--detect-size", "640"]):
        ignored = run(crops / "v1", "--aligned", *extra, "--model", model2022, "--out", tmp_path / "p3", "--quiet")
        assert ignored.exit_code != 0 and "leave --detect-size, --all-faces, --overlay and --every out" \
            in ignored.output


@pytest.mark.parametrize("case", ["empty", "cut"])
def test_an_empty_or_cut_short_video_is_one_line_without_the_decoder_s_own(case, bundle, tmp_path, capfd):
    path = tmp_path / "clip.mp4"
    if case == "empty":
        path.write_bytes(b"")
    else:  # an MP4 keeps its index at the end: cut short, nothing says where its frames are
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (SIZE[1], SIZE[0]))
        for _ in range(10):
            writer.write(np.full((*SIZE, 3), 90, np.uint8))
        writer.release()
        path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
    capfd.readouterr()
    result = run(path, "--model", bundle, "--out", tmp_path / "out", "--quiet")
    expected = {"empty": "clip.mp4: empty file (0 bytes)",
                "cut": "clip.mp4: cannot be decoded as a video (damaged, cut short, or not a video)"}[case]
    assert result.exit_code == 1 and expected in result.output, result.output
    assert "moov atom" not in capfd.readouterr().err  # FFmpeg's own line: said once, by us
