"""Bad input to ``predict`` and ``export-abaw``, one class per test, through the real
command line: the user's files never replaced, a damaged model never believed, every output
complete or absent. Each case checks the exit status, the one-line message naming the file,
that no input or user file changed, and that nothing half-written is left."""
import hashlib
import os
import resource
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from skimage import data as skimage_data

from stages.cli import main

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from test_predict import bundle as make_bundle

    return make_bundle.__wrapped__(tmp_path_factory)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """20 frames of a face (a photograph) drifting right."""
    face = cv2.resize(skimage_data.astronaut()[:260, 120:380], (150, 150), interpolation=cv2.INTER_AREA)
    path = tmp_path_factory.mktemp("clip") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 360))
    for t in range(20):
        frame = np.full((360, 640, 3), 70, np.uint8)
        frame[100:250, 150 + 3 * t:300 + 3 * t] = face[:, :, ::-1]
        writer.write(frame)
    writer.release()
    return path


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def failed_naming(result, *names) -> str:
    assert result.exit_code != 0, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.output
    for name in names:
        assert str(name) in errors[0], (name, errors[0])
    return errors[0]


def tree(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def no_leftovers(folder: Path) -> None:
    assert not [p for p in folder.rglob(".*") if ".tmp" in p.name], list(folder.rglob(".*"))


# --- the user's files are never replaced ------------------------------------------------------


def test_predict_into_the_input_folder_leaves_the_users_picture_alone(bundle, clip, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "clip.avi").write_bytes(clip.read_bytes())
    cv2.imwrite(str(folder / "clip.png"), np.zeros((8, 8, 3), np.uint8))  # the user's own picture
    before = tree(folder)
    failed_naming(run("predict", folder, "--model", bundle, "--out", folder, "--quiet"), folder / "clip.png",
                  "was not written by an earlier `mtaffect predict`")
    assert tree(folder) == before
    # elsewhere: a hand-edited table of an earlier run is the user's now
    out = tmp_path / "out"
    assert run("predict", clip, "--model", bundle, "--out", out, "--quiet").exit_code == 0
    assert run("predict", clip, "--model", bundle, "--out", out, "--quiet").exit_code == 0  # ours: replaced
    (out / "clip.csv").write_text((out / "clip.csv").read_text() + "my notes\n")
    kept = tree(out)
    failed_naming(run("predict", clip, "--model", bundle, "--out", out, "--quiet"), out / "clip.csv")
    assert tree(out) == kept
    no_leftovers(tmp_path)


def test_predict_into_its_own_input_folder_does_not_read_its_outputs_back(bundle, clip, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "clip.avi").write_bytes(clip.read_bytes())
    for _ in range(2):
        result = run("predict", folder, "--model", bundle, "--out", folder, "--quiet")
        assert result.exit_code == 0, result.output
    assert f"{folder}: 2 file(s) written by an earlier mtaffect predict left out (.mtaffect-outputs.json)" \
        in result.output  # its timeline, not a picture to predict on
    assert sorted(p.name for p in folder.iterdir()) == [".mtaffect-outputs.json", "clip.avi", "clip.csv", "clip.png"]


def test_an_earlier_predicts_outputs_in_an_input_folder_are_never_read_back_elsewhere(bundle, clip, tmp_path):
    """Outputs written into the input folder (allowed), then a run into another folder: the
    earlier timeline is no photo to predict on; a file the user changed since is theirs."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "clip.avi").write_bytes(clip.read_bytes())
    cv2.imwrite(str(folder / "photo.png"), skimage_data.astronaut()[:, :, ::-1])
    assert run("predict", folder, "--model", bundle, "--out", folder, "--quiet").exit_code == 0
    before = tree(folder)
    result = run("predict", folder, "--model", bundle, "--out", tmp_path / "elsewhere", "--quiet")
    assert result.exit_code == 0, result.output
    assert (f"{folder}: 3 file(s) written by an earlier mtaffect predict left out (.mtaffect-outputs.json)"
            in result.output), result.output  # clip.csv, clip.png and mixed.csv
    assert "warning" not in result.output and "not read" not in result.output, result.output
    assert pd.read_csv(tmp_path / "elsewhere" / "mixed.csv")["file"].tolist() == ["photo.png"]
    assert tree(folder) == before
    cv2.imwrite(str(folder / "clip.png"), skimage_data.astronaut()[:, :, ::-1])  # the user's picture now
    result = run("predict", folder, "--model", bundle, "--out", tmp_path / "third", "--quiet")
    assert result.exit_code == 0, result.output
    assert f"{folder}: 2 file(s) written by an earlier mtaffect predict left out" in result.output, result.output
    assert pd.read_csv(tmp_path / "third" / "mixed.csv")["file"].drop_duplicates().tolist() == ["clip.png", "photo.png"]


def test_two_tables_of_one_video_name_are_refused_before_anything_is_written(bundle, clip, tmp_path):
    out = tmp_path / "p"
    assert run("predict", clip, "--model", bundle, "--out", out, "--quiet", "--no-timeline").exit_code == 0
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "clip.csv").write_bytes((out / "clip.csv").read_bytes())
    failed_naming(run("export-abaw", tmp_path / "a" / "clip.csv", tmp_path / "b" / "clip.csv", "--out",
                      tmp_path / "sub"), "two inputs would write this same file")
    assert not (tmp_path / "sub").exists()
    (tmp_path / "sub" / "AU_Set").mkdir(parents=True)
    (tmp_path / "sub" / "AU_Set" / "clip.txt").write_text("my own submission\n")
    failed_naming(run("export-abaw", tmp_path / "a" / "clip.csv", "--out", tmp_path / "sub"),
                  tmp_path / "sub" / "AU_Set" / "clip.txt")
    assert (tmp_path / "sub" / "AU_Set" / "clip.txt").read_text() == "my own submission\n"


# --- a damaged model is never believed -----------------------------------------------------------


def damaged(bundle: Path, tmp_path: Path, how: str) -> Path:
    path = tmp_path / f"{how}.pt"
    if how == "flipped-bit":  # one bit of one weight, as a disk or a copy flips it
        raw = bytearray(bundle.read_bytes())
        with zipfile.ZipFile(bundle) as archive:
            record = max(archive.infolist(), key=lambda r: r.file_size)
        start = record.header_offset + 30 + len(record.filename.encode()) + len(record.extra) + 1000
        raw[start + 3] ^= 0x40
        path.write_bytes(bytes(raw))
        return path
    if how == "cut-short":  # a copy or a download that stopped
        path.write_bytes(bundle.read_bytes()[:-100])
        return path
    b = torch.load(bundle, weights_only=True)
    if how == "nan-weight":
        b["members"][0]["state_dict"]["heads.EXPR.4.weight"][0, 0] = float("nan")
    elif how == "nan-threshold":
        b["au_thresholds"][3] = float("nan")
    elif how == "no-alignment":
        del b["alignment"]
    elif how == "edited-weight":  # finite, in a well-formed file: only the recorded digest tells
        b["members"][0]["state_dict"]["heads.EXPR.4.weight"][0, 0] += 0.5
    elif how == "overflowing":  # finite weights, outputs that are not numbers
        from pipeline.training.models import weights_sha256

        for m in b["members"]:  # as a bundle written with such weights records them
            m["state_dict"]["heads.EXPR.4.weight"].fill_(3e38)
            m["weights_sha256"] = weights_sha256(m["state_dict"])
    torch.save(b, path)
    return path


@pytest.mark.parametrize("how, message", [
    ("flipped-bit", "model bundle damaged: its record"), ("cut-short", "model bundle damaged: truncated (its end is missing)"),
    ("nan-weight", "holds values that are not finite"),
    ("nan-threshold", "AU thresholds"), ("no-alignment", "lacks its 'alignment' entry"),
    ("edited-weight", "member s1's weights do not match the digest the bundle recorded"),
    ("overflowing", "the model's outputs are not finite numbers"),
])
def test_a_damaged_bundle_is_refused_never_reported_as_neutral(bundle, clip, tmp_path, how, message):
    model = damaged(bundle, tmp_path, how)
    name = clip if how == "overflowing" else model  # the one whose outputs fail names the input
    failed_naming(run("predict", clip, "--model", model, "--out", tmp_path / "out", "--quiet"), name, message)
    assert not list((tmp_path / "out").glob("clip.*")) if (tmp_path / "out").exists() else True
    no_leftovers(tmp_path)


# --- outputs complete or absent -------------------------------------------------------------------


def test_a_full_disk_during_the_overlay_leaves_no_unplayable_video(bundle, clip, tmp_path):
    def full_disk_at_40_kb():  # writes beyond 40 kB fail (EFBIG), as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))

    out = tmp_path / "out"
    proc = subprocess.run([str(BIN / "mtaffect"), "predict", str(clip), "--model", str(bundle), "--out", str(out),
                           "--overlay", "--no-timeline", "--quiet"], preexec_fn=full_disk_at_40_kb,
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and str(out / "clip_overlay.mp4") in errors[0] and "disk" in errors[0], proc.stderr
    assert not (out / "clip_overlay.mp4").exists()  # absent, not a 12 kB stub under its final name
    no_leftovers(tmp_path)


def test_a_killed_runs_temporary_table_is_cleared_by_the_next_run(bundle, clip, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".clip.csv.tmp").write_text("frame,timestamp\n0,")  # what a kill -9 leaves
    assert run("predict", clip, "--model", bundle, "--out", out, "--quiet", "--no-timeline").exit_code == 0
    assert pd.read_csv(out / "clip.csv")["frame"].tolist() == list(range(20))
    no_leftovers(tmp_path)


# --- tracebacks that became one line ----------------------------------------------------------------


def test_pipes_empty_out_and_missing_devices_are_one_line(bundle, clip, tmp_path):
    import os

    os.mkfifo(tmp_path / "pipe.mp4")
    failed_naming(run("predict", tmp_path / "pipe.mp4", "--model", bundle, "--out", tmp_path / "o", "--quiet"),
                  "pipe.mp4", "not a regular file")
    failed_naming(run("predict", clip, "--model", bundle, "--out", "", "--quiet"), "--out: empty path")
    if not torch.cuda.is_available():
        failed_naming(run("predict", clip, "--model", bundle, "--out", tmp_path / "o", "--device", "cuda", "--quiet"),
                      "'cuda' asked for, but CUDA is not available")
    assert not (tmp_path / "o").exists() and not list(Path.cwd().glob("clip.csv"))


def test_a_small_face_in_a_large_photograph_is_a_warning_with_the_fix(bundle, tmp_path):
    face = cv2.resize(skimage_data.astronaut()[:260, 120:380], (130, 130), interpolation=cv2.INTER_AREA)
    photo = np.full((3000, 4000, 3), 90, np.uint8)
    photo[1000:1130, 2000:2130] = face
    cv2.imwrite(str(tmp_path / "big.jpg"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    result = run("predict", tmp_path / "big.jpg", "--model", bundle, "--out", tmp_path / "a", "--quiet")
    assert result.exit_code == 0 and "searched at 320 pixels, where faces under 150 pixels cannot be found" \
        in result.output and "--detect-size 1280" in result.output
    result = run("predict", tmp_path / "big.jpg", "--model", bundle, "--out", tmp_path / "b", "--quiet",
                 "--detect-size", "1280")
    assert result.exit_code == 0 and pd.read_csv(tmp_path / "b" / "big.csv")["face"].all()


def test_every_face_mode_finds_at_least_the_faces_the_main_face_mode_finds(bundle, tmp_path):
    # a face that shrinks below what the full-frame detection sees: the main-face tracker
    # follows it in its crops, and --all-faces must not say "no face" where it did
    face = cv2.resize(skimage_data.astronaut()[:260, 120:380], (150, 150), interpolation=cv2.INTER_AREA)
    path = tmp_path / "shrinking.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 360))
    for t in range(64):
        side = int(150 * 0.88 ** (t // 8))
        frame = np.full((360, 640, 3), 70, np.uint8)
        frame[100:100 + side, 200:200 + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)[:, :, ::-1]
        writer.write(frame)
    writer.release()
    tables = {}
    for mode in ([], ["--all-faces"]):
        out = tmp_path / (mode[0][2:] if mode else "main")
        assert run("predict", path, "--model", bundle, "--out", out, "--quiet", "--no-timeline", *mode).exit_code == 0
        tables[out.name] = pd.read_csv(out / "shrinking.csv")
    main, every = (set(t.loc[t["face"], "frame"]) for t in tables.values())
    assert max(main) >= 56, sorted(main)  # the smallest face is followed (else this shows nothing)
    assert main <= every, sorted(main - every)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.assign(expression=t["expression"].where(t.index != 3, "Happy")), "row 5: expression 'Happy'"),
    (lambda t: t.assign(frame=t["frame"].where(t.index != 4, 1e9)), "row 6: frame"),
    (lambda t: t.assign(AU4=np.nan), "column AU4 is empty in every row with a face"),
    (lambda t: t.assign(valence=t["valence"].where(t.index != 2, np.nan)), "row 4: valence is missing"),
    (lambda t: t.assign(valence=t["valence"].where(t.index != 2, 7.5)), "row 4: valence 7.5 is not a number in"),
    (lambda t: t.assign(AU12=t["AU12"].where(t.index != 1, 2)), "row 3: AU12 = 2"),
])
def test_a_hand_edited_table_is_refused_naming_the_row_never_written_as_given(bundle, clip, tmp_path, edit, message):
    assert run("predict", clip, "--model", bundle, "--out", tmp_path / "p", "--quiet", "--no-timeline").exit_code == 0
    table = edit(pd.read_csv(tmp_path / "p" / "clip.csv"))
    table.to_csv(tmp_path / "clip.csv", index=False)
    failed_naming(run("export-abaw", tmp_path / "clip.csv", "--out", tmp_path / "sub"), tmp_path / "clip.csv", message)
    assert not (tmp_path / "sub").exists()


def test_a_kill_leaves_no_temporary_file(bundle, tmp_path):
    """`kill` (SIGTERM) stops predict as Ctrl-C does: its half-written table and overlay go."""
    import time

    face = cv2.resize(skimage_data.astronaut()[:260, 120:380], (150, 150), interpolation=cv2.INTER_AREA)
    long = tmp_path / "long.avi"
    writer = cv2.VideoWriter(str(long), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 360))
    for t in range(600):
        frame = np.full((360, 640, 3), 70, np.uint8)
        frame[100:250, 150 + t % 200:300 + t % 200] = face[:, :, ::-1]
        writer.write(frame)
    writer.release()
    out = tmp_path / "out"
    proc = subprocess.Popen([str(BIN / "mtaffect"), "predict", str(long), "--model", str(bundle), "--out", str(out),
                             "--overlay", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not list(out.glob(".long*")) and proc.poll() is None:  # until it writes
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "Traceback" not in err, err
    assert not list(out.glob(".*tmp*")) and not (out / "long.csv").exists()


# --- inputs OpenCV refuses or complains about --------------------------------------------------


def test_an_image_over_opencvs_pixel_limit_is_a_skip_naming_its_size(bundle, huge_png, tmp_path):
    import shutil

    result = run("predict", huge_png, "--model", bundle, "--out", tmp_path / "one", "--quiet")
    failed_naming(result, huge_png, "image too large (40000 x 27000 pixels")
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(huge_png, folder / "a_huge.png")
    cv2.imwrite(str(folder / "b_face.jpg"), skimage_data.astronaut()[:, :, ::-1])
    result = run("predict", folder, "--model", bundle, "--out", tmp_path / "two", "--quiet")
    assert result.exit_code == 0 and "a_huge.png: image too large (40000 x 27000 pixels" in result.output
    assert "1 unreadable image(s) skipped" in result.output
    assert not (tmp_path / "one").exists() or not list((tmp_path / "one").iterdir())


def test_a_video_behind_an_image_name_says_so_alone_and_in_a_folder(bundle, clip, tmp_path):
    """An AVI renamed .jpg is no "truncated image"; a JPEG cut short still is one (FFmpeg
    would open it as a one-frame video)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "vid_as.jpg").write_bytes(clip.read_bytes())
    ok, jpeg = cv2.imencode(".jpg", skimage_data.astronaut()[:, :, ::-1])
    (folder / "cut.jpg").write_bytes(jpeg.tobytes()[:3000])
    cv2.imwrite(str(folder / "whole.png"), skimage_data.astronaut()[:, :, ::-1])
    message = "a video behind an image name (.jpg): rename it to its video extension"
    error = failed_naming(run("predict", folder / "vid_as.jpg", "--model", bundle, "--out", tmp_path / "o", "--quiet"),
                          folder / "vid_as.jpg", message)
    assert "truncated" not in error and not (tmp_path / "o").exists()
    result = run("predict", folder, "--model", bundle, "--out", tmp_path / "o", "--quiet")
    assert result.exit_code == 0, result.output
    assert f"{folder / 'vid_as.jpg'}: {message}; skipped" in result.output, result.output
    assert f"{folder / 'cut.jpg'}: unreadable or truncated image; skipped" in result.output, result.output
    assert pd.read_csv(tmp_path / "o" / "photos.csv")["file"].tolist() == ["whole.png"]


def test_a_refused_input_leaves_no_output_folder_it_made_and_never_removes_the_users(bundle, clip, tmp_path):
    (tmp_path / "zero.jpg").write_bytes(b"")
    for out in (tmp_path / "o_zero.jpg", tmp_path / "a" / "b" / "c"):
        failed_naming(run("predict", tmp_path / "zero.jpg", "--model", bundle, "--out", out, "--quiet"),
                      tmp_path / "zero.jpg", "empty image file (0 bytes)")
        assert not out.exists()
    assert not (tmp_path / "a").exists()
    (tmp_path / "mine").mkdir()  # the user's own folder, empty: it stays
    failed_naming(run("predict", tmp_path / "zero.jpg", "--model", bundle, "--out", tmp_path / "mine", "--quiet"),
                  tmp_path / "zero.jpg")
    assert (tmp_path / "mine").is_dir() and not list((tmp_path / "mine").iterdir())
    # a run that wrote an earlier input's table before failing keeps it, and its folder
    result = run("predict", clip, tmp_path / "zero.jpg", "--model", bundle, "--out", tmp_path / "p", "--quiet")
    failed_naming(result, tmp_path / "zero.jpg")
    assert (tmp_path / "p" / "clip.csv").is_file()
    no_leftovers(tmp_path)


def test_a_video_without_any_frame_says_so(bundle, tmp_path):
    empty = tmp_path / "empty.avi"
    cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 64)).release()
    assert empty.stat().st_size > 0  # a valid container, with no frame in it
    failed_naming(run("predict", empty, "--model", bundle, "--out", tmp_path / "o", "--quiet"), empty,
                  "holds no frame")
    assert not (tmp_path / "o").exists()


def test_unreadable_and_truncated_videos_are_one_line_without_opencvs_own(bundle, clip, tmp_path, capfd, monkeypatch):
    import builtins

    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "locked.avi").write_bytes(clip.read_bytes())
    opener = builtins.open  # as root chmod 000 reads anyway: the read itself is refused here

    def refusing(file, *args, **kwargs):
        if str(file).endswith("locked.avi"):
            raise PermissionError(13, "Permission denied", str(file))
        return opener(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing)
    if os.geteuid() != 0:
        (folder / "locked.avi").chmod(0)
    capfd.readouterr()
    failed_naming(run("predict", folder, "--model", bundle, "--out", tmp_path / "o", "--quiet"),
                  folder / "locked.avi", "Permission denied")
    monkeypatch.undo()
    (folder / "locked.avi").chmod(0o644)
    (folder / "locked.avi").write_bytes(clip.read_bytes()[:1000])  # an interrupted copy
    failed_naming(run("predict", folder / "locked.avi", "--model", bundle, "--out", tmp_path / "o", "--quiet"),
                  folder / "locked.avi")
    err = capfd.readouterr().err
    assert "WARN" not in err and "Unexpected element" not in err and "can't open" not in err, err


# --- the multi-task file: names it cannot write, tables of folders, read-only outputs -------------


@pytest.fixture(scope="module")
def aligned(tmp_path_factory) -> Path:
    """predict --aligned (an abaw2022 model) into p/: the folders v1 (two crops) and 00001 (one
    crop, named as the folder), and the image 00007.jpg given alone."""
    from test_predict import bundle_2022

    root = tmp_path_factory.mktemp("aligned")
    model, rng = bundle_2022(root), np.random.default_rng(0)
    for image in ("v1/00001.jpg", "v1/00002.jpg", "00001/00001.jpg", "single/00007.jpg"):
        (root / image).parent.mkdir(exist_ok=True)
        cv2.imwrite(str(root / image), rng.integers(0, 255, (112, 112, 3), np.uint8))
    for given in ([root / "v1", root / "00001"], [root / "single" / "00007.jpg"]):
        result = run("predict", *given, "--aligned", "--model", model, "--out", root / "p", "--quiet")
        assert result.exit_code == 0, result.output
    return root


@pytest.mark.parametrize("name, message", [
    ("a,b.csv", "the table's name 'a,b' holds a comma (',')"),
    ('a"b.csv', "the table's name 'a\"b' holds a quote ('\"')"),
    (".csv", "the table's name '.csv' is empty or starts with a dot"),
    (".v1.csv", "the table's name '.v1' is empty or starts with a dot"),
])
def test_a_table_name_that_cannot_name_the_video_is_refused_before_anything_is_written(aligned, tmp_path, name,
                                                                                        message):
    out = tmp_path / "sub"
    assert run("export-abaw", aligned / "p" / "v1.csv", "--mtl", "--out", out).exit_code == 0
    before = tree(out)
    (tmp_path / name).write_bytes((aligned / "p" / "v1.csv").read_bytes())
    failed_naming(run("export-abaw", aligned / "p" / "v1.csv", tmp_path / name, "--mtl", "--out", out),
                  tmp_path / name, message)
    assert tree(out) == before  # the earlier file, unchanged
    no_leftovers(tmp_path)


def test_the_table_of_a_folder_named_as_its_only_image_is_exported_and_an_images_table_refused(aligned, tmp_path):
    result = run("export-abaw", aligned / "p" / "00001.csv", "--mtl", "--out", tmp_path / "sub")
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "sub" / "MTL_predictions.txt").read_text().splitlines()
    assert len(lines) == 2 and lines[1].startswith("00001/00001.jpg,") and len(lines[1].split(",")) == 16
    # the table of an image given alone (predict recorded it so), and a copy predict has no record of
    (tmp_path / "00007.csv").write_bytes((aligned / "p" / "00007.csv").read_bytes())
    for table in (aligned / "p" / "00007.csv", tmp_path / "00007.csv"):
        failed_naming(run("export-abaw", table, "--mtl", "--out", tmp_path / "sub2"), table,
                      "the table of one image, named after it")
    assert not (tmp_path / "sub2").exists()


def test_an_export_the_user_made_read_only_is_never_replaced(aligned, tmp_path):
    out = tmp_path / "sub"
    assert run("export-abaw", aligned / "p" / "v1.csv", "--mtl", "--out", out).exit_code == 0
    (out / "MTL_predictions.txt").chmod(0o444)
    before = tree(out)
    failed_naming(run("export-abaw", aligned / "p" / "v1.csv", "--mtl", "--out", out), out / "MTL_predictions.txt",
                  "the file is read-only: refusing to replace it (make it writable first")
    assert tree(out) == before and (out / "MTL_predictions.txt").stat().st_mode & 0o777 == 0o444


def test_a_prediction_the_user_made_read_only_is_never_replaced(bundle, clip, tmp_path):
    predicted = tmp_path / "p"
    assert run("predict", clip, "--model", bundle, "--out", predicted, "--quiet").exit_code == 0
    for name in ("clip.csv", "clip.png"):  # predict's table and timeline alike
        (predicted / name).chmod(0o444)
        before = tree(predicted)
        failed_naming(run("predict", clip, "--model", bundle, "--out", predicted, "--quiet"), predicted / name,
                      "the file is read-only")
        assert tree(predicted) == before and (predicted / name).stat().st_mode & 0o777 == 0o444
        (predicted / name).chmod(0o644)
    assert run("predict", clip, "--model", bundle, "--out", predicted, "--quiet").exit_code == 0  # writable: ours


def test_links_to_nothing_in_an_input_folder_are_counted_in_the_not_read_notice(bundle, tmp_path):
    folder = tmp_path / "crops"
    folder.mkdir()
    cv2.imwrite(str(folder / "00001.jpg"), np.random.default_rng(0).integers(0, 255, (112, 112, 3), np.uint8))
    (folder / "lb.jpg").symlink_to("lb.jpg")  # a loop
    (folder / "missing.jpg").symlink_to(tmp_path / "gone.jpg")  # dangling
    result = run("predict", folder, "--aligned", "--model", bundle, "--out", tmp_path / "p", "--quiet")
    assert result.exit_code == 0, result.output
    assert (f"{folder}: not read: 2 neither a file nor a folder (a symbolic link to nothing or a loop of links, "
            "a pipe), e.g. lb.jpg") in result.output, result.output
    assert pd.read_csv(tmp_path / "p" / "crops.csv")["file"].tolist() == ["00001.jpg"]


# --- damaged videos and empty names -----------------------------------------------------------


def damaged_in_the_middle(clip: Path, path: Path) -> Path:
    """``clip`` with its 10th and 11th frames' chunks overwritten by 0xff: FFmpeg skips them
    without an error and counts the frames after them on."""
    raw = bytearray(clip.read_bytes())
    movi = raw.index(b"movi")
    chunks = [i for i in range(movi, len(raw) - 4) if raw[i:i + 4] == b"00dc"]
    raw[chunks[9]:chunks[11]] = b"\xff" * (chunks[11] - chunks[9])
    path.write_bytes(bytes(raw))
    return path


def test_a_video_damaged_in_the_middle_is_a_warning_naming_the_lost_frames_and_is_never_exported(bundle, clip,
                                                                                                  tmp_path):
    mid = damaged_in_the_middle(clip, tmp_path / "mid.avi")
    result = run("predict", mid, "--model", bundle, "--out", tmp_path / "p", "--quiet", "--no-timeline")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning: ")]
    assert warnings == [f"warning: {mid}: 2 of the 20 frames the file lists were not decoded (truncated or damaged): "
                        "rows of the 18 decoded, whose frame numbers and times run early after a damaged stretch; "
                        "export-abaw refuses this table"], result.output
    assert len(pd.read_csv(tmp_path / "p" / "mid.csv")) == 18
    no_leftovers(tmp_path)
    table = tmp_path / "p" / "mid.csv"
    failed_naming(run("export-abaw", table, "--out", tmp_path / "e"), table,
                  "predict could not decode 2 frame(s) of its video (truncated or damaged)")
    assert not [p for p in (tmp_path / "e").rglob("*") if p.is_file() and p.name != ".mtaffect-outputs.json"]
    no_leftovers(tmp_path)
    # the table says so itself, wherever it is copied (its outputs list stays behind), in either format
    assert (pd.read_csv(table)["frames_not_decoded"] == 2).all()
    assert run("predict", mid, "--model", bundle, "--out", tmp_path / "q", "--quiet", "--no-timeline", "--format",
               "parquet").exit_code == 0
    for original in (table, tmp_path / "q" / "mid.parquet"):
        away = tmp_path / "away" / original.name
        away.parent.mkdir(exist_ok=True)
        away.write_bytes(original.read_bytes())
        failed_naming(run("export-abaw", away, "--out", tmp_path / f"e-{original.suffix[1:]}"), away,
                      "predict could not decode 2 frame(s) of its video")
    assert (pd.read_parquet(tmp_path / "q" / "mid.parquet")["frames_not_decoded"] == 2).all()


def test_an_empty_input_name_is_refused_never_taken_for_the_current_folder(bundle, clip, tmp_path, monkeypatch):
    folder = tmp_path / "here"
    folder.mkdir()
    (folder / "clip.avi").write_bytes(clip.read_bytes())  # what '' would otherwise predict on
    monkeypatch.chdir(folder)
    before = tree(tmp_path)
    failed_naming(run("predict", "", "--model", bundle, "--out", tmp_path / "p", "--quiet"),
                  "an empty input name was given (an unset shell variable?)")
    assert tree(tmp_path) == before and not (tmp_path / "p").exists()


# --- pipes and devices given where a file is read whole ----------------------------------------


@pytest.fixture
def within_a_minute():
    """A read that would wait forever on a pipe fails the test instead of hanging it."""
    def stop(*_):
        raise TimeoutError("hung on a pipe or device")
    before = signal.signal(signal.SIGALRM, stop)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, before)


def test_pipes_and_devices_given_as_files_are_refused_never_read(clip, tmp_path, within_a_minute):
    pipe = tmp_path / "t.csv"
    os.mkfifo(pipe)
    model = tmp_path / "model.pt"
    os.mkfifo(model)
    for command, named in ((["export-abaw", pipe, "--out", tmp_path / "sub"], f"{pipe}: a named pipe, not a file"),
                           (["export-abaw", "/dev/zero", "--out", tmp_path / "sub"], "/dev/zero: a device, not a file"),
                           (["predict", clip, "--model", model, "--out", tmp_path / "o", "--quiet"],
                            f"{model}: a named pipe, not a file: cannot be read as a model bundle"),
                           (["study", "report", "--ground-truth", pipe], f"{pipe}: a named pipe, not a file")):
        failed_naming(run(*command), named)
    assert not (tmp_path / "sub").exists() and not (tmp_path / "o").exists()
    from pipeline.extraction.sources import expw
    from pipeline.extraction.sources.base import Problems

    root = tmp_path / "expw"
    (root / "image/origin").mkdir(parents=True)
    (root / "label").mkdir()
    os.mkfifo(root / "label/label.lst")
    problems = Problems()
    with pytest.raises(FileNotFoundError, match="no usable face"):
        expw.read(root, problems)
    assert problems.as_dict() == {"a named pipe, not a file: not read": {"count": 1,
                                                                         "first": str(root / "label/label.lst")}}
    from pipeline.extraction.dataset_version import unfollowed_links

    assert unfollowed_links(tmp_path) == sorted([pipe, model, root / "label/label.lst"])
    from pipeline.extraction.sources import unlabelled

    with pytest.raises(FileNotFoundError, match=f"{pipe}: a named pipe, neither a video nor a folder"):
        unlabelled.read(pipe, Problems())  # extract --source input --root <pipe>
    import yaml

    from pipeline.core.catalogue import check_all
    from pipeline.core.errors import ParamsError
    from tests.conftest import ROOT

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["teacher"]["pretrained"] = str(model)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError, match=f"teacher.pretrained: {model}: a named pipe, not a file"):
        check_all(tmp_path / "params.yaml")


def test_an_outputs_list_with_an_entry_that_is_no_record_is_named_and_the_users_file_kept(bundle, clip, tmp_path):
    from pipeline.core.fileio import OUTPUTS_LIST

    out = tmp_path / "out"
    out.mkdir()
    (out / "clip.csv").write_text("mine")
    (out / OUTPUTS_LIST).write_text('{"files": {"clip.csv": 5}}')
    failed_naming(run("predict", clip, "--model", bundle, "--out", out, "--quiet"),
                  f"{out / OUTPUTS_LIST}: unreadable record of mtaffect's earlier outputs")
    assert (out / "clip.csv").read_text() == "mine"


def test_every_on_images_only_is_refused_as_smooth_is(bundle, tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), skimage_data.astronaut()[:, :, ::-1])
    failed_naming(run("predict", tmp_path / "a.png", "--model", bundle, "--out", tmp_path / "o", "--every", "2"),
                  "--every 2: it is about a video's frames, and no input is a video")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("option", ["--model", "--temporal"])
def test_an_empty_model_name_is_refused_as_such(clip, tmp_path, option):
    result = run("predict", clip, option, "", "--out", tmp_path / "o")
    assert result.exit_code == 2 and f"Invalid value for '{option}': an empty name" in result.output
    assert not (tmp_path / "o").exists()


def test_an_out_folder_a_dvc_stage_writes_is_refused_before_any_work(clip, tmp_path, monkeypatch):
    project = tmp_path / "p"
    (project / ".dvc").mkdir(parents=True)
    (project / "data/faces/expw").mkdir(parents=True)
    (project / "dvc.lock").write_text("schema: '2.0'\nstages:\n  extract@expw:\n    cmd: x\n    outs:\n"
                                      "    - path: data/faces/expw\n      md5: 0123.dir\n")
    monkeypatch.chdir(project)
    for out in ("data/faces/expw", "data/faces/expw/mine"):
        failed_naming(run("predict", clip, "--out", out), f"--out {out}: inside data/faces/expw, an output of the "
                      "pipeline's stage extract@expw")
        failed_naming(run("export-abaw", clip, "--out", out), f"--out {out}: inside data/faces/expw")
    assert sorted(p.name for p in (project / "data/faces/expw").iterdir()) == []
    from pipeline.predict.outputs import pipeline_output

    assert pipeline_output(Path("predictions")) is None and pipeline_output(Path("data/faces")) is None


def test_a_strip_one_pixel_wide_gets_no_advice_to_search_for_smaller_faces(bundle, tmp_path):
    cv2.imwrite(str(tmp_path / "strip.png"), np.full((5400, 1, 3), 128, np.uint8))
    result = run("predict", tmp_path / "strip.png", "--model", bundle, "--out", tmp_path / "o", "--quiet")
    assert result.exit_code == 0 and "--detect-size" not in result.output, result.output
    assert not pd.read_csv(tmp_path / "o" / "strip.csv")["face"].any()
