"""Readers on dataset files damaged or copied the way real ones are (audit 9): each fault is
one counted skip whose message names the file and says what is wrong."""
import json
import logging

import cv2
import numpy as np
import pytest

from pipeline.extraction.sources import affectnet, affwild2, afewva, disfa, expw, saffwild2
from pipeline.core.validation import wide_text
from pipeline.extraction.sources.base import Problems


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def image(path, size=112):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((size, size, 3), 128, np.uint8))


def skipped(caplog, place, reason):
    """The one warning line of a skip, naming ``place``."""
    lines = [r.getMessage() for r in caplog.records if r.name == "mtaffect.sources"]
    assert f"skipped {place}: {reason}" in lines, lines


# --- text saved as UTF-16 or UTF-32 (#22, #32) -------------------------------------------------------------------


def test_annotation_files_saved_as_utf16_or_utf32_are_one_counted_skip_each(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    root = tmp_path / "affwild2"
    au = root / "annotations/AU_Set/Training_Set/v1.txt"
    au.parent.mkdir(parents=True)
    au.write_bytes("AU1,AU2,AU4,AU6,AU12,AU15,AU20,AU25\n1,0,0,0,0,0,0,0\n".encode("utf-16"))  # with a BOM
    write(root / "annotations/EXPR_Set/Training_Set/v1.txt",
          "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise\n4\n")
    image(root / "cropped_aligned/v1/00001.jpg")
    p = Problems()
    v1 = affwild2.read(root, p).jobs[0]
    assert v1.expr.tolist() == [4] and v1.aus == ()  # the other file still read
    assert p.as_dict() == {"UTF-16 text: save it as UTF-8": {"count": 1, "first": str(au)}}
    skipped(caplog, au, "UTF-16 text: save it as UTF-8")

    # DISFA, no byte-order mark (iconv -t utf-16le): one skip, not one per line
    labels = tmp_path / "disfa/ActionUnit_Labels/SN001"
    for n in (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26):
        write(labels / f"SN001_au{n}.txt", "".join(f"{f},1\n" for f in range(1, 73)))
    wide = labels / "SN001_au1.txt"
    wide.write_bytes(wide.read_text().encode("utf-16-le"))
    (tmp_path / "disfa/Videos_LeftCamera").mkdir()
    (tmp_path / "disfa/Videos_LeftCamera/LeftVideoSN001_comp.avi").write_bytes(b"")
    p = Problems()
    job = disfa.read(tmp_path / "disfa", p).jobs[0]
    assert len(job) == 72 and (job.au[:, 0] == -1).all() and (job.au[:, 1] == 0).all()  # AU1 unknown, others read
    assert p.as_dict() == {"UTF-16 text: save it as UTF-8": {"count": 1, "first": str(wide)}}
    skipped(caplog, wide, "UTF-16 text: save it as UTF-8")

    # s-Aff-Wild2 reads its files itself: the same check
    train = tmp_path / "saw/MTL_Challenge/training_set_annotations.txt"
    write(train.with_name("validation_set_annotations.txt"),
          "image,valence,arousal,expression,aus\nv1/00001.jpg,0.1,0.2,1,0,0,0,0,0,0,0,0,0,0,0,0\n")
    train.write_bytes("image,valence,arousal,expression,aus\nv2/00001.jpg,0.1,0.2,1,0,0,0,0,0,0,0,0,0,0,0,0\n"
                      .encode("utf-32"))
    image(tmp_path / "saw/cropped_aligned/v1/00001.jpg")
    p = Problems()
    assert [j.video for j in saffwild2.read(tmp_path / "saw", p).jobs] == ["v1"]
    assert p.as_dict() == {"UTF-32 text: save it as UTF-8": {"count": 1, "first": str(train)}}


@pytest.mark.parametrize("head, wide", [
    ("AU1,AU2\n".encode("utf-16-be"), "UTF-16"), ("AU1,AU2\n".encode("utf-32-le"), "UTF-32"),
    ("é,ü\n".encode("utf-16"), "UTF-16"), (b"\x00" * 64, None), (b"AU1,AU2\n", None), (b"", None),
    (bytes(range(256)), None),
])
def test_wide_text_is_told_from_zeros_binary_and_utf8(head, wide):
    assert wide_text(head) == wide


# --- a file that is a link to nothing (#42) ------------------------------------------------------------------------


def test_an_image_that_is_a_link_to_nothing_says_so_naming_its_target(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    root = tmp_path / "expw"
    image(root / "image/origin/a.jpg", size=200)
    (root / "image/origin/b.jpg").symlink_to("/nonexistent/b.jpg")
    write(root / "label/label.lst", "a.jpg 0 10 20 80 90 55.1 3\nb.jpg 0 10 20 80 90 55.1 3\n")
    p = Problems()
    res = expw.read(root, p)
    reason = "image 'b.jpg' is a symbolic link to '/nonexistent/b.jpg', which does not exist"
    assert [j.video for j in res.jobs] == ["a"] and res.labels_without_frame == 1
    assert p.as_dict() == {"image … is a symbolic link to …, which does not exist": {
        "count": 1, "first": f"{root / 'label/label.lst'}:2"}}
    skipped(caplog, f"{root / 'label/label.lst'}:2", reason)

    # AffectNet's file lists: the same words
    root = tmp_path / "affectnet"
    images = root / "Manually_Annotated_Images/1"
    image(images / "a.jpg", size=200)
    (images / "b.jpg").symlink_to("/nonexistent/b.jpg")
    points = ";".join(f"{30 + i % 40}.0;{40 + i // 2}.0" for i in range(68))
    rows = "".join(f"1/{n}.jpg,10,10,80,80,{points},1,0.5,0.2\n" for n in ("a", "b"))
    lists = root / "Manually_Annotated_file_lists/training.csv"
    write(lists, ",".join(affectnet.HEADER) + "\n" + rows)
    p = Problems()
    res = affectnet.read(root, p)
    assert res.labels_without_frame == 1
    assert p.as_dict() == {"image … is a symbolic link to …, which does not exist": {"count": 1, "first": f"{lists}:3"}}
    skipped(caplog, f"{lists}:3", "image '1/b.jpg' is a symbolic link to '/nonexistent/b.jpg', which does not exist")


# --- names that differ in case, crop numbers (#51, #52, #53) -------------------------------------------------------


def test_an_afewva_frame_whose_png_differs_in_case_names_that_file(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    clip = tmp_path / "afewva/04/004"
    image(clip / "00000.PNG")
    image(clip / "00001.png")
    points = np.zeros((68, 2))
    points[36:48, 0], points[36:48, 1], points[48:68] = np.r_[[30] * 6, [70] * 6], 40, [50, 80]
    entry = {"valence": 1, "arousal": 2, "landmarks": points.tolist()}
    write(clip / "004.json", json.dumps({"frames": {"00000": entry, "00001": entry}}))
    p = Problems()
    res = afewva.read(tmp_path / "afewva", p)
    assert res.jobs[0].frames.tolist() == [1] and res.labels_without_frame == 1
    reason = "frame '00000' has no PNG: '00000.PNG' beside it differs only in case (rename it to .png)"
    assert p.as_dict() == {"frame … has no PNG: … beside it differs only in case (rename it to .png)": {
        "count": 1, "first": str(clip / "004.json")}}
    skipped(caplog, clip / "004.json", reason)


def test_affwild2_crops_numbered_from_00000_are_not_read_never_a_frame_off(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    root = tmp_path / "affwild2"
    write(root / "annotations/EXPR_Set/Training_Set/v1.txt",
          "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise\n4\n3\n")
    for n in (0, 1, 2):  # frame 1's crop is 00000.jpg here: the folder counts from 0
        image(root / f"cropped_aligned/v1/{n:05d}.jpg")
    p = Problems()
    res = affwild2.read(root, p)
    assert sum(len(j) for j in res.jobs) == 0 and res.labels_without_frame == 2
    reason = ("crops numbered from 00000, while Aff-Wild2 numbers frame 1 00001: which frame each shows cannot be "
              "told, folder not read")
    assert p.as_dict() == {reason: {"count": 3, "first": str(root / "cropped_aligned/v1")}}
    skipped(caplog, f"{root / 'cropped_aligned/v1'} (3 rows)", reason)


def test_a_saffwild2_video_folder_differing_in_case_is_named(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    root = tmp_path / "saw"
    write(root / "MTL_Challenge/training_set_annotations.txt", "image,valence,arousal,expression,aus\n"
          + "".join(f"{v}/{n:05d}.jpg,0.1,0.2,1,0,0,0,0,0,0,0,0,0,0,0,0\n" for v, n in (("mtl-001", 1), ("MTL-001", 6))))
    image(root / "cropped_aligned/mtl-001/00001.jpg")
    image(root / "cropped_aligned/mtl-001/00006.jpg")
    p = Problems()
    res = saffwild2.read(root, p)
    assert [(j.video, j.frames.tolist()) for j in res.jobs] == [("mtl-001", [0])] and res.labels_without_frame == 1
    place = f"{root / 'cropped_aligned/MTL-001'}/00006.jpg"
    assert p.as_dict() == {"image missing (no folder …; … differs only in case)": {"count": 1, "first": place}}
    skipped(caplog, place, "image missing (no folder 'MTL-001'; 'mtl-001' differs only in case)")


# --- Aff-Wild2 videos without cropped_aligned/: one file per video, or a counted skip -------------------------------


def affwild2_videos(root, *files):
    """Aff-Wild2 annotations of videos v1 (3 frames) and v2 (2 frames), and empty files
    under ``videos/`` (the reader never opens them)."""
    write(root / "annotations/EXPR_Set/Training_Set/v1.txt", "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise\n"
          "4\n3\n1\n")
    write(root / "annotations/EXPR_Set/Training_Set/v2.txt", "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise\n"
          "2\n0\n")
    for name in files:
        (root / "videos" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "videos" / name).write_bytes(b"")


@pytest.mark.parametrize("files", [("a/v1.avi", "b/v1.avi"), ("v1.avi", "v1.mp4"), ("v1.avi", "a/v1.avi"),
                                   ("v1.AVI", "v1.avi")])
def test_an_affwild2_video_in_two_files_is_a_counted_skip_naming_both(tmp_path, caplog, files):
    # Whichever file came first would decide whose frames the labels land on.
    caplog.set_level(logging.WARNING)
    root = tmp_path / "affwild2"
    affwild2_videos(root, *files, "b/v2.avi")
    p = Problems()
    res = affwild2.read(root, p)
    assert [(j.video, j.video_path) for j in res.jobs] == [("v2", str(root / "videos/b/v2.avi"))]
    assert res.labels_without_frame == 3
    assert p.as_dict() == {"two files for video …: …; keep one": {"count": 3, "first": str(root / "videos/v1")}}
    skipped(caplog, f"{root / 'videos/v1'} (3 rows)", f"two files for video 'v1': '{', '.join(sorted(files))}'; keep one")


def test_an_affwild2_video_with_an_upper_case_extension_is_found(tmp_path):
    root = tmp_path / "affwild2"
    affwild2_videos(root, "v1.AVI", "sub/v2.Mp4", "v3.txt")
    p = Problems()
    res = affwild2.read(root, p)
    assert [j.video_path for j in res.jobs] == [str(root / "videos/v1.AVI"), str(root / "videos/sub/v2.Mp4")]
    assert not p.counts
