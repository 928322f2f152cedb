"""Extraction end to end on the synthetic tiny data set (real MTCNN, real files), and on
broken inputs."""
import json
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest
from reference import au_column

from pipeline.extraction.params import ExtractParams

from synthetic.params import SynthParams
from pipeline.extraction.extract import extract
from pipeline.core.errors import DataError
from pipeline.core.labels import AU_NAMES
from synthetic.generate import generate
from pipeline.core.tables import read_frames

SOURCES = ("affwild2", "disfa", "expw", "afewva")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate(root, SynthParams(dataset_size="tiny", seed=0), progress=False)
    return root


@pytest.fixture(scope="module")
def extracted(synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("faces")
    reports = {s: extract(s, synth / s, out / s, ExtractParams(workers=1), progress=False) for s in SOURCES}
    return out, reports


def test_faces_found_and_labels_equal_ground_truth(synth, extracted):
    out, reports = extracted
    truth = pd.read_parquet(synth / "ground_truth.parquet").set_index("uid")
    for source in SOURCES:
        rep = reports[source]
        frames = pd.read_parquet(out / source / "frames.parquet")
        assert rep["faces_written"] == len(frames) > 0
        # faces found for >= 98% of the frames that have a face to find
        attempted = rep["faces_written"] + rep["frames_without_face"]
        assert rep["faces_written"] / attempted >= 0.98, (source, rep)
        t = truth.loc[frames["uid"]]
        for au in AU_NAMES:
            np.testing.assert_array_equal(au_column(frames, au), t[f"lab_{au}"].to_numpy(), err_msg=f"{source} {au}")
        np.testing.assert_array_equal(frames["expr"].to_numpy(), t["lab_expr"].to_numpy())
        for c in ("valence", "arousal"):
            np.testing.assert_allclose(frames[c].to_numpy(), t[f"lab_{c}"].to_numpy(), atol=1e-6, equal_nan=True)
        assert (frames["split"].to_numpy() == t["split"].to_numpy()).all()
        if source in ("disfa", "expw"):  # detected faces: landmarks near the true ones
            err = np.hypot(frames["lm0_x"] - t["lm0_x"].to_numpy(), frames["lm0_y"] - t["lm0_y"].to_numpy())
            face = (t["box_x2"] - t["box_x1"]).to_numpy()
            assert np.median(err / face) < 0.08, source


def test_unknown_stays_unknown(extracted):
    out, _ = extracted
    disfa = pd.read_parquet(out / "disfa" / "frames.parquet")
    assert (disfa["expr"] == -1).all() and disfa["valence"].isna().all()
    expw = pd.read_parquet(out / "expw" / "frames.parquet")
    assert not [c for c in expw if c.startswith("AU")] and (expw["expr"] >= 0).all()  # no AU column at all
    assert [c for c in disfa if c.startswith("AU")] == ["AU1", "AU2", "AU4", "AU5", "AU6", "AU9", "AU12", "AU15",
                                                         "AU17", "AU20", "AU25", "AU26"]  # every AU DISFA labels


def test_reports_account_for_every_label(synth, tmp_path):
    # two crops that cannot be decoded: every labelled frame is written, or counted as
    # having no face or an unreadable image
    root = tmp_path / "affwild2"
    shutil.copytree(synth / "affwild2", root)
    crops = sorted((root / "cropped_aligned").rglob("*.jpg"))
    for victim in crops[5], crops[40]:
        victim.write_bytes(b"not a jpeg")
    rep = extract("affwild2", root, tmp_path / "out", ExtractParams(workers=1), progress=False)
    unreadable = sum(v["count"] for reason, v in rep["rows_rejected"].items() if "unreadable" in reason)
    assert unreadable == 2
    assert rep["labelled_frames"] == rep["faces_written"] + rep["frames_without_face"] + unreadable
    assert rep["labels_without_frame"] > 0  # the synthetic set hides a few faces
    json.dumps(rep)


def test_rerun_worker_count_and_folder_give_identical_bytes(synth, extracted, tmp_path):
    """Artefacts are relocatable: the same extraction, with another worker count, into
    another folder at another depth, gives the same bytes (paths inside are relative)."""
    out, _ = extracted
    elsewhere = tmp_path / "another" / "place" / "disfa"
    extract("disfa", synth / "disfa", elsewhere, ExtractParams(workers=2), progress=False)
    names = sorted(p.name for p in (out / "disfa").iterdir())
    assert {"frames.parquet", "shard-00000.h5", "extract.json"} <= set(names)
    assert sorted(p.name for p in elsewhere.iterdir()) == names
    for name in names:
        assert (elsewhere / name).read_bytes() == (out / "disfa" / name).read_bytes(), name
    # moved after writing, the table still finds its faces
    shutil.move(str(elsewhere.parent), str(tmp_path / "moved"))
    moved = read_frames(tmp_path / "moved" / "disfa" / "frames.parquet")
    assert len(moved) > 0 and all((tmp_path / "moved" / "disfa" / s).exists() for s in set(moved["shard"]))


def write_disfa(root, video_bytes=None, frames=20, labels=20, face=False):
    """A DISFA-layout data set of one subject: grey frames, or with ``face`` the astronaut
    of skimage (a real photo MTCNN finds) in each."""
    sn = "SN009"
    (root / "Videos_LeftCamera").mkdir(parents=True)
    path = root / f"Videos_LeftCamera/LeftVideo{sn}_comp.avi"
    if video_bytes is not None:
        path.write_bytes(video_bytes)
    else:
        picture = np.full((240, 320, 3), 100, np.uint8)
        if face:
            from skimage import data as skimage_data

            picture[:, 40:280] = cv2.cvtColor(cv2.resize(skimage_data.astronaut(), (240, 240)), cv2.COLOR_RGB2BGR)
        w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (320, 240))
        for _ in range(frames):
            w.write(picture)
        w.release()
    d = root / "ActionUnit_Labels" / sn
    d.mkdir(parents=True)
    for au in (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26):
        (d / f"{sn}_au{au}.txt").write_text("".join(f"{f},0\n" for f in range(1, labels + 1)))
    return path


def test_corrupt_video_is_counted_or_fails_naming_it(tmp_path):
    write_disfa(tmp_path / "d", video_bytes=b"this is not a video" * 100)
    # the only video cannot be read: a source without a single face is an error, whose
    # message gives the reasons, and nothing is left behind
    with pytest.raises(DataError, match=r"no face could be extracted from 20 labelled frames \(20 skipped: "
                                        r"cannot open video \(20\)\)"):
        extract("disfa", tmp_path / "d", tmp_path / "out", ExtractParams(workers=1), progress=False)
    assert not (tmp_path / "out").exists()
    with pytest.raises(DataError, match=r"LeftVideoSN009_comp.avi"):
        extract("disfa", tmp_path / "d", tmp_path / "out2", ExtractParams(workers=1, on_error="fail"), progress=False)
    assert not (tmp_path / "out2").exists()  # nothing half-written left behind


@pytest.mark.parametrize("content, reason", [(b"", r"empty file \(0 bytes\)"),
                                             (b"this is not a video" * 100, "cannot open video")])
def test_a_video_that_cannot_be_read_is_our_one_line_without_opencvs(tmp_path, capfd, content, reason):
    # OpenCV's "[ WARN:0@4.4] global cap.cpp:338 open VIDEOIO(FFMPEG): ..." before our line only confuses
    write_disfa(tmp_path / "d", video_bytes=content)
    with pytest.raises(DataError, match=rf"\(20 skipped: {reason} \(20\)\)"):
        extract("disfa", tmp_path / "d", tmp_path / "out", ExtractParams(workers=1), progress=False)
    err = capfd.readouterr().err
    assert "WARN" not in err and "VIDEOIO" not in err and "ffmpeg" not in err.lower(), err


def test_labels_longer_than_video_are_counted_not_shifted(tmp_path):
    write_disfa(tmp_path / "d", frames=12, labels=20, face=True)
    rep = extract("disfa", tmp_path / "d", tmp_path / "out", ExtractParams(workers=1), progress=False)
    assert rep["frames_read"] == 12 and rep["labels_without_frame"] == 8
    labels = tmp_path / "d/ActionUnit_Labels/SN009/SN009_au*.txt"
    assert (f"labels past the video's end: it has 12 frames; 8 label(s) name frames 13..20 in {labels} (its own "
            "frames are kept)" in rep["rows_rejected"]), rep["rows_rejected"]
    assert rep["faces_written"] == 12 and rep["frames_without_face"] == 0
    frames = pd.read_parquet(tmp_path / "out" / "frames.parquet")
    assert frames["frame"].tolist() == list(range(12))  # each label on its own frame


def test_unreadable_image_is_counted(synth, tmp_path):
    root = tmp_path / "expw"
    shutil.copytree(synth / "expw", root)
    victim = sorted((root / "image" / "origin").glob("*.jpg"))[0]
    victim.write_bytes(b"\xff\xd8 truncated")
    rep = extract("expw", root, tmp_path / "out", ExtractParams(workers=1), progress=False)
    assert rep["rows_rejected"]["unreadable or truncated image"]["first"] == str(victim)
    with pytest.raises(DataError, match=victim.name):
        extract("expw", root, tmp_path / "out2", ExtractParams(workers=1, on_error="fail"), progress=False)


def test_missing_and_empty_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothing: no such dataset folder \(the synthetic data sets: "
                                                r"`dvc repro --force synth` writes them again"):
        extract("disfa", tmp_path / "nothing", tmp_path / "out", ExtractParams(), progress=False)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(FileNotFoundError, match="ActionUnit_Labels"):
        extract("disfa", tmp_path / "nothing", tmp_path / "out", ExtractParams(), progress=False)
    (tmp_path / "empty" / "label").mkdir(parents=True)
    (tmp_path / "empty" / "image" / "origin").mkdir(parents=True)
    (tmp_path / "empty" / "label" / "label.lst").write_text("")
    with pytest.raises(FileNotFoundError, match="no usable face"):
        extract("expw", tmp_path / "empty", tmp_path / "out", ExtractParams(), progress=False)


def test_an_affectnet_file_list_is_extracted_with_its_labels_on_their_images(tmp_path):
    from test_sources import AFFECTNET_HEADER, affectnet_row

    from pipeline.core.schema import EXPRESSIONS

    root = tmp_path / "affectnet"
    rng = np.random.default_rng(0)
    for name in ("1/a.jpg", "1/b.jpg", "1/c.jpg"):
        (root / "Manually_Annotated_Images" / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "Manually_Annotated_Images" / name), rng.integers(0, 255, (120, 100, 3), np.uint8))
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir()
    (lists / "training.csv").write_text("\n".join([AFFECTNET_HEADER, affectnet_row("1/b.jpg", 7, 0.5, -0.5),
                                                    affectnet_row("1/a.jpg", 2, -2, -2),
                                                    affectnet_row("1/c.jpg", 3, 0, 0).replace(",10,10,80,80,",
                                                                                              ",50,50,80,80,", 1)])
                                         + "\n")  # the last row's box reaches past the 100x120 image
    report = extract("affectnet", root, tmp_path / "out", ExtractParams(workers=1), progress=False)
    assert report["faces_written"] == 2 and report["rows_rejected"] == {
        "its face box lies outside the 100x120 image": {"count": 1, "first": str(root / "Manually_Annotated_Images/1/c.jpg")}}
    frames = read_frames(tmp_path / "out" / "frames.parquet")
    assert frames["video"].tolist() == ["train-1", "train-1"] and [EXPRESSIONS[e] for e in frames["expr"]] == [
        "Sadness", "Other"]  # a (code 2), b (Contempt)
    assert frames["valence"].isna().tolist() == [True, False] and frames["arousal"].iloc[1] == -0.5
    assert not [c for c in frames if c.startswith("AU")]  # AffectNet labels no AU


def test_a_disk_too_small_for_the_faces_is_refused_before_any_work(tmp_path, monkeypatch):
    import collections

    import pipeline.extraction.extract as extraction

    write_disfa(tmp_path / "d", frames=12, labels=12, face=True)
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(extraction.shutil, "disk_usage", lambda _: usage(10**6, 0, 10**5))
    with pytest.raises(DataError, match=r"out: 0 MB free on its disk, the faces need about 0 MB: free some space"):
        extract("disfa", tmp_path / "d", tmp_path / "out", ExtractParams(workers=1), progress=False)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_a_disk_that_fills_while_the_faces_are_written_is_one_error_and_leaves_nothing(tmp_path, monkeypatch):
    # HDF5 loses its own write errors (a shard of black faces under its final name, then a
    # crash): the shard writer makes sure of the room before each write
    import collections

    import pipeline.core.shards as shards

    write_disfa(tmp_path / "d", frames=12, labels=12, face=True)
    usage = collections.namedtuple("usage", "total used free")
    calls = []

    def filling(path):  # room enough for the check before the work, then the disk is full
        calls.append(path)
        return usage(10**12, 0, 10**12 if len(calls) == 1 else 10**5)

    monkeypatch.setattr(shards.shutil, "disk_usage", filling)
    with pytest.raises(OSError, match=r"No space left on device \(0 MB free, the next \d+ faces need about") as e:
        extract("disfa", tmp_path / "d", tmp_path / "out", ExtractParams(workers=1), progress=False)
    assert e.value.filename.endswith("shard-00000.h5") and len(calls) > 1
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_afewva_landmarks_that_miss_the_image_are_counted_skips(tmp_path):
    from test_sources import landmarks68

    clip = tmp_path / "afewva" / "01" / "001"
    clip.mkdir(parents=True)
    rng = np.random.default_rng(0)
    good = landmarks68()
    shifted = [[x + 5000, y] for x, y in good]
    swapped = [[y, x] for x, y in good]
    frames = {}
    for f, (points, valence) in enumerate([(good, 1), (shifted, 2), (swapped, 3), (good, 4)]):
        cv2.imwrite(str(clip / f"{f:05d}.png"), rng.integers(0, 255, (112, 112, 3), np.uint8))
        frames[f"{f:05d}"] = {"valence": valence, "arousal": -valence, "landmarks": points}
    (clip / "001.json").write_text(json.dumps({"actor": "A", "frames": frames}))
    rep = extract("afewva", tmp_path / "afewva", tmp_path / "out", ExtractParams(workers=1), progress=False)
    assert rep["faces_written"] == 2
    assert rep["rows_rejected"]["landmarks lie outside the 112x112 image"] == {
        "count": 1, "first": str(clip / "00001.png")}
    assert rep["rows_rejected"]["landmarks are mirrored (left and right eye exchanged, or x and y swapped)"][
        "first"] == str(clip / "00002.png")
    frames = read_frames(tmp_path / "out" / "frames.parquet")
    assert frames["frame"].tolist() == [0, 3]  # the good frames, each with its own label
    np.testing.assert_allclose(frames["valence"], [0.1, 0.4], rtol=1e-6)
    np.testing.assert_allclose(frames["arousal"], [-0.1, -0.4], rtol=1e-6)
    with pytest.raises(DataError, match="00001.png: landmarks lie outside the 112x112 image"):
        extract("afewva", tmp_path / "afewva", tmp_path / "out2", ExtractParams(workers=1, on_error="fail"),
                progress=False)


def test_a_photo_is_read_upright_as_its_exif_orientation_says(tmp_path):
    from PIL import Image

    from pipeline.extraction.worker import read_rgb

    stored = np.zeros((40, 80, 3), np.uint8)
    stored[:, :10] = 255  # a white band on the stored image's left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view": a phone held upright
    Image.fromarray(stored).save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    image, why, _ = read_rgb(str(tmp_path / "phone.jpg"))
    assert why is None and image.shape == (80, 40, 3)  # as the phone showed it
    assert image[:10].mean() > 200 and image[-10:].mean() < 50  # the band is now at the top
