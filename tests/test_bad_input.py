"""Bad input, one class of it per test, through the real command line on the tiny
synthetic data set and hand-made files. Every case checks the exit status, that the
message names the file or key in one line (no traceback), that no input file changed, that
nothing half-written is left, and, where rows survive, that each label sits on its own
frame (the synthetic ground truth knows every one)."""
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from reference import au_column
from click.testing import CliRunner

from pipeline.extraction.sources.base import reason_kind
from synthetic.params import SynthParams
from synthetic.generate import generate
from stages.cli import main
from conftest import set_preset

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("affwild2", "disfa", "expw", "afewva")


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate(root, SynthParams(dataset_size="tiny", seed=0, workers=1), progress=False)
    return root


@pytest.fixture
def data(synth, tmp_path) -> Path:
    """A private copy of the tiny data set (cases damage it) and a params file using it."""
    root = tmp_path / "synth"
    shutil.copytree(synth, root)
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    set_preset(tmp_path / "params.yaml", "tiny")
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    # version = root: the cases edit the files, which a version file would refuse
    params["sources"] = {s: {"root": str(root / s), "version": str(root / s)} for s in SOURCES}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def tree_hash(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run(tmp_path: Path, *args: str):
    result = CliRunner().invoke(main, [args[0], "--params", str(tmp_path / "params.yaml"), *args[1:]])
    assert "Traceback" not in result.output, result.output
    return result


def failed_naming(result, *names: str) -> str:
    """The one-line error of a failed command, naming each of ``names``."""
    assert result.exit_code != 0, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, (result.output, result.exception)
    for name in names:
        assert name in errors[0], (name, errors[0])
    return errors[0]


def labels_on_their_frames(out: Path, synth_root: Path) -> int:
    """Every stored face's labels are those of its own frame in the files (ground truth)."""
    frames = pd.read_parquet(out / "frames.parquet")
    truth = pd.read_parquet(synth_root / "ground_truth.parquet").set_index("uid").loc[frames["uid"]]
    for au in ("AU1", "AU12", "AU25"):
        np.testing.assert_array_equal(au_column(frames, au), truth[f"lab_{au}"].to_numpy())
    np.testing.assert_array_equal(frames["expr"].to_numpy(), truth["lab_expr"].to_numpy())
    np.testing.assert_allclose(frames["valence"].to_numpy(), truth["lab_valence"].to_numpy(), atol=1e-6,
                               equal_nan=True)
    return len(frames)


def no_leftovers(folder: Path) -> None:
    assert not [p for p in folder.rglob(".*") if p.name.endswith((".tmp", ".old")) or ".part" in p.name], \
        list(folder.rglob(".*"))


# --- outputs never overwrite what they did not create -----------------------------------------


def test_output_folders_are_never_inputs_or_foreign_folders(data, tmp_path):
    before = tree_hash(data)
    # the dataset itself, or a folder around it
    failed_naming(run(tmp_path, "extract", "--source", "disfa", "--root", str(data / "disfa"), "--out",
                      str(data / "disfa"), "--quiet"), f"--out {data / 'disfa'}: is --root")
    failed_naming(run(tmp_path, "extract", "--source", "disfa", "--root", str(data / "disfa"), "--out",
                      str(data), "--quiet"), f"--out {data}: holds --root {data / 'disfa'}")
    # a folder holding something else
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "chapter1.tex").write_text("years of work")
    failed_naming(run(tmp_path, "extract", "--source", "afewva", "--root", str(data / "afewva"), "--out",
                      str(foreign), "--quiet"), str(foreign), "no extract.json")
    assert (foreign / "chapter1.tex").read_text() == "years of work"
    assert tree_hash(data) == before
    # an earlier extraction is replaced; a bad value stops the run before it is touched
    out = tmp_path / "faces"
    assert run(tmp_path, "extract", "--source", "afewva", "--out", str(out), "--quiet").exit_code == 0
    good = tree_hash(out)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["extract"]["face_size"] = 0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    failed_naming(run(tmp_path, "extract", "--source", "afewva", "--out", str(out), "--quiet"), "extract.face_size",
                  "must be >= 16, got 0")
    assert tree_hash(out) == good
    no_leftovers(tmp_path)


def test_an_output_that_cannot_be_written_stops_the_command_before_any_work(index_dir, tmp_path, monkeypatch):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "a-file").write_text("mine")
    faces, out = str(index_dir.parent / "faces"), tmp_path / "b"
    failed_naming(run(tmp_path, "build", "--faces", faces, "--out", str(out), "--report",
                      str(tmp_path / "a-file" / "build.json")), f"{tmp_path / 'a-file'} is a file, not a folder")
    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access  # root writes anywhere: this folder is made read-only for the check itself
    monkeypatch.setattr(os, "access", lambda p, mode: not (Path(p) == locked and mode & os.W_OK) and real(p, mode))
    failed_naming(run(tmp_path, "build", "--faces", faces, "--out", str(out), "--plots", str(locked / "plots")),
                  f"--plots {locked / 'plots'}: {locked} is not writable (permission denied): nothing was done")
    failed_naming(run(tmp_path, "build", "--faces", faces, "--out", str(out), "--plots", str(locked)),
                  f"--plots {locked}: {locked} is not writable")
    assert not out.exists() and (tmp_path / "a-file").read_text() == "mine"


def test_an_index_of_another_schema_than_params_is_refused_by_the_stages_that_read_it(index_dir, tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["build"]["label_schema"] = "abaw2022"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    for command in (["train-teacher", "--out", str(tmp_path / "t.pt")], ["evaluate"]):
        failed_naming(run(tmp_path, *command, "--index", str(index_dir)), f"{index_dir}: the build's index was made "
                      "for schema abaw2020", "but this run uses abaw2022")
    assert not (tmp_path / "t.pt").exists()
    from pipeline.training.models import MultitaskNet, save_checkpoint

    students = tmp_path / "students"
    for name in params["ensemble"]["members"]:
        torch.manual_seed(len(name))
        save_checkpoint(students / f"{name}.pt", MultitaskNet("mobilenet_v3_small"),
                        {"train": {"va_centres": "centres"}, "soft_labels": {"mode": "centre"}})
    first = params["ensemble"]["members"][0]
    failed_naming(run(tmp_path, "ensemble", "--students", str(students), "--out", str(tmp_path / "e.pt")),
                  f"{students / first}.pt: ensemble member {first} was made for schema abaw2020", "uses abaw2022")


def test_an_output_that_is_an_input_or_inside_an_input_folder_is_refused_before_any_work(tmp_path):
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    kept = params.read_bytes()
    teacher, students = tmp_path / "teacher.pt", tmp_path / "students"
    teacher.write_bytes(b"a teacher's weights")
    students.mkdir()
    (students / "s1.pt").write_bytes(b"a student's weights")
    cases = [(["check-params", "--stamp", str(params)], f"--stamp {params}: is --params"),
             (["build", "--report", str(params)], f"--report {params}: is --params"),
             (["soft-labels", "--teacher", str(teacher), "--out", str(teacher)], f"--out {teacher}: is --teacher"),
             (["ensemble", "--students", str(students), "--out", str(students / "s1.pt")],
              f"--out {students / 's1.pt'}: is the checkpoint of ensemble member s1"),
             (["build", "--faces", str(students), "--out", str(tmp_path)], f"--out {tmp_path}: holds --"),
             (["evaluate", "--out", str(tmp_path / "e.json"), "--plots", str(tmp_path / "e.json")],
              f"--plots {tmp_path / 'e.json'} and --out {tmp_path / 'e.json'}: one output in the place of another")]
    for args, message in cases:
        failed_naming(run(tmp_path, *args), message)
    assert params.read_bytes() == kept and teacher.read_bytes() == b"a teacher's weights"
    assert (students / "s1.pt").read_bytes() == b"a student's weights"


def test_an_ensemble_member_that_is_no_student_is_named_as_such(tmp_path):
    students = ensemble_members(tmp_path)
    (students / "s2.pt").unlink()
    out = tmp_path / "e.pt"
    failed_naming(run(tmp_path, "ensemble", "--set", "ensemble.members=[s1, s9]", "--students", str(students),
                      "--out", str(out)), "ensemble.members: 's9' is not a student (students: s1, s2, s3)")
    failed_naming(run(tmp_path, "ensemble", "--set", "ensemble.members=[s1, s2]", "--students", str(students),
                      "--out", str(out)), f"{students / 's2.pt'}: checkpoint of ensemble member 's2' not found",
                  "dvc repro train_student@s2")
    assert not out.exists()


def test_data_that_no_longer_fit_their_version_stop_extraction(data, tmp_path):
    # DVC reruns extract when the version file changes, not when the folder does: the run
    # must then refuse files that are not those the version was written for
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["sources"]["afewva"]["version"] = str(data / "afewva.version.json")
    params["sources"]["expw"]["version"] = str(data / "afewva.version.json")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "faces"
    assert run(tmp_path, "extract", "--source", "afewva", "--out", str(out), "--quiet").exit_code == 0
    good = tree_hash(out)
    failed_naming(run(tmp_path, "extract", "--source", "expw", "--out", str(tmp_path / "expw"), "--quiet"),
                  "afewva.version.json", "is the version of", "not of")
    landmarks = next((data / "afewva").rglob("*.json"))
    landmarks.write_text(landmarks.read_text().replace("1", "2", 1))
    before = tree_hash(data)
    failed_naming(run(tmp_path, "extract", "--source", "afewva", "--out", str(out), "--quiet"),
                  str(data / "afewva"), "afewva.version.json", "dvc repro --force synth")
    assert tree_hash(out) == good and tree_hash(data) == before
    assert not (tmp_path / "expw").exists()
    # a version file that is gone (a synth run killed midway) is named before the data are read
    params["sources"]["expw"] = {"root": str(data / "gone"), "version": str(data / "gone.version.json")}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    failed_naming(run(tmp_path, "extract", "--source", "expw", "--out", str(tmp_path / "expw"), "--quiet"),
                  "gone.version.json: version of", "not found")
    no_leftovers(tmp_path)


# --- every label on its own frame, or on none --------------------------------------------------


def test_damaged_video_is_skipped_never_shifted(data, tmp_path, caplog):
    video = data / "disfa" / "Videos_LeftCamera" / "LeftVideoSN001_comp.avi"
    raw = bytearray(video.read_bytes())
    third = len(raw) // 3
    raw[third:third + 20_000] = np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes()
    video.write_bytes(bytes(raw))
    before = tree_hash(data)
    out = tmp_path / "faces"
    result = run(tmp_path, "extract", "--source", "disfa", "--out", str(out), "--quiet")
    assert result.exit_code == 0, result.output
    assert "LeftVideoSN001_comp.avi" in caplog.text and "frames are missing or damaged" in caplog.text
    assert "72 rows skipped" in result.output
    frames = pd.read_parquet(out / "frames.parquet")
    assert set(frames["video"]) == {"SN002"}  # nothing of the damaged video
    assert labels_on_their_frames(out, data) > 0
    assert tree_hash(data) == before
    no_leftovers(tmp_path)


def test_a_stray_label_past_a_videos_end_is_named_alone_and_a_missing_videos_rows_counted(data, tmp_path, caplog):
    import re

    labels = data / "disfa" / "ActionUnit_Labels" / "SN001" / "SN001_au1.txt"
    labels.write_text(labels.read_text() + "10000,0\n")  # one stray label far past the video's end
    (data / "disfa" / "Videos_LeftCamera" / "LeftVideoSN002_comp.avi").unlink()
    out = tmp_path / "faces"
    result = run(tmp_path, "extract", "--source", "disfa", "--out", str(out), "--quiet")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "extract.json").read_text())
    sn002 = len((data / "disfa/ActionUnit_Labels/SN002/SN002_au1.txt").read_text().split())  # a line per frame
    assert report["labels_without_frame"] == sn002 + 1
    skipped, without = map(int, re.search(r"(\d+) rows skipped, (\d+) labels without a frame \(a row of a missing "
                                          r"or unreadable file is both\)", result.output).groups())
    assert without == sn002 + 1 and skipped >= without
    assert "1 label(s) name frame 10000" in caplog.text and "its own frames are kept" in caplog.text
    assert set(pd.read_parquet(out / "frames.parquet")["video"]) == {"SN001"}


@pytest.mark.parametrize("source", ["affwild2", "expw"])
def test_truncated_images_are_skips_never_faces(data, tmp_path, source, caplog):
    folder = data / ("affwild2/cropped_aligned" if source == "affwild2" else "expw/image/origin")
    victim = sorted(folder.rglob("*.jpg"))[3]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 3])  # an interrupted copy
    before = tree_hash(data)
    out = tmp_path / "faces"
    result = run(tmp_path, "extract", "--source", source, "--out", str(out), "--quiet")
    assert result.exit_code == 0 and f"{victim.name}: unreadable or truncated image" in caplog.text
    rejected = json.loads((out / "extract.json").read_text())["rows_rejected"]
    assert {r: v["count"] for r, v in rejected.items()} == {"unreadable or truncated image": 1}, rejected
    frames = pd.read_parquet(out / "frames.parquet")
    stem = victim.stem if source == "expw" else victim.parent.name
    kept = frames[frames["video"] == stem]["frame"].tolist()
    assert (int(victim.stem) - 1) not in kept if source == "affwild2" else kept == []
    assert labels_on_their_frames(out, data) > 0
    # with on_error fail: an error naming the file, and no output at all
    failed_naming(run(tmp_path, "extract", "--source", source, "--out", str(tmp_path / "strict"), "--on-error",
                      "fail", "--quiet"), str(victim))
    assert not (tmp_path / "strict").exists()
    assert tree_hash(data) == before
    no_leftovers(tmp_path)


def test_expw_box_outside_the_image_is_a_skip(data, tmp_path, caplog):
    label = data / "expw" / "label" / "label.lst"
    lines = label.read_text().splitlines()
    name, face = lines[0].split()[:2]
    lines[0] = f"{name} {face} 5000 5000 5100 5100 0.9 3"  # top left right bottom: far outside
    label.write_text("\n".join(lines) + "\n")
    out = tmp_path / "faces"
    result = run(tmp_path, "extract", "--source", "expw", "--out", str(out), "--quiet")
    assert result.exit_code == 0 and "face box lies mostly outside" in caplog.text
    assert f"image (face {face} of {label})" in caplog.text  # which of the picture's faces, and where it is listed
    frames = pd.read_parquet(out / "frames.parquet")
    assert f"expw/{Path(name).stem}/{face}" not in set(frames["uid"])
    labels_on_their_frames(out, data)


def test_real_files_bom_windows_line_ends_extra_columns(data, tmp_path, caplog):
    for path in sorted((data / "affwild2" / "annotations").rglob("*.txt"))[:3]:
        lines = path.read_text().splitlines()
        lines = [lines[0] + ",notes"] + [line + ",x" for line in lines[1:]] if "EXPR" not in str(path) else lines
        path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    au1 = sorted((data / "disfa" / "ActionUnit_Labels").rglob("*_au1.txt"))[0]
    au1.write_text("\n".join(line + ",0.0" for line in au1.read_text().splitlines()) + "\n")
    label = data / "expw" / "label" / "label.lst"
    label.write_text("\n".join(line + " extra" for line in label.read_text().splitlines()) + "\n")
    for source in ("affwild2", "disfa", "expw"):
        out = tmp_path / source
        result = run(tmp_path, "extract", "--source", source, "--out", str(out), "--quiet")
        assert result.exit_code == 0 and "skipped" not in caplog.text, caplog.text
        labels_on_their_frames(out, data)
    assert "label lines carry columns after frame,intensity, not read (first: " in caplog.text  # said, not silent


def test_a_source_without_any_face_is_an_error_that_says_why(data, tmp_path, caplog):
    for video in (data / "disfa" / "Videos_LeftCamera").glob("*.avi"):
        video.write_bytes(b"not a video")
    result = run(tmp_path, "extract", "--source", "disfa", "--out", str(tmp_path / "faces"), "--quiet")
    message = failed_naming(result, "no face could be extracted", "cannot open video")
    assert "skipped" in message
    assert "cannot open video" in caplog.text  # the reason was logged, not only counted
    assert not (tmp_path / "faces").exists()


# --- parameters that type-check but make no sense -------------------------------------------


@pytest.mark.parametrize("section, key, value, message", [
    ("teacher", "epochs", -3, "teacher.epochs: must be >= 1, got -3"),
    ("teacher", "batch_per_task", 1, "teacher.batch_per_task: must be >= 2, got 1"),
    ("student", "temperature", 1e308, "student.temperature: must be <= 20.0, got 1e+308"),
    ("teacher", "lr", -0.1, "teacher.lr: must be > 0"),
    ("teacher", "backbone", "resnet51", "teacher.backbone: unknown backbone 'resnet51'"),
    ("teacher", "steps_per_epoch", 0, "teacher.steps_per_epoch: must be >= 1, got 0"),
    ("evaluate", "bootstrap", -5, "evaluate.bootstrap: must be >= 1, got -5"),
    ("extract", "min_prob", 1.5, "extract.min_prob: must be <= 1"),
    ("student", "lam", 1.2, "student.lam: must be <= 1"),
    ("soft_labels", "views", 0, "soft_labels.views: must be >= 1"),
    ("ensemble", "members", ["s1", "s9"], "ensemble.members: 's9' is not a student"),
    ("ensemble", "members", [], "ensemble.members: List should have at least 1 item"),
    ("student", "backbone", "resnet51", "student.backbone: unknown backbone 'resnet51'"),
    ("teacher", "device", "tpu", "teacher.device: unknown device 'tpu'"),
    ("teacher", "lr", float("inf"), "teacher.lr: Input should be a finite number"),
    ("soft_labels", "views", 1_000_000_000, "soft_labels.views: must be <= 64, got 1000000000"),
    ("teacher", "batch_per_task", 100_000, "teacher.batch_per_task: must be <= 4096"),
])
def test_values_out_of_range_stop_before_any_work(data, tmp_path, section, key, value, message):
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params[section][key] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    failed_naming(run(tmp_path, "check-params"), message)


def test_one_students_unknown_backbone_is_named(data, tmp_path):
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["students"]["s2"]["backbone"] = "resnet51"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    failed_naming(run(tmp_path, "check-params"), "students.s2.backbone: unknown backbone 'resnet51'")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a GPU")
def test_cuda_without_a_gpu_and_duplicate_keys(data, tmp_path):
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["teacher"]["device"] = "cuda"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    failed_naming(run(tmp_path, "check-params"), "teacher.device: 'cuda' asked for, but this machine has no CUDA")
    text = (ROOT / "params.yaml").read_text().replace("threads: 1", "threads: 1\nthreads: 2", 1)
    (tmp_path / "params.yaml").write_text(text)
    failed_naming(run(tmp_path, "check-params"), 'found duplicate key "threads"')


# --- unreadable checkpoints, resume files and outputs --------------------------------------------


@pytest.mark.parametrize("content, message", [(b"", "not a readable checkpoint"),
                                              (b"\x00" * 64, "not a readable checkpoint"),
                                              (b"PK\x03\x04 a zip's start only", "checkpoint damaged: truncated")])
def test_damaged_checkpoints_are_one_line_errors(data, tmp_path, content, message):
    bad = tmp_path / "teacher.pt"
    bad.write_bytes(content)
    failed_naming(run(tmp_path, "soft-labels", "--index", str(tmp_path), "--teacher", str(bad), "--out",
                      str(tmp_path / "cache.h5"), "--quiet"), str(bad), message)
    torch.save({"something": "else"}, bad)
    failed_naming(run(tmp_path, "soft-labels", "--index", str(tmp_path), "--teacher", str(bad), "--out",
                      str(tmp_path / "cache.h5"), "--quiet"), str(bad), "not an mtaffect checkpoint")
    assert not (tmp_path / "cache.h5").exists()


def test_an_output_that_cannot_be_written_is_a_one_line_error(data, tmp_path):
    (tmp_path / "blocker").write_text("a file where a folder should be")
    result = run(tmp_path, "check-params")  # sanity: the params are fine
    assert result.exit_code == 0
    failed_naming(run(tmp_path, "extract", "--source", "afewva", "--out", str(tmp_path / "faces"), "--report",
                      str(tmp_path / "blocker" / "afewva.json"), "--quiet"), "blocker")


# --- data that changed, or were damaged, after they were made ----------------------------------


def test_a_dataset_changed_during_extraction_is_refused_naming_the_file(data, tmp_path, monkeypatch):
    import pipeline.extraction.extract

    read_source = pipeline.extraction.extract.read_source
    victim = sorted((data / "expw" / "image" / "origin").glob("*.jpg"))[2]

    def read_then_edit(*args, **kwargs):  # the annotations are read; an image changes before it is
        source = read_source(*args, **kwargs)
        victim.write_bytes(victim.read_bytes() + b"\0")
        return source

    monkeypatch.setattr(pipeline.extraction.extract, "read_source", read_then_edit)
    out = tmp_path / "faces"
    failed_naming(run(tmp_path, "extract", "--source", "expw", "--out", str(out), "--quiet"), str(victim),
                  "changed while it was being extracted", "nothing written")
    assert not out.exists()
    no_leftovers(tmp_path)


def flip_a_byte_of_each_face(shard: Path) -> None:
    import h5py

    with h5py.File(shard) as h5:
        offsets = [h5["faces"].id.get_chunk_info(i).byte_offset for i in range(h5["faces"].id.get_num_chunks())]
    with open(shard, "r+b") as f:
        for offset in offsets:
            f.seek(offset + 500)
            value = f.read(1)[0]
            f.seek(offset + 500)
            f.write(bytes([value ^ 0x10]))


def test_a_damaged_shard_or_cache_stops_a_stage_run_by_hand(data, index_dir, tmp_path):
    faces = tmp_path / "faces"
    shutil.copytree(index_dir.parent / "faces", faces)
    build = tmp_path / "build"
    shutil.copytree(index_dir, build)  # its shard paths are relative: ../faces/<source>/...
    for shard in sorted((faces / "affwild2").glob("shard-*.h5")):
        flip_a_byte_of_each_face(shard)
    args = ["--index", str(build), "--out", str(tmp_path / "t.pt"), "--log", str(tmp_path / "t.csv"), "--report",
            str(tmp_path / "t.json"), "--resume", str(tmp_path / "r" / "t.pt"), "--quiet"]
    failed_naming(run(tmp_path, "train-teacher", *args), "shard-0000", "is damaged: its checksum fails")
    assert not (tmp_path / "t.pt").exists()
    # a cache with one logit changed behind its writer's back
    shutil.rmtree(faces)
    shutil.copytree(index_dir.parent / "faces", faces)
    assert run(tmp_path, "train-teacher", *args).exit_code == 0
    cache = tmp_path / "cache.h5"
    assert run(tmp_path, "soft-labels", "--index", str(build), "--teacher", str(tmp_path / "t.pt"), "--out", str(cache),
               "--report", str(tmp_path / "c.json"), "--quiet").exit_code == 0
    import h5py

    with h5py.File(cache, "r+") as h5:
        h5["logits"][3, 0, 7] = h5["logits"][3, 0, 7] + np.float16(1)
    failed_naming(run(tmp_path, "train-student", "--name", "s1", "--index", str(build), "--soft-labels", str(cache),
                      "--out", str(tmp_path / "s.pt"), "--quiet"), str(cache), "fails its checksum")
    assert not (tmp_path / "s.pt").exists()
    no_leftovers(tmp_path)


def test_labels_that_are_no_labels_are_counted_skips(data, tmp_path, caplog):
    au1 = sorted((data / "disfa" / "ActionUnit_Labels").rglob("*_au1.txt"))[0]
    lines = au1.read_text().splitlines()
    lines[4] = lines[4].split(",")[0] + ",1.9"  # intensities are whole numbers: never rounded to 1
    lines[5] = lines[5].split(",")[0] + ",7"
    au1.write_text("\n".join(lines) + "\n")
    clip, empty = sorted((data / "afewva").rglob("*.json"))[:2]
    clip.write_text(json.dumps([json.loads(clip.read_text())]))  # a list, not a mapping
    empty.write_text(json.dumps(json.loads(empty.read_text()) | {"frames": {}}))  # a clip without labels
    for source, reason in (("disfa", "intensity must be a whole number 0..5, got 1.9"),
                           ("afewva", "the top level is no mapping with a frames key, got a list")):
        out = tmp_path / source
        result = run(tmp_path, "extract", "--source", source, "--out", str(out), "--quiet")
        assert result.exit_code == 0 and reason in caplog.text, result.output
        rejected = json.loads((out / "extract.json").read_text())["rows_rejected"]
        assert any(reason_kind(reason) in r for r in rejected), rejected
    unlabelled = len(list(empty.parent.glob("*.png")))
    assert f"{unlabelled} frames without a label not read" in result.output, result.output  # said, not only in the report
    # two bad values of one kind: one line of the report, counted twice
    rejected = json.loads((tmp_path / "disfa" / "extract.json").read_text())["rows_rejected"]
    assert {r: v["count"] for r, v in rejected.items()} == {"bad DISFA line: intensity must be a whole number 0..5": 2}
    labels_on_their_frames(tmp_path / "afewva", data)
    frames = pd.read_parquet(tmp_path / "disfa" / "frames.parquet")
    bad = (frames["video"] == au1.parent.name) & frames["frame"].isin([4, 5])
    assert frames.loc[bad, "AU1"].tolist() == [-1, -1] and (frames.loc[bad, "AU2"] >= 0).all()  # unknown, not 0 or 1
    truth = pd.read_parquet(data / "ground_truth.parquet").set_index("uid").loc[frames.loc[~bad, "uid"]]
    np.testing.assert_array_equal(frames.loc[~bad, "AU1"].to_numpy(), truth["lab_AU1"].to_numpy())


def test_dataset_version_of_the_current_folder(tmp_path, monkeypatch):
    folder = tmp_path / "mydata"
    folder.mkdir()
    (folder / "a.txt").write_text("x")
    monkeypatch.chdir(folder)
    result = CliRunner().invoke(main, ["dataset-version", ".", "--quiet"])
    assert result.exit_code == 0 and (tmp_path / "mydata.version.json").exists(), result.output


def test_ctrl_c_during_extraction_stops_every_worker_without_their_tracebacks(data, tmp_path):
    """Ctrl-C reaches the whole process group; only the parent may answer it (one line,
    nothing written), not each worker with a traceback of its own."""
    import signal
    import subprocess
    import sys

    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "stages.extract", "--params", str(tmp_path / "params.yaml"),
                             "--source", "disfa", "--root", str(data / "disfa"), "--out", str(out),
                             "--workers", "2"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,  # as from a terminal: a shell's background job ignores Ctrl-C
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = ""
    while "extract disfa" not in seen:  # the progress bar: the workers are running
        char = proc.stderr.read(1)
        assert char, seen
        seen += char
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0, stdout + stderr
    assert "Traceback" not in seen + stderr and "KeyboardInterrupt" not in seen + stderr, seen + stderr
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


# --- images OpenCV refuses, files the system refuses, two runs at once -------------------------


def test_an_expw_image_over_opencvs_pixel_limit_is_a_counted_skip(data, tmp_path, huge_png, caplog):
    victim = sorted((data / "expw" / "image" / "origin").glob("*.jpg"))[1]
    victim.write_bytes(huge_png.read_bytes())  # a PNG under a .jpg name: both readers go by the bytes
    out = tmp_path / "faces"
    result = run(tmp_path, "extract", "--source", "expw", "--out", str(out), "--quiet")
    assert result.exit_code == 0, result.output
    assert f"{victim.name} (2 rows): image too large (40000 x 27000 pixels" in caplog.text  # once, two faces
    rejected = json.loads((out / "extract.json").read_text())["rows_rejected"]
    assert [r for r in rejected if r.startswith("image too large")], rejected
    assert not [u for u in pd.read_parquet(out / "frames.parquet")["uid"] if f"/{victim.stem}/" in u]
    no_leftovers(tmp_path)


def in_process_workers(monkeypatch):
    """The extraction's workers as threads of this process, so a test's patch reaches them."""
    import multiprocessing.pool

    import pipeline.extraction.extract as extract

    class Context:
        Pool = multiprocessing.pool.ThreadPool

    monkeypatch.setattr(extract.mp, "get_context", lambda _method: Context)


def test_an_image_the_system_refuses_is_skipped_once_with_on_error_skip(data, tmp_path, monkeypatch, caplog):
    import pipeline.core.fileio as fileio

    victim = sorted((data / "expw" / "image" / "origin").glob("*.jpg"))[1]
    read_bytes, opener = Path.read_bytes, open  # as root chmod 000 reads anyway: refuse the reads themselves

    def refused(path):
        if Path(path).name == victim.name:
            raise PermissionError(13, "Permission denied", str(path))

    def patched_read_bytes(self):
        refused(self)
        return read_bytes(self)

    def patched_open(file, *args, **kwargs):
        refused(file)
        return opener(file, *args, **kwargs)

    in_process_workers(monkeypatch)
    monkeypatch.setattr(Path, "read_bytes", patched_read_bytes)
    monkeypatch.setattr(fileio, "open", patched_open, raising=False)
    out = tmp_path / "faces"
    result = run(tmp_path, "extract", "--source", "expw", "--out", str(out), "--quiet", "--on-error", "skip")
    assert result.exit_code == 0, result.output
    assert caplog.text.count(f"{victim.name}") == 1 and "Permission denied" in caplog.text, caplog.text
    rejected = json.loads((out / "extract.json").read_text())["rows_rejected"]
    assert [r for r in rejected if "Permission denied" in r], rejected
    failed_naming(run(tmp_path, "extract", "--source", "expw", "--out", str(tmp_path / "strict"), "--quiet",
                      "--on-error", "fail"), victim.name, "Permission denied")
    assert not (tmp_path / "strict").exists()
    no_leftovers(tmp_path)


def test_a_second_extraction_into_the_same_folder_is_refused_in_one_line(data, tmp_path):
    import fcntl

    out = tmp_path / "faces"
    with open(tmp_path / ".faces.lock", "w") as held:  # a first run, still writing
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        failed_naming(run(tmp_path, "extract", "--source", "afewva", "--out", str(out), "--quiet"),
                      f"another run is writing {out}")
    assert not out.exists() and not list(tmp_path.glob(".faces.*[!k]"))
    assert run(tmp_path, "extract", "--source", "afewva", "--out", str(out), "--quiet").exit_code == 0
    assert not (tmp_path / ".faces.lock").exists()  # the run deletes its lock file: nothing left beside the output


# --- the wrong Python, params edited mid-run ---------------------------------------------------


def test_a_python_without_the_projects_packages_says_so_in_one_line(tmp_path):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    stamp = tmp_path / "params.json"
    for stage in ("check_params", "train_teacher"):  # -S: no site-packages, as a system Python has none of ours
        proc = subprocess.run([sys.executable, "-S", "-m", f"stages.{stage}", "--stamp", str(stamp)], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1 and proc.stdout == "", proc
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert f"this Python ({sys.executable}) lacks the project's packages (" in lines[0], lines[0]
        assert "ruamel.yaml" in lines[0] and ".venv/bin" in lines[0], lines[0]
    assert not list(tmp_path.iterdir())


def test_params_edited_while_a_stage_runs_fail_it_so_dvc_records_nothing(tmp_path, monkeypatch):
    import pipeline.core.catalogue as catalogue

    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    set_preset(params, "tiny")
    edited = params.read_text().replace("threads:", "threads:  ", 1)
    assert edited != params.read_text()
    real = catalogue.check_pretrained

    def check_then_edit(*args, **kwargs):  # the user saves params.yaml while the stage works
        real(*args, **kwargs)
        params.write_text(edited)

    monkeypatch.setattr(catalogue, "check_pretrained", check_then_edit)
    stamp = tmp_path / "reports" / "params.json"
    error = failed_naming(run(tmp_path, "check-params", "--stamp", str(stamp)), str(params))
    assert error == (f"Error: {params} changed while this stage ran: its outputs match the values it started "
                     "with; run it again")
    assert params.read_text() == edited  # the user's edit stays
    no_leftovers(tmp_path)
    monkeypatch.setattr(catalogue, "check_pretrained", real)
    assert run(tmp_path, "check-params", "--stamp", str(stamp)).exit_code == 0  # run again: fine


@pytest.mark.parametrize("command", ["predict", "export-abaw"])
def test_an_out_folder_that_is_a_link_to_nothing_is_named_as_such(tmp_path, command):
    from test_abaw_export import table as predict_table

    table = predict_table(tmp_path / "v.csv", [0, 1], [True, True])  # predict: refused before reading it
    kept = table.read_bytes()
    out = tmp_path / "dangl"
    out.symlink_to(tmp_path / "gone" / "preds")
    extra = ["--model", str(table)] if command == "predict" else []
    result = CliRunner().invoke(main, [command, str(table), *extra, "--out", str(out)])
    assert "Traceback" not in result.output, result.output
    assert result.exit_code == 1 and result.output.splitlines() == [
        f"Error: --out {out}: a symbolic link to {tmp_path / 'gone' / 'preds'}, which does not exist: create that "
        "folder, or choose another --out"], result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangl", "v.csv"] and table.read_bytes() == kept


@pytest.fixture
def full_disk(tmp_path):
    """A 2 MB file system of its own (root may mount one), filled by the first large write."""
    import gc
    import subprocess

    where = tmp_path / "full"
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], capture_output=True).returncode:
        pytest.skip("cannot mount a small file system here (not root)")
    yield where
    gc.collect()  # the failed write's exception, in a reference cycle, keeps torch's file open until collected
    subprocess.run(["umount", str(where)], check=True)


def ensemble_members(tmp_path: Path) -> Path:
    """A params file and the random students its ensemble is made of."""
    from pipeline.training.models import MultitaskNet, save_checkpoint

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    students = tmp_path / "students"
    for name in yaml.safe_load((tmp_path / "params.yaml").read_text())["ensemble"]["members"]:
        torch.manual_seed(len(name))
        save_checkpoint(students / f"{name}.pt", MultitaskNet("mobilenet_v3_small"),
                        {"train": {"va_centres": "centres"}, "soft_labels": {"mode": "centre"}})
    return students


def test_a_bundle_written_on_a_full_disk_says_no_space_naming_the_file(index_dir, tmp_path, full_disk):
    students = ensemble_members(tmp_path)
    kept = tree_hash(students)
    out = full_disk / "e.pt"
    error = failed_naming(run(tmp_path, "ensemble", "--students", str(students), "--index", str(index_dir), "--out",
                              str(out), "--report", str(tmp_path / "e.json"), "--provenance", str(tmp_path / "p.json"),
                              "--quiet"), str(out))
    assert error == f"Error: {out}: No space left on device"
    assert not list(full_disk.iterdir()) and tree_hash(students) == kept
    assert not (tmp_path / "e.json").exists() and not (tmp_path / "p.json").exists()
    no_leftovers(tmp_path)


def test_a_stage_failing_under_dvc_says_dvc_removed_its_outputs_and_how_to_bring_them_back(tmp_path, monkeypatch):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["teacher"]["epochs"] = -1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = tmp_path / "teacher.pt"
    alone = failed_naming(run(tmp_path, "train-teacher", "--out", str(out)), "teacher.epochs")
    assert "DVC" not in alone  # run by hand: DVC removed nothing
    monkeypatch.setenv("DVC_STAGE", "train_teacher")  # what dvc repro sets for a stage's command
    error = failed_naming(run(tmp_path, "train-teacher", "--out", str(out)), "teacher.epochs")
    assert error == f"{alone} (DVC removed this stage's outputs before running it: `dvc checkout train_teacher` " \
                    "brings the last ones back)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_a_provenance_record_that_cannot_be_written_says_the_outputs_are(index_dir, tmp_path, full_disk):
    students = ensemble_members(tmp_path)
    with open(full_disk / "filler", "wb") as f:  # the disk the record goes to is full
        with pytest.raises(OSError):
            while True:
                f.write(bytes(1 << 16))
                f.flush()
    kept, record = tree_hash(students), full_disk / "prov.json"
    out, report = tmp_path / "e.pt", tmp_path / "e.json"
    error = failed_naming(run(tmp_path, "ensemble", "--students", str(students), "--index", str(index_dir), "--out",
                              str(out), "--report", str(report), "--provenance", str(record), "--quiet"))
    assert error == (f"Error: {record}: No space left on device (the outputs are written, their provenance record "
                     "is not: run the command again once it can be)")
    assert torch.load(out, weights_only=False)["members"] and "au_thresholds" in json.loads(report.read_text())
    assert [p.name for p in full_disk.iterdir()] == ["filler"] and tree_hash(students) == kept
    no_leftovers(tmp_path)


def test_evaluate_on_a_full_disk_leaves_none_of_its_outputs_and_the_earlier_ones_as_they_were(index_dir, tmp_path,
                                                                                               full_disk, monkeypatch):
    """The models' scoring is stood in for (it needs every stage's models): what is under
    test is how evaluate writes its outputs, one of them on a full disk."""
    import pipeline.evaluation.evaluate as scoring
    import pipeline.evaluation.figures as figures
    import pipeline.evaluation.truth as truth
    import pipeline.training.softlabels as softlabels

    class Cache:
        attrs = {"teacher_sha256": "0" * 64}

        def __init__(self, path):
            pass

    def draw(*args):
        (args[-1] / "comparison.csv").write_text("model\n")

    rows = pd.DataFrame({"model": ["teacher"], "frame": [0]})
    monkeypatch.setattr(scoring, "evaluate", lambda *args, **kwargs: (rows, {}))
    for name in ("check_distinct", "check_same_teacher"):
        monkeypatch.setattr(scoring, name, lambda *args: None)
    monkeypatch.setattr(softlabels, "SoftLabels", Cache)
    monkeypatch.setattr(truth, "soft_label_quality", lambda *args: {})
    for name in ("evaluation_plots", "comparison_plot", "sequence_length_plot"):
        monkeypatch.setattr(figures, name, draw)
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    models = {option: tmp_path / "models" / option for option in ("--teacher", "--students", "--ensemble",
                                                                 "--features", "--rnn-teacher", "--rnn-ensemble",
                                                                 "--soft-labels")}
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    for option, path in models.items():  # present: each is only checked to exist
        if option in ("--students", "--rnn-teacher", "--rnn-ensemble"):
            path.mkdir(parents=True)
            names = [f"{n}.pt" for n in params["students"]] if option == "--students" else \
                [f"T{n}.pt" for n in params["temporal"]["sequence_lengths"]]
            for name in names:
                (path / name).write_text(name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(option)
    with open(full_disk / "filler", "wb") as f:
        with pytest.raises(OSError):
            while True:
                f.write(bytes(1 << 16))
                f.flush()
    earlier = tmp_path / "reports"
    earlier.mkdir()
    for name in ("rows.parquet", "quality.json"):
        (earlier / name).write_text(f"an earlier run's {name}")
    kept = tree_hash(earlier)
    args = ["evaluate", "--index", str(index_dir), "--predictions", str(earlier / "rows.parquet"), "--out",
            str(full_disk / "ev.json"), "--soft-label-report", str(earlier / "quality.json"), "--plots",
            str(tmp_path / "plots"), "--provenance", str(tmp_path / "prov.json"), "--ground-truth",
            str(tmp_path / "none.parquet"), "--quiet", *[str(a) for o, p in models.items() for a in (o, p)]]
    error = failed_naming(run(tmp_path, *args))
    assert error == f"Error: {full_disk / 'ev.json'}: No space left on device"
    assert tree_hash(earlier) == kept and [p.name for p in full_disk.iterdir()] == ["filler"]
    assert not (tmp_path / "plots").exists() and not (tmp_path / "prov.json").exists()
    no_leftovers(tmp_path)
    (full_disk / "filler").unlink()  # space again: every output in place
    assert run(tmp_path, *args).exit_code == 0
    assert (full_disk / "ev.json").read_text() == "{}\n" and tree_hash(earlier) != kept
    assert (tmp_path / "plots" / "comparison.csv").exists() and (tmp_path / "prov.json").exists()
    no_leftovers(tmp_path)
