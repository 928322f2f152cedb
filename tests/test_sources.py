"""Readers on small hand-written fixtures in each real format (docs/formats.md), awkward cases
included. None of these files comes from the synthetic generator."""
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from pipeline.extraction.sources import affectnet, affwild2, afewva, disfa, expw, saffwild2, unlabelled
from pipeline.core.errors import DataError
from pipeline.core.schema import ABAW2020, ABAW2022, EXPRESSIONS
from pipeline.extraction.sources.base import Problems


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def au_rows(job, schema=ABAW2020):
    """A job's AU labels in the schema's order (by column name, -1 where not labelled)."""
    return schema.project_aus(dict(zip(job.aus, job.au.T)), len(job)).tolist()


def jpg(path, size=112):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((size, size, 3), 128, np.uint8))


# --- Aff-Wild2 ----------------------------------------------------------------------


@pytest.fixture
def affwild2_root(tmp_path):
    root = tmp_path / "affwild2"
    ann = root / "annotations"
    # AU header in another order (AU2 before AU1): values must be mapped by name.
    write(ann / "AU_Set/Training_Set/v1.txt",
          "AU2,AU1,AU4,AU6,AU12,AU15,AU20,AU25\n"
          "1,0,0,0,0,0,0,0\n"      # frame 0: AU2 on, AU1 off
          "-1,-1,-1,-1,-1,-1,-1,-1\n"  # frame 1: invalid
          "0,1,0,0,1,0,0,1\n"      # frame 2: AU1, AU12, AU25 on
          "0,0,0,0,0,0,0,0\n")     # frame 3: has no image below
    write(ann / "EXPR_Set/Training_Set/v1.txt",
          "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise\n4\n3\n6\n0\n")
    write(ann / "VA_Set/Validation_Set/v2.txt", "arousal,valence\n0.5,-0.25\n-5,-5\n0.1,0.2\n")
    for f in (1, 2, 3):  # v1: frames 0..2 have crops (files are 1-based), frame 3 has none
        jpg(root / f"cropped_aligned/v1/{f:05d}.jpg")
    for f in (1, 2, 3, 4):  # v2: frame 3 has a crop but no label
        jpg(root / f"cropped_aligned/v2/{f:05d}.jpg")
    return root


def test_affwild2_maps_by_header_and_keeps_unknown(affwild2_root):
    res = affwild2.read(affwild2_root, Problems())
    jobs = {j.video: j for j in res.jobs}
    v1 = jobs["v1"]
    assert v1.mode == "aligned" and v1.split == "train"
    assert v1.frames.tolist() == [0, 1, 2]  # frame 3 has no image: not invented
    assert v1.images[0].endswith("v1/00001.jpg") and v1.images[2].endswith("v1/00003.jpg")
    assert v1.aus == ("AU2", "AU1", "AU4", "AU6", "AU12", "AU15", "AU20", "AU25")  # the header's
    assert au_rows(v1)[0] == [0, 1, 0, 0, 0, 0, 0, 0]  # AU2 column read by name
    assert au_rows(v1)[1] == [-1] * 8  # -1 row stays unknown
    assert au_rows(v1)[2] == [1, 0, 0, 0, 1, 0, 0, 1]
    assert v1.expr.tolist() == [4, 3, 6]
    assert np.isnan(v1.va).all()  # no VA file for v1: unknown, not 0
    v2 = jobs["v2"]
    assert v2.split == "val"
    # -5 row is dropped (no label at all); arousal/valence read by header name
    assert v2.frames.tolist() == [0, 2]
    np.testing.assert_allclose(v2.va, [[-0.25, 0.5], [0.2, 0.1]], rtol=1e-6)
    assert v2.aus == () and (v2.expr == -1).all()  # no AU file: no AU labelled
    assert res.labels_without_frame == 1  # v1 frame 3
    assert res.frames_without_label == 1  # v2 frame 3
    assert res.invalid_label_rows == 1  # v2 frame 1


def test_affwild2_bad_row_names_file_and_line(affwild2_root):
    path = affwild2_root / "annotations/EXPR_Set/Training_Set/v1.txt"
    path.write_text(path.read_text() + "9\n")
    with pytest.raises(DataError, match=r"v1.txt:6: bad EXPR row"):
        affwild2.read(affwild2_root, Problems(on_error="fail"))
    problems = Problems()
    affwild2.read(affwild2_root, problems)
    assert sum(problems.counts.values()) == 1
    assert list(problems.as_dict().values())[0]["first"].endswith("v1.txt:6")


def test_affwild2_file_with_its_header_again_is_skipped_whole_never_shifted(affwild2_root):
    path = affwild2_root / "annotations/VA_Set/Validation_Set/v2.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2] + ["arousal, valence"] + lines[2:]) + "\n")  # two files joined
    problems = Problems()
    jobs = {j.video: j for j in affwild2.read(affwild2_root, problems).jobs}
    assert len(jobs.get("v2", [])) == 0 and len(jobs["v1"]) == 3  # no VA label of v2 lands on another frame
    (found,) = problems.as_dict().items()
    assert "the header line again (two files joined?)" in found[0] and found[1]["first"] == f"{path}:3"


def test_a_byte_that_is_not_utf8_costs_its_line_not_the_file(affwild2_root, tmp_path):
    path = affwild2_root / "annotations/EXPR_Set/Training_Set/v1.txt"
    path.write_bytes(path.read_bytes().replace(b"\n3\n", b"\n\xff3\n"))  # line 3, frame 1
    p = Problems()
    v1 = {j.video: j for j in affwild2.read(affwild2_root, p).jobs}["v1"]
    assert v1.frames.tolist() == [0, 2] and v1.expr.tolist() == [4, 6]  # the others on their frames
    assert p.as_dict() == {"bytes that are not UTF-8 (a damaged file?)": {"count": 1, "first": f"{path}:3"}}
    disfa_file = tmp_path / "disfa/ActionUnit_Labels/SN001/SN001_au1.txt"
    write(disfa_file, "1,0\n2,1\n")
    disfa_file.write_bytes(disfa_file.read_bytes().replace(b"2,1", b"2,\xe91"))
    p = Problems()
    assert disfa.parse_au_file(disfa_file, p) == {0: 0} and p.examples == {
        "bytes that are not UTF-8 (a damaged file?)": f"{disfa_file}:2"}


def test_affwild2_a_blank_line_inside_a_file_keeps_the_labels_before_it_and_places_none_after(affwild2_root):
    path = affwild2_root / "annotations/EXPR_Set/Training_Set/v1.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:3] + [""] + lines[3:]) + "\n\n")  # a line put in after frame 1; blank end
    problems = Problems()
    v1 = {j.video: j for j in affwild2.read(affwild2_root, problems).jobs}["v1"]
    assert v1.expr.tolist() == [4, 3, -1]  # frames 0, 1 as before; frame 2 (its AU label kept) gets none
    (reason, seen), = problems.as_dict().items()
    assert reason.startswith("a blank line inside the file") and seen == {"count": len(lines) - 2, "first": f"{path}:4"}


def test_affwild2_an_upper_case_txt_is_read_and_other_entries_are_said(affwild2_root):
    folder = affwild2_root / "annotations/EXPR_Set/Training_Set"
    (folder / "v1.txt").rename(folder / "v1.TXT")
    (folder / "more").mkdir()
    (folder / "more" / "v3.txt").write_text("Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise\n4\n")
    res = affwild2.read(affwild2_root, Problems())
    assert {j.video: j for j in res.jobs}["v1"].expr.tolist()[:2] == [4, 3]
    assert f"{folder}: not read: 1 entries that are no <video>.txt (a subfolder's files are not searched), e.g. " \
           "more/" in res.notes


def test_affwild2_va_row_with_one_value_unknown_is_a_counted_skip(affwild2_root, monkeypatch):
    path = affwild2_root / "annotations/VA_Set/Validation_Set/v2.txt"
    path.write_text("valence,arousal\n0.5,-0.25\n-5,0.3\n0.1,0.2\n")  # frame 1: valence unknown only
    reason = "bad VA row: one of valence and arousal is unknown (-5), the other not"
    for fast in (True, False):  # Arrow's reading at once and the line-by-line one agree
        with monkeypatch.context() as m:
            if not fast:
                m.setattr(affwild2, "read_clean", lambda *a: None)
            p = Problems()
            res = affwild2.read(affwild2_root, p)
            v2 = {j.video: j for j in res.jobs}["v2"]
            assert p.as_dict() == {reason: {"count": 1, "first": f"{path}:3"}}, (fast, p.as_dict())
            assert v2.frames.tolist() == [0, 2]  # no arousal-less frame 1
            np.testing.assert_allclose(v2.va, [[0.5, -0.25], [0.1, 0.2]], rtol=1e-6)
            assert res.invalid_label_rows == 0
            with pytest.raises(DataError, match=r"v2.txt:3: bad VA row: one of valence and arousal.*got -5,0.3"):
                affwild2.read(affwild2_root, Problems(on_error="fail"))


def test_affwild2_crops_without_zero_padding_are_read_and_odd_files_counted(affwild2_root):
    crops = affwild2_root / "cropped_aligned/v1"
    jpg(crops / "4.jpg")  # frame 3, named without padding
    jpg(crops / "0004.jpg")  # frame 3 again
    (crops / "Thumbs.db").write_bytes(b"")
    p = Problems()
    v1 = {j.video: j for j in affwild2.read(affwild2_root, p).jobs}["v1"]
    assert v1.frames.tolist() == [0, 1, 2, 3] and v1.images[3] == str(crops / "0004.jpg")
    assert p.counts == {"not read: no frame image <NNNNN>.jpg, or a frame's second one": 2}, p.counts


def test_affwild2_falls_back_to_video(tmp_path):
    root = tmp_path / "aw"
    write(root / "annotations/VA_Set/Training_Set/clip_left.txt", "valence,arousal\n0.1,0.1\n")
    (root / "videos").mkdir(parents=True)
    (root / "videos/clip.mp4").write_bytes(b"")
    job = affwild2.read(root, Problems()).jobs[0]
    assert job.mode == "detect" and job.side == "left" and job.video_path.endswith("clip.mp4")


def test_affwild2_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="annotations"):
        affwild2.read(tmp_path, Problems())


# --- DISFA --------------------------------------------------------------------------


AU2022 = "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"


@pytest.fixture
def affwild2_2022_root(tmp_path):
    """The 2022+ layout under an annotations folder of another name, EXPR under its
    alternative folder name, AUs in another order, an AU no schema of ours names (AU9)."""
    root = tmp_path / "affwild2"
    ann = root / "6th ABAW Annotations"
    header = "AU26,AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU9"
    write(ann / "AU_Detection_Challenge/Train_Set/v1.txt",
          header + "\n"
          "1,0,0,0,0,0,1,0,0,0,0,0,1\n"      # frame 0: AU26, AU10, AU9
          "-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1\n"
          "0,1,0,0,0,1,0,0,0,1,1,0,0\n")    # frame 2: AU1, AU7, AU23, AU24
    write(ann / "EXPR_Recognition_Challenge/Train_Set/v1.txt",
          "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n7\n-1\n4\n")
    write(ann / "VA_Estimation_Challenge/Validation_Set/v2.txt", "valence,arousal\n0.3,-0.4\n-5,-5\n")
    # a column that is not ours before the AUs: values are taken by the AUs' own positions
    write(ann / "AU_Detection_Challenge/Train_Set/v5.txt", "annotator," + AU2022 + "\nB,1,0,0,0,0,0,0,0,0,0,0,1\n")
    for video, n in (("v1", 3), ("v2", 2), ("v5", 1)):
        for f in range(1, n + 1):
            jpg(root / f"cropped_aligned/{video}/{f:05d}.jpg")
    return root


def test_affwild2_2022_layout_keeps_every_au_and_other(affwild2_2022_root):
    problems = Problems(on_error="fail")
    res = affwild2.read(affwild2_2022_root, problems, annotations="6th ABAW Annotations")
    jobs = {j.video: j for j in res.jobs}
    v1 = jobs["v1"]
    assert v1.split == "train" and v1.frames.tolist() == [0, 2]  # frame 1: every label invalid
    assert set(v1.aus) == set(AU2022.split(",")) | {"AU9"}  # 13 kept, AU9 included
    rows = au_rows(v1, ABAW2022)
    on = [{a for a, x in zip(ABAW2022.aus, row) if x == 1} for row in rows]
    assert on == [{"AU26", "AU10"}, {"AU1", "AU7", "AU23", "AU24"}]
    assert -1 not in rows[0] + rows[1] and v1.au[0, v1.aus.index("AU9")] == 1
    assert v1.expr.tolist() == [7, 4]  # Other is class 7
    v2 = jobs["v2"]
    assert v2.split == "val" and v2.frames.tolist() == [0] and v2.aus == ()
    np.testing.assert_allclose(v2.va, [[0.3, -0.4]], rtol=1e-6)
    v5 = jobs["v5"]
    assert v5.aus == tuple(AU2022.split(",")) and v5.au.tolist() == [[1] + [0] * 10 + [1]]
    assert res.invalid_label_rows == 2 and not problems.counts
    # without the folder's name: the error says where the annotations are and how to name them
    with pytest.raises(FileNotFoundError, match=r"annotations: missing \(.*\); '6th ABAW Annotations' in .* holds "
                                                r"annotation folders: set sources.affwild2.annotations: "
                                                r"'6th ABAW Annotations' in params.yaml"):
        affwild2.read(affwild2_2022_root, problems)


def test_affwild2_2022_bad_headers_and_classes_are_counted_naming_file_and_line(affwild2_2022_root):
    ann = affwild2_2022_root / "6th ABAW Annotations"
    write(ann / "AU_Detection_Challenge/Train_Set/v3.txt", "smile,frown\n1,0\n")  # no AU column
    write(ann / "EXPR_Recognition_Challenge/Validation_Set/v4.txt",
          "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Contempt\n1\n")
    (ann / "EXPR_Recognition_Challenge/Train_Set/v1.txt").write_text(
        "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n8\n7\n")
    problems = Problems()
    res = affwild2.read(affwild2_2022_root, problems, annotations="6th ABAW Annotations")
    found = problems.as_dict()
    assert any("names no AU" in r and f["first"].endswith("v3.txt:1") for r, f in found.items())
    assert any("neither era" in r and "Contempt" in r and f["first"].endswith("v4.txt:1") for r, f in found.items())
    assert any("0..7 (the header's classes)" in r and f["first"].endswith("v1.txt:2") for r, f in found.items())
    v1 = {j.video: j for j in res.jobs}["v1"]
    assert v1.expr.tolist() == [-1, 7, -1]  # the bad row is skipped, not shifted: frame 1 is Other


def test_affwild2_misnamed_split_folder_is_a_note_naming_it(affwild2_2022_root):
    ann = affwild2_2022_root / "6th ABAW Annotations"
    (ann / "VA_Estimation_Challenge/Validation_Set").rename(ann / "VA_Estimation_Challenge/Val_Set")
    problems = Problems(on_error="fail")
    res = affwild2.read(affwild2_2022_root, problems, annotations="6th ABAW Annotations")
    assert res.notes == [f"{ann}/VA_Estimation_Challenge/Val_Set: not read, no split folder of the 2022 layout "
                         "(expected Train_Set or Validation_Set)"]
    assert sorted(j.video for j in res.jobs) == ["v1", "v5"]  # v2's file is not read, never made train


@pytest.mark.parametrize("task, header", [("AU", "smile"), ("EXPR", "happy,sad"), ("VA", "valence,notarousal")])
def test_affwild2_file_with_a_bad_header_is_a_counted_skip_of_that_file(tmp_path, task, header):
    root = tmp_path / "aw"
    write(root / f"annotations/{task}_Set/Training_Set/v.txt", header + "\n1\n")
    write(root / "annotations/AU_Set/Training_Set/w.txt", "AU1\n1\n")
    (root / "videos").mkdir()
    for video in ("v", "w"):
        (root / f"videos/{video}.mp4").write_bytes(b"")
    problems = Problems()
    res = affwild2.read(root, problems, use_cropped_aligned=False)
    assert {j.video: len(j) for j in res.jobs} == {"v": 0, "w": 1}  # v has no other label: no frame
    (found,) = problems.as_dict().items()
    assert "bad header" in found[0] and found[1]["first"].endswith("v.txt:1")


def test_affwild2_layout_must_be_one_release(tmp_path):
    root = tmp_path / "aw"
    write(root / "annotations/AU_Set/Training_Set/v.txt", "AU1\n1\n")
    write(root / "annotations/AU_Detection_Challenge/Train_Set/v.txt", "AU1\n1\n")
    with pytest.raises(FileNotFoundError, match="the 2020 and the 2022 layouts"):
        affwild2.read(root, Problems())
    with pytest.raises(FileNotFoundError, match="no annotation folders of either release"):
        affwild2.read(root, Problems(), annotations="annotations/AU_Set")
    (root / "annotations/AU_Set/Training_Set/v.txt").unlink()
    (root / "annotations/AU_Set/Training_Set").rmdir()
    write(root / "annotations/EXPR_Classification_Challenge/Train_Set/v.txt", "Neutral\n0\n")
    write(root / "annotations/EXPR_Recognition_Challenge/Train_Set/v.txt", "Neutral\n1\n")
    with pytest.raises(FileNotFoundError, match="EXPR_Classification_Challenge and EXPR_Recognition_Challenge "
                                                r"\(one task's labels twice\): keep one"):
        affwild2.read(root, Problems())


# --- s-Aff-Wild2 ---------------------------------------------------------------------


def test_saffwild2_keeps_each_unknown_unknown_and_every_label_on_its_image(tmp_path):
    root = tmp_path / "saw"
    head = "image,valence,arousal,expression,aus\n"
    write(root / "MTL_Challenge/training_set_annotations_22.txt", head
          + "v1/00002.jpg,0.5,-0.25,7,1,0,0,0,0,0,0,0,0,0,0,1\n"   # all three tasks, Other
          + "v1/00001.jpg,-5,-5,-1,-1,1,-1,0,-1,-1,-1,-1,-1,-1,-1,-1\n"  # AU2 on, AU6 off only
          + "v1/00003.jpg,-5,-5,3,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1\n"  # expression only
          + "v1/00004.jpg,-5,-5,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1\n"  # nothing known
          + "v1/00005.jpg,0.1,0.2,-1,0,0,0,0,0,0,0,0,0,0,0,0\n")  # no crop below
    write(root / "MTL_Challenge/validation_set_annotations.txt", head
          + "v2/00001.jpg,0.9,0.8,0,0,0,0,0,0,0,0,0,0,0,0,0\n")
    for name in ("v1/00001", "v1/00002", "v1/00003", "v1/00004", "v2/00001", "v1/00009", "test/00001", "test/00002"):
        jpg(root / f"cropped_aligned/{name}.jpg")  # no row for v1/00009 nor the folder test
    problems = Problems()
    res = saffwild2.read(root, problems)
    assert res.frames_without_label == 3
    jobs = {j.video: j for j in res.jobs}
    v1 = jobs["v1"]
    assert v1.split == "train" and v1.aus == ABAW2022.aus and v1.frames.tolist() == [0, 1, 2]
    assert v1.images[0].endswith("v1/00001.jpg") and v1.images[1].endswith("v1/00002.jpg")
    assert v1.au[0].tolist() == [-1, 1, -1, 0] + [-1] * 8  # each AU unknown on its own
    assert v1.au[1].tolist() == [1] + [0] * 10 + [1] and (v1.au[2] == -1).all()
    assert v1.expr.tolist() == [-1, 7, 3]
    np.testing.assert_allclose(v1.va[1], [0.5, -0.25])
    assert np.isnan(v1.va[[0, 2]]).all()
    assert jobs["v2"].split == "val" and jobs["v2"].expr.tolist() == [0]
    assert res.invalid_label_rows == 1 and res.labels_without_frame == 1  # 00004 and 00005
    assert list(problems.as_dict().values())[0]["first"].endswith("v1/00005.jpg")
    assert (f"1 row(s) with every label unknown (AUs -1, expression -1, valence/arousal -5) skipped, the first "
            f"{root / 'MTL_Challenge/training_set_annotations_22.txt'}:5") in res.notes


@pytest.mark.parametrize("row, reason", [
    ("v1/00001.jpg,0.5,-5,0,0,0,0,0,0,0,0,0,0,0,0,0", "one of valence and arousal is unknown"),
    ("v1/00001.jpg,1.5,0.2,0,0,0,0,0,0,0,0,0,0,0,0,0", "valence/arousal must be in"),
    ("v1/00001.jpg,0.5,0.2,8,0,0,0,0,0,0,0,0,0,0,0,0", "expression must be 0..7"),
    ("v1/00001.jpg,0.5,0.2,1,0,0,2,0,0,0,0,0,0,0,0,0", "AU values must be"),
    ("v1/00001.jpg,0.5,0.2,1,0,0,0,0,0,0,0,0", "expected 16"),
    ("../v1/00001.jpg,0.5,0.2,1,0,0,0,0,0,0,0,0,0,0,0,0", "is not <video>/<NNNNN>.jpg"),
])
def test_saffwild2_bad_rows_are_counted_skips_naming_file_and_line(tmp_path, row, reason):
    root = tmp_path / "saw"
    write(root / "MTL_Challenge/training_set_annotations.txt",
          "image,valence,arousal,expression,aus\nv1/00002.jpg,0.1,0.1,1,0,0,0,0,0,0,0,0,0,0,0,0\n" + row + "\n")
    jpg(root / "cropped_aligned/v1/00001.jpg")
    jpg(root / "cropped_aligned/v1/00002.jpg")
    problems = Problems()
    res = saffwild2.read(root, problems)
    assert res.jobs[0].frames.tolist() == [1]  # the good row only, on its own image
    (found,) = problems.as_dict().items()
    assert reason in found[0] and found[1]["first"].endswith("training_set_annotations.txt:3")
    with pytest.raises(DataError, match="training_set_annotations.txt:3"):
        saffwild2.read(root, Problems(on_error="fail"))


SAW_HEAD = "image,valence,arousal,expression,aus\n"


def saw_row(image, valence=0.1):
    return f"{image},{valence},0.2,1,0,0,0,0,0,0,0,0,0,0,0,0\n"


def test_saffwild2_two_files_of_one_split_are_a_note_and_one_is_read(tmp_path):
    root = tmp_path / "saw"
    write(root / "MTL_Challenge/training_set_annotations.txt", SAW_HEAD + saw_row("v1/00001.jpg", 0.1))
    write(root / "MTL_Challenge/training_set_annotations_22.txt", SAW_HEAD + saw_row("v1/00001.jpg", 0.7))
    jpg(root / "cropped_aligned/v1/00001.jpg")
    problems = Problems()
    res = saffwild2.read(root, problems)
    assert res.notes == ["2 annotation files for training_set: training_set_annotations.txt, "
                         "training_set_annotations_22.txt: only training_set_annotations.txt is read; keep one"]
    assert not problems.counts  # no row of the other file "listed twice"
    np.testing.assert_allclose(res.jobs[0].va, [[0.1, 0.2]], rtol=1e-6)


def test_saffwild2_image_in_both_splits_is_validations(tmp_path):
    root = tmp_path / "saw"
    train = root / "MTL_Challenge/training_set_annotations.txt"
    write(train, SAW_HEAD + saw_row("v1/00001.jpg", 0.1) + saw_row("v1/00002.jpg", 0.3))
    write(root / "MTL_Challenge/validation_set_annotations.txt", SAW_HEAD + saw_row("v1/00001.jpg", 0.5))
    jpg(root / "cropped_aligned/v1/00001.jpg")
    jpg(root / "cropped_aligned/v1/00002.jpg")
    problems = Problems()
    res = saffwild2.read(root, problems)
    (job,) = res.jobs
    assert job.split == "val" and job.frames.tolist() == [0, 1]  # the documented rule: val only
    np.testing.assert_allclose(job.va[:, 0], [0.5, 0.3], rtol=1e-6)  # image 1: validation's row
    assert res.notes == ["v1: listed in both splits, kept in val only"]
    assert problems.as_dict() == {"bad row: an image listed in both splits (validation's row kept)": {
        "count": 1, "first": f"{train}:2"}}


def test_saffwild2_bad_header_counts_every_row_of_the_file(tmp_path):
    root = tmp_path / "saw"
    bad = root / "MTL_Challenge/training_set_annotations.txt"
    write(bad, "image,valence,arousal,expr,aus\n" + saw_row("v1/00001.jpg") + saw_row("v1/00002.jpg")
          + saw_row("v1/00003.jpg"))
    write(root / "MTL_Challenge/validation_set_annotations.txt", SAW_HEAD + saw_row("v2/00001.jpg"))
    jpg(root / "cropped_aligned/v2/00001.jpg")
    problems = Problems()
    saffwild2.read(root, problems)
    (reason, found), = problems.as_dict().items()
    assert reason.startswith("bad header") and found == {"count": 3, "first": f"{bad}:1"}
    assert problems.summary().startswith("3 skipped")


def test_saffwild2_dot_video_names_never_leave_cropped_aligned(tmp_path):
    root = tmp_path / "saw"
    train = root / "MTL_Challenge/training_set_annotations.txt"
    write(train, SAW_HEAD + saw_row("v1/00001.jpg") + saw_row("../00002.jpg") + saw_row("./00003.jpg"))
    jpg(root / "cropped_aligned/v1/00001.jpg")
    jpg(root / "00002.jpg")  # cropped_aligned/../00002.jpg: outside the crops
    jpg(root / "cropped_aligned/00003.jpg")
    assert saffwild2.read_clean(train) is None  # the fast path refuses them too, as the line path does
    problems = Problems()
    res = saffwild2.read(root, problems)
    assert [j.video for j in res.jobs] == ["v1"]
    assert problems.as_dict() == {"bad row: image … is not <video>/<NNNNN>.jpg (a video folder, not . or ..)": {
        "count": 2, "first": f"{train}:3"}}


def test_saffwild2_quoted_image_is_a_bad_row_on_both_read_paths(tmp_path):
    # docs/formats.md: the image is <video>/<NNNNN>.jpg, comma-separated values, no CSV quoting:
    # a quoted name is a bad row, whether the file is otherwise clean or not.
    path = tmp_path / "training_set_annotations.txt"
    write(path, SAW_HEAD + saw_row("v1/00001.jpg") + saw_row('"v1/00002.jpg"'))
    assert saffwild2.read_clean(path) is None
    problems = Problems()
    assert saffwild2.read_lines(path, problems)["frame"].tolist() == [0]
    assert problems.as_dict() == {"bad row: image … is not <video>/<NNNNN>.jpg (a video folder, not . or ..)": {
        "count": 1, "first": f"{path}:3"}}


def test_saffwild2_image_twice_says_which_row_is_kept_and_whether_labels_differ(tmp_path, caplog):
    root = tmp_path / "saw"
    train = root / "MTL_Challenge/training_set_annotations.txt"
    write(train, SAW_HEAD + saw_row("v1/00001.jpg", 0.1) + saw_row("v1/00001.jpg", 0.1) + saw_row("v1/00001.jpg", 0.7))
    jpg(root / "cropped_aligned/v1/00001.jpg")
    problems = Problems()
    res = saffwild2.read(root, problems)
    np.testing.assert_allclose(res.jobs[0].va, [[0.1, 0.2]], rtol=1e-6)  # the first row's labels
    assert {r: v["first"] for r, v in problems.as_dict().items()} == {
        "bad row: an image listed twice with the same labels": f"{train}:3",
        "bad row: an image listed twice with other labels": f"{train}:4"}
    assert "got v1/00001.jpg again (the first, line 2, is kept)" in caplog.text


@pytest.mark.parametrize("cells, reason", [
    ("0.5,0.2,nan", "expression must be 0..7 or -1, got nan"),
    ("0.5,0.2,inf", "expression must be 0..7 or -1, got inf"),  # was an OverflowError
    ("nan,0.2,1", "valence/arousal must be in [-1, 1] or -5, got nan,0.2"),
    ("0.5,-inf,1", "valence/arousal must be in [-1, 1] or -5, got 0.5,-inf"),
])
def test_saffwild2_values_that_are_not_finite_name_their_column_and_value(cells, reason):
    with pytest.raises(ValueError) as e:
        saffwild2.parse_row(f"v1/00001.jpg,{cells},0,0,0,0,0,0,0,0,0,0,0,0")
    assert str(e.value) == reason
    with pytest.raises(ValueError, match=r"AU values must be 0, 1 or -1, got nan,0"):
        saffwild2.parse_row("v1/00001.jpg,0.5,0.2,1,nan,0,0,0,0,0,0,0,0,0,0,0")


def test_saffwild2_empty_header_only_and_unreadable_files_are_said_as_such(tmp_path):
    root = tmp_path / "saw"
    train = root / "MTL_Challenge/training_set_annotations.txt"
    write(train, SAW_HEAD)  # the header only: a note, the split has no image
    write(root / "MTL_Challenge/validation_set_annotations.txt", SAW_HEAD + saw_row("v2/00001.jpg"))
    jpg(root / "cropped_aligned/v2/00001.jpg")
    problems = Problems()
    res = saffwild2.read(root, problems)
    assert res.notes == [f"{train}: no data rows, only the header: its split has no image"] and not problems.counts
    write(train, "")  # 0 bytes: the file is skipped, not a row with a bad header
    problems = Problems()
    saffwild2.read(root, problems)
    assert problems.as_dict() == {"empty annotation file": {"count": 1, "first": str(train)}}
    train.unlink()
    train.mkdir()  # cannot be read (as a file the user may not read): one skip of the file, its path in full
    problems = Problems()
    assert [j.split for j in saffwild2.read(root, problems).jobs] == ["val"]
    assert problems.as_dict() == {"unreadable annotation file (IsADirectoryError: Is a directory): file skipped": {
        "count": 1, "first": str(train)}}


def test_disfa_joins_on_frame_number_with_a_missing_line(tmp_path):
    root = tmp_path / "disfa"
    sn = "SN001"
    for au in (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26):
        lines = [f"{f},{0}" for f in range(1, 6)]
        if au == 12:
            lines = ["3,5", "1,1", "2,2", "5,0"]  # out of order, frame 4 missing
        write(root / f"ActionUnit_Labels/{sn}/{sn}_au{au}.txt", "\n".join(lines) + "\n")
    (root / "Videos_LeftCamera").mkdir()
    (root / f"Videos_LeftCamera/LeftVideo{sn}_comp.avi").write_bytes(b"")
    res = disfa.read(root, Problems())
    job = res.jobs[0]
    assert job.frames.tolist() == [0, 1, 2, 3, 4]
    assert job.aus == ("AU1", "AU2", "AU4", "AU5", "AU6", "AU9", "AU12", "AU15", "AU17", "AU20", "AU25",
                       "AU26")  # all 12 kept, not only the schema's
    au12 = job.au[:, job.aus.index("AU12")]
    assert au12.tolist() == [0, 1, 1, -1, 0]  # intensity 1 -> 0, 2 -> 1, 5 -> 1, missing -> unknown
    assert (job.au[:, 0] == 0).all() and (job.expr == -1).all() and np.isnan(job.va).all()
    # projected on the 2022 schema, the AUs DISFA does not label are unknown, never 0
    for absent in ("AU7", "AU10", "AU23", "AU24"):
        assert {row[ABAW2022.aus.index(absent)] for row in au_rows(job, ABAW2022)} == {-1}
    # a copy from a case-blind file system: the video is found all the same
    (root / f"Videos_LeftCamera/LeftVideo{sn}_comp.avi").rename(root / f"Videos_LeftCamera/LeftVideo{sn}_comp.AVI")
    assert disfa.read(root, Problems()).jobs[0].video_path.endswith("_comp.AVI")


def test_disfa_files_it_does_not_ship_are_a_note_naming_them(tmp_path):
    root = tmp_path / "disfa"
    labels = root / "ActionUnit_Labels/SN001"
    for au in (1, 2, 4, 5, 6, 7, 9, 12, 15, 17, 20, 25, 26):  # AU7 is no DISFA AU
        write(labels / f"SN001_au{au}.txt", "1,3\n")
    write(labels / "notes.txt", "annotator B\n")
    (root / "Videos_LeftCamera").mkdir(parents=True)
    (root / "Videos_LeftCamera/LeftVideoSN001_comp.avi").write_bytes(b"")
    problems = Problems(on_error="fail")
    res = disfa.read(root, problems)
    assert res.notes == ["2 files in the subject folders are none of DISFA's 12 AU label files (<SN>_au<N>.txt, "
                         f"N in 1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26), not read (first: {labels / 'SN001_au7.txt'})"]
    assert "AU7" not in res.jobs[0].aus and res.jobs[0].au.tolist() == [[1] * 12]


def test_disfa_bad_intensity_is_counted_or_raised(tmp_path):
    root = tmp_path / "disfa"
    write(root / "ActionUnit_Labels/SN002/SN002_au1.txt", "1,0\n2,7\n3,1.9\n4,2.0\n5,1,3\n")
    (root / "Videos_LeftCamera").mkdir()
    (root / "Videos_LeftCamera/LeftVideoSN002_comp.avi").write_bytes(b"")
    with pytest.raises(DataError, match=r"SN002_au1.txt:2: .*intensity must be a whole number 0..5, got 7"):
        disfa.read(root, Problems(on_error="fail"))
    p = Problems()
    res = disfa.read(root, p)
    assert res.jobs[0].frames.tolist() == [0, 3, 4]  # 7 and 1.9 (never rounded to 1) skipped; 2.0 is 2
    assert res.jobs[0].au[:, 0].tolist() == [0, 1, 0]
    assert sum(c for r, c in p.counts.items() if "whole number" in r) == 2
    assert "1 label lines carry columns after frame,intensity, not read (first: " in res.notes[0]
    assert res.notes[0].endswith("SN002_au1.txt:5)")


def test_disfa_a_file_counting_from_0_is_not_read_and_a_huge_frame_is_a_bad_line(tmp_path):
    folder = tmp_path / "ActionUnit_Labels/SN003"
    write(folder / "SN003_au1.txt", "0,1\n1,0\n2,3\n")  # counts from 0: each label may be a frame off
    write(folder / "SN003_au2.txt", "1,0\n3000000000,1\n99999999999999999999,2\n2,4\n")
    p = Problems()
    assert disfa.parse_au_file(folder / "SN003_au1.txt", p) == {}
    assert p.as_dict() == {"a frame 0 (line 1): DISFA counts frames from 1, so every label of this file may be a "
                           "frame off: file not read (that AU stays unknown)": {"count": 3,
                                                                                "first": str(folder / "SN003_au1.txt")}}
    p = Problems()
    assert disfa.parse_au_file(folder / "SN003_au2.txt", p) == {0: 0, 1: 4}
    assert sum(p.counts.values()) == 2 and all("frame numbers run from 1 to 9,999,999" in r for r in p.counts)


# --- ExpW ---------------------------------------------------------------------------


def test_expw_a_label_that_is_no_whole_number_names_the_field(tmp_path):
    root = tmp_path / "expw"
    jpg(root / "image/origin/a.jpg", size=200)
    write(root / "label/label.lst", "a.jpg 0 10 20 80 90 55.1 3\na.jpg 1 10 20 80 90 55.1 4.0\n")
    p = Problems()
    expw.read(root, p)
    assert p.counts == {"bad label line: label … is not a whole number 0..6": 1}


def test_expw_two_faces_in_one_image(tmp_path):
    root = tmp_path / "expw"
    jpg(root / "image/origin/party.jpg", size=200)
    jpg(root / "image/origin/solo.jpg", size=200)
    jpg(root / "image/origin/unlabelled.jpg", size=200)  # no line names it
    jpg(root / "image/origin/café 1.jpg", size=200)  # its line names "café": not read
    write(root / "image/origin/notes.txt", "not an image")
    write(root / "label/label.lst",
          "party.jpg 0 10 20 80 90 55.1 3\n"
          "party.jpg 1 100 110 190 180 40.0 6\n"
          "solo.jpg 0 5 5 100 100 60 1\n"
          "gone.jpg 0 5 5 100 100 60 1\n"
          "solo.jpg 1 5 5 100\n"
          "solo.jpg 2 5 5 100 100 abc 1\n"
          "café 1.jpg 0 5 5 100 100 60 1\n")  # a space in the name: the face number is "1.jpg"
    res = expw.read(root, Problems())
    jobs = {j.video: j for j in res.jobs}
    party = jobs["party"]
    assert party.frames.tolist() == [0, 1] and party.mode == "boxes"
    assert party.expr.tolist() == [4, 0]  # happy -> Happiness, neutral -> Neutral
    # box columns: top left right bottom -> x1 y1 x2 y2 = left top right bottom
    assert party.boxes[0].tolist() == [20, 10, 80, 90]
    assert jobs["solo"].expr.tolist() == [2]  # disgust
    assert res.labels_without_frame == 1 and res.frames_without_label == 2
    assert sum(res.problems.counts.values()) == 4  # missing image, short line, a word as confidence, a spaced name
    assert res.problems.examples["bad label line: confidence … is not a number"].endswith("label.lst:6")
    spaced = [k for k in res.problems.examples if "an image name with a space?" in k and "face number" in k]
    assert spaced and res.problems.examples[spaced[0]].endswith("label.lst:7")


# --- AFEW-VA ------------------------------------------------------------------------


def landmarks68():
    pts = np.zeros((68, 2))
    pts[36:42] = [30, 40]
    pts[42:48] = [70, 40]
    pts[30] = [50, 60]
    pts[48] = [35, 80]
    pts[54] = [65, 80]
    return pts.tolist()


def test_afewva_keys_not_matching_pngs(tmp_path):
    root = tmp_path / "afewva"
    clip = root / "01" / "007"
    for name in ("00000", "00001", "00003"):
        jpg(clip / f"{name}.png")
    frames = {
        "00000": {"valence": 5, "arousal": -10, "landmarks": landmarks68()},
        "00001": {"valence": 0, "arousal": 3, "landmarks": landmarks68()},
        "00002": {"valence": 1, "arousal": 1, "landmarks": landmarks68()},  # no PNG
    }
    write(clip / "007.json", json.dumps({"actor": "A", "video_id": "007", "frames": frames}))
    res = afewva.read(root, Problems())
    job = res.jobs[0]
    assert job.video == "01_007" and job.subject == "A" and job.mode == "landmarks"
    assert job.frames.tolist() == [0, 1]
    np.testing.assert_allclose(job.va, [[0.5, -1.0], [0.0, 0.3]], rtol=1e-6)
    np.testing.assert_allclose(job.landmarks[0], [[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]])
    assert res.labels_without_frame == 1 and res.frames_without_label == 1
    assert (job.au == -1).all() and (job.expr == -1).all()


def test_afewva_keys_without_zero_padding_odd_images_and_a_frame_twice(tmp_path):
    clip = tmp_path / "afewva" / "01" / "001"
    for name in ("00009", "00010", "cover"):
        jpg(clip / f"{name}.png")
    entry = {"valence": 1, "arousal": 2, "landmarks": landmarks68()}
    write(clip / "001.json", json.dumps({"frames": {"10": entry, "9": entry, "009": entry}}))
    p = Problems()
    res = afewva.read(tmp_path / "afewva", p)
    job = res.jobs[0]
    assert job.frames.tolist() == [9, 10] and job.images[0].endswith("00009.png")  # in frame order
    assert job.images[1].endswith("00010.png")
    assert p.counts == {"image name is not a frame number (not read)": 1,
                        "bad entry …: frame 9 listed twice (keys … and another)": 1}, p.counts
    assert res.frames_without_label == 0 and res.labels_without_frame == 0


def test_afewva_a_key_given_twice_is_named_never_the_last_taken(tmp_path):
    clip = tmp_path / "afewva" / "01" / "002"
    jpg(clip / "00001.png")
    text = '{"frames": {"1": {"valence": 1, "arousal": 2, "landmarks": %s}, "1": {"valence": -9, "arousal": 2, ' \
           '"landmarks": %s}}}' % (json.dumps(landmarks68()), json.dumps(landmarks68()))
    write(clip / "002.json", text)
    p = Problems()
    assert afewva.read(tmp_path / "afewva", p).jobs == []  # its only clip not read
    assert p.counts == {"unreadable JSON: the key … twice in one object: which value is meant cannot be told": 1}


def test_afewva_out_of_range_value(tmp_path):
    clip = tmp_path / "afewva" / "02" / "001"
    jpg(clip / "00000.png")
    write(clip / "001.json", json.dumps({"frames": {"00000": {"valence": 12, "arousal": 0,
                                                               "landmarks": landmarks68()}}}))
    with pytest.raises(DataError, match=r"001.json: bad entry '00000'.*\[-10, 10\]"):
        afewva.read(tmp_path / "afewva", Problems(on_error="fail"))


# --- AffectNet ----------------------------------------------------------------------

AFFECTNET_HEADER = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal"


def affectnet_row(name, code, valence, arousal, points=None):
    points = landmarks68() if points is None else points
    return f"{name},10,10,80,80,{';'.join(f'{v:g}' for p in points for v in p)},{code},{valence},{arousal}"


def test_affectnet_file_lists_map_codes_keep_unknowns_and_skip_no_face(tmp_path):
    root = tmp_path / "affectnet"
    for name in ("689/b.jpg", "689/a.jpg", "12/c.png", "12/d.jpg", "689/v.jpg", "689/unlisted.jpg", "5/x.JPG", "top.png"):
        jpg(root / "Manually_Annotated_Images" / name)  # no row names the last three
    write(root / "Manually_Annotated_Images/5/readme.txt", "not an image")
    write(root / "Manually_Annotated_file_lists/training.csv", "\n".join([
        AFFECTNET_HEADER,
        affectnet_row("689/b.jpg", 1, 0.5, -0.25),   # Happiness
        affectnet_row("689/a.jpg", 7, -2, -2),       # Contempt: Other, VA unknown
        affectnet_row("12/c.png", 8, 0.1, 0.2),      # None: expression unknown, VA known
        affectnet_row("12/d.jpg", 10, -2, -2),       # No-Face: counted skip
        affectnet_row("12/e.jpg", 0, 0, 0),          # image missing
        affectnet_row("12/f.jpg", 9, -2, -2),        # Uncertain and no VA: nothing to learn
        affectnet_row("12/g.jpg", 3, 1.5, 0),        # VA out of range
        affectnet_row("12/h.jpg", 3, 0, 0, landmarks68()[:67]),  # 67 points
        affectnet_row("12/d.jpg", 3, 0, 0).replace(",10,10,80,80,", ",50,50,0,80,", 1),  # empty box
        affectnet_row("12/d.jpg", "inf", 0, 0),  # not a number
        affectnet_row("689/b.jpg", 2, 0, 0),  # b again: a second face of one image
    ]) + "\n")
    write(root / "Manually_Annotated_file_lists/validation.csv",
          AFFECTNET_HEADER + "\n" + affectnet_row("689/v.jpg", 6, 0, 0.5) + "\n")
    p = Problems()
    res = affectnet.read(root, p)
    jobs = {j.video: j for j in res.jobs}
    assert sorted(jobs) == ["train-12", "train-689", "val-689"]  # train and val never share a video
    happy_other = jobs["train-689"]
    assert [Path(i).name for i in happy_other.images] == ["a.jpg", "b.jpg"] and happy_other.frames.tolist() == [0, 1]
    assert [EXPRESSIONS[e] for e in happy_other.expr] == ["Other", "Happiness"]
    assert np.isnan(happy_other.va[0]).all() and happy_other.va[1].tolist() == [0.5, -0.25]
    assert happy_other.mode == "landmarks" and happy_other.aus == () and happy_other.split == "train"
    np.testing.assert_allclose(happy_other.landmarks[0], [[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]])
    assert happy_other.boxes[0].tolist() == [10, 10, 90, 90]  # x, y, width, height -> x1, y1, x2, y2
    none = jobs["train-12"]
    assert none.expr.tolist() == [-1] and none.va.tolist() == [[pytest.approx(0.1), pytest.approx(0.2)]]
    assert jobs["val-689"].split == "val" and jobs["val-689"].expr.tolist() == [EXPRESSIONS.index("Anger")]
    assert res.labels_without_frame == 1 and res.invalid_label_rows == 1 and res.frames_without_label == 3
    reasons = {r: v["first"].rsplit(":", 1)[1] for r, v in p.as_dict().items()}
    assert reasons == {"bad row: No-Face (code 10): no face to learn from": "5",
                       "image … missing": "6",
                       "bad row: valence/arousal must be in [-1, 1] or -2": "8",
                       "bad row: landmarks must be 68 (x, y) points, 136 numbers": "9",
                       "bad row: the face box is empty": "10",
                       "bad row: values must be numbers": "11",
                       "bad row: an image listed twice (its first row is kept)": "12"}, reasons
    assert ABAW2020.project_expressions(happy_other.expr).tolist() == [-1, 4]  # Other unknown in the 2020 schema
    write(root / "Manually_Annotated_file_lists/training.csv", "")  # emptied: said, not silent
    p = Problems()
    assert [j.video for j in affectnet.read(root, p).jobs] == ["val-689"]
    assert p.as_dict()["empty annotation file"]["first"].endswith("training.csv")


def test_affectnet_per_image_annotations(tmp_path):
    root = tmp_path / "affectnet"
    for split, ids in (("train_set", ("2", "1", "3")), ("val_set", ("9",))):
        for i in ids:
            jpg(root / split / "images" / f"{i}.jpg")
            notes = root / split / "annotations"
            notes.mkdir(parents=True, exist_ok=True)
            np.save(notes / f"{i}_exp.npy", np.array({"1": "7", "2": "2", "3": "10", "9": "0"}[i]))  # strings, as shipped
            np.save(notes / f"{i}_val.npy", np.array("-0.5"))
            np.save(notes / f"{i}_aro.npy", np.array("0.25"))
            if i != "2":
                np.save(notes / f"{i}_lnd.npy", np.array(landmarks68(), dtype=np.float64).reshape(-1))
    p = Problems()
    res = affectnet.read(root, p)
    jobs = {j.video: j for j in res.jobs}
    assert sorted(jobs) == ["train-0000", "val-0000"]
    train = jobs["train-0000"]
    assert [Path(i).name for i in train.images] == ["1.jpg"] and [EXPRESSIONS[e] for e in train.expr] == ["Other"]
    assert train.va.tolist() == [[-0.5, 0.25]]
    assert {r: v["first"] for r, v in p.as_dict().items()} == {
        "bad annotation: No-Face (code 10): no face to learn from": str(root / "train_set/annotations/3_*.npy"),
        "annotation file missing (that image is not read)": str(root / "train_set/annotations/2_lnd.npy")}
    assert res.frames_without_label == 1 and jobs["val-0000"].expr.tolist() == [0]
    with pytest.raises(FileNotFoundError, match="not an AffectNet layout"):
        affectnet.read(tmp_path / "elsewhere", Problems())
    notes = root / "train_set" / "annotations"
    (notes / "1_exp.npy").write_bytes(b"")  # empty: np.load's EOFError
    np.save(notes / "3_val.npy", np.array(["2020-01-01"], dtype="datetime64[D]"))
    np.save(notes / "3_exp.npy", np.array("inf"))
    (notes / "2_lnd.npy").write_text("garbage, not an array")
    p = Problems()
    res = affectnet.read(root, p)
    assert [j.video for j in res.jobs] == ["val-0000"] and sum(p.counts.values()) == 3, p.as_dict()
    reasons = {r: v["first"] for r, v in p.as_dict().items()}
    assert reasons["bad annotation: 1_exp.npy: not a NumPy array file (empty)"].endswith("1_*.npy")
    assert "bad annotation: 2_lnd.npy: not a NumPy array file (damaged)" in reasons  # never "allow_pickle"
    assert any(r.startswith("bad annotation: 3_val.npy: holds") for r in reasons), reasons
    write(root / "Manually_Annotated_file_lists/training.csv", AFFECTNET_HEADER + "\n")
    with pytest.raises(DataError, match="holds both AffectNet layouts"):
        affectnet.read(root, Problems())


def test_affectnet_image_in_both_file_lists_is_validations_only(tmp_path):
    root = tmp_path / "affectnet"
    for name in ("689/a.jpg", "689/b.jpg"):
        jpg(root / "Manually_Annotated_Images" / name)
    lists = root / "Manually_Annotated_file_lists"
    write(lists / "training.csv", "\n".join([AFFECTNET_HEADER, affectnet_row("689/a.jpg", 1, 0, 0),
                                            affectnet_row("689/b.jpg", 2, 0, 0)]) + "\n")
    write(lists / "validation.csv", AFFECTNET_HEADER + "\n" + affectnet_row("689/a.jpg", 3, 0, 0) + "\n")
    p = Problems()
    jobs = {j.video: j for j in affectnet.read(root, p).jobs}
    assert [Path(i).name for i in jobs["train-689"].images] == ["b.jpg"]  # a is validation's only
    assert [Path(i).name for i in jobs["val-689"].images] == ["a.jpg"]
    assert jobs["val-689"].expr.tolist() == [EXPRESSIONS.index("Surprise")]  # validation's row: code 3
    assert p.as_dict() == {"bad row: an image listed in both splits (validation's row kept)": {
        "count": 1, "first": f"{lists / 'training.csv'}:2"}}


def test_affectnet_bad_header_counts_its_rows_and_a_missing_list_is_a_note(tmp_path):
    root = tmp_path / "affectnet"
    jpg(root / "Manually_Annotated_Images/689/a.jpg")
    lists = root / "Manually_Annotated_file_lists"
    write(lists / "training.csv", "\n".join([AFFECTNET_HEADER.replace("expression", "expr")]
                                           + [affectnet_row(f"689/{k}.jpg", 1, 0, 0) for k in "abc"]) + "\n")
    write(lists / "validation.csv", AFFECTNET_HEADER + "\n" + affectnet_row("689/a.jpg", 3, 0, 0) + "\n")
    p = Problems()
    res = affectnet.read(root, p)
    (reason, found), = p.as_dict().items()
    assert reason.startswith("bad header") and found == {"count": 3, "first": f"{lists / 'training.csv'}:1"}
    assert not res.notes
    write(lists / "training.csv", AFFECTNET_HEADER + "\n" + affectnet_row("689/a.jpg", 3, 0, 0) + "\n")
    (lists / "validation.csv").unlink()  # legal: a note, not an error
    res = affectnet.read(root, Problems())
    assert [j.video for j in res.jobs] == ["train-689"]
    assert res.notes == [f"{lists / 'validation.csv'}: missing: no val image from the file lists"]


def test_affectnet_npy_of_python_objects_is_named_as_such(tmp_path):
    np.save(tmp_path / "1_exp.npy", np.array({"expression": 1}), allow_pickle=True)
    with pytest.raises(ValueError, match=r"^1_exp.npy: holds Python objects \(a pickle\), not a numeric array: refused$"):
        affectnet.load_npy(tmp_path / "1_exp.npy")


# --- unlabelled ---------------------------------------------------------------------


def test_unlabelled_folder_and_video(tmp_path):
    for name in ("b.png", "a.jpg", "notes.txt"):
        if name.endswith("txt"):
            write(tmp_path / "imgs" / name, "x")
        else:
            jpg(tmp_path / "imgs" / name)
    jpg(tmp_path / "imgs" / "sub" / "c.tif")
    read = unlabelled.read(tmp_path / "imgs", Problems())
    job = read.jobs[0]
    assert [p.split("/")[-1] for p in job.images] == ["a.jpg", "b.png"] and job.frames.tolist() == [0, 1]
    assert read.notes == [f"{tmp_path / 'imgs'}: not read: 1 subfolder(s) (not searched: give them as inputs), e.g. "
                          "sub; 1 other file(s), e.g. notes.txt"]  # said, never skipped silently
    assert all(math.isnan(v) for v in job.va.ravel())
    path = tmp_path / "v.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for _ in range(7):
        w.write(np.zeros((48, 64, 3), np.uint8))
    w.release()
    job = unlabelled.read(path, Problems()).jobs[0]
    assert len(job) == 7 and job.video_path == str(path)
    with pytest.raises(FileNotFoundError):
        unlabelled.read(tmp_path / "nothing", Problems())


# --- the fast reading of clean files equals the line-by-line one --------------------------


def test_clean_affwild2_files_read_at_once_as_line_by_line(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    aus = rng.integers(0, 2, (300, 13)).astype(str)
    aus[::7] = "-1"
    aus[3, 2] = "-1"  # one -1 makes the whole row unknown
    expr = rng.integers(-1, 8, 300).astype(str)
    va = rng.uniform(-1, 1, (300, 2)).round(3).astype(str)
    va[::5] = "-5"
    files = {"AU": ("AU26,note," + AU2022[:-5] + ",AU9\n", [",".join([r[0], "7", *r[1:]]) for r in aus]),
             "EXPR": ("Surprise,Other,Neutral,Anger,Disgust,Fear,Happiness,Sadness\n", expr),
             "VA": ("arousal,valence\n", [",".join(r) for r in va])}
    for task, (header, rows) in files.items():
        path = tmp_path / f"{task}.txt"
        path.write_text(header + "\n".join(rows) + "\n")
        with monkeypatch.context() as m:
            clean = []
            m.setattr(affwild2, "read_clean", lambda *a, real=affwild2.read_clean, seen=clean: seen.append(real(*a)) or seen[0])
            fast = affwild2.parse_annotation(path, task, Problems(on_error="fail"))
        assert clean[0] is not None, task  # the file was read at once
        with monkeypatch.context() as m:
            m.setattr(affwild2, "read_clean", lambda *a: None)
            slow = affwild2.parse_annotation(path, task, Problems(on_error="fail"))
        assert fast[2] == slow[2]
        np.testing.assert_array_equal(fast[0], slow[0])
        np.testing.assert_array_equal(fast[1], slow[1])
        assert fast[1].dtype == slow[1].dtype and len(fast[0]) == 300


def test_a_clean_saffwild2_file_read_in_chunks_as_line_by_line(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    lines = ["image,valence,arousal,expression,aus"]
    for k in range(500):
        va = "-5,-5" if k % 4 == 0 else f"{rng.uniform(-1, 1):.3f},{rng.uniform(-1, 1):.3f}"
        aus = ",".join(rng.integers(-1, 2, 12).astype(str))
        lines.append(f"v{k % 7}/{k + 1:05d}.jpg,{va},{rng.integers(-1, 8)},{aus}")
    path = tmp_path / "training_set_annotations.txt"
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(saffwild2, "BLOCK", 4096)  # several blocks
    fast = saffwild2.read_clean(path)
    slow = saffwild2.read_lines(path, Problems(on_error="fail"))
    assert len(fast) == 500
    pd.testing.assert_frame_equal(fast, slow, check_dtype=False)
    for column in (*ABAW2022.aus, "expr"):
        assert fast[column].dtype == np.int8


@pytest.mark.parametrize("kind", ["affwild2", "saffwild2", "disfa", "expw", "afewva", "affectnet"])
def test_a_dataset_root_that_is_a_file_is_named_as_such(kind, tmp_path):
    from pipeline.extraction.extract import read_source
    from pipeline.extraction.params import ExtractParams

    (tmp_path / "synth.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=rf"synth.json: a file, not the folder of a {kind} dataset"):
        read_source(kind, tmp_path / "synth.json", Problems(), ExtractParams())


@pytest.mark.parametrize("header_end, row_end", [(",", ""), (",", ","), ("", ",")])
def test_affwild2_a_trailing_comma_names_no_column(tmp_path, header_end, row_end):
    path = tmp_path / "v.txt"
    names = ",".join(ABAW2020.aus)
    path.write_text(f"{names}{header_end}\n" + "".join(f"{','.join(str((i + j) % 2) for j in range(8))}{row_end}\n"
                                                      for i in range(3)))
    problems = Problems()
    frames, labels, aus = affwild2.parse_annotation(path, "AU", problems)
    assert problems.counts == {} and aus == ABAW2020.aus
    assert frames.tolist() == [0, 1, 2] and labels.tolist() == [[(i + j) % 2 for j in range(8)] for i in range(3)]
    path.write_text(f"{names},\n0,1,0,1,0,1,0\n")  # one value short is still a bad row, named
    frames, _, _ = affwild2.parse_annotation(path, "AU", problems)
    assert len(frames) == 0 and "expected 8 values" in str(problems.as_dict())
