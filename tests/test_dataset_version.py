"""Dataset versions: the version file synth writes, and the check that a `sources` entry's
version speaks of the folder extract reads."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.extraction.dataset_version import check_version, version_path, write_version
from pipeline.core.errors import DataError
from pipeline.core.hashing import digest

DVC = str(Path(sys.executable).parent / "dvc")


def independent_digest(folder: Path) -> str:
    """The folder digest recomputed with hashlib alone: names and bytes of every file."""
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(folder).as_posix()}\0{hashlib.sha256(f.read_bytes()).hexdigest()}\n".encode())
    return h.hexdigest()


@pytest.fixture
def dataset(tmp_path) -> Path:
    root = tmp_path / "data" / "disfa"
    (root / "ActionUnit_Labels" / "SN001").mkdir(parents=True)
    (root / "ActionUnit_Labels" / "SN001" / "SN001_au1.txt").write_text("1,0\n2,3\n")
    (root / "Videos_LeftCamera").mkdir()
    (root / "Videos_LeftCamera" / "LeftVideoSN001_comp.avi").write_bytes(bytes(range(256)) * 4)
    return root


def test_version_file_holds_the_folders_digest_next_to_it(dataset):
    path = write_version(dataset)
    assert path == dataset.parent / "disfa.version.json" == version_path(dataset)
    record = json.loads(path.read_text())
    assert record == {"dataset": "disfa", "files": 2, "sha256": independent_digest(dataset)}
    check_version(dataset, path, digest(dataset))


def test_any_change_to_the_data_changes_the_version_and_relocation_does_not(dataset, tmp_path):
    first = write_version(dataset).read_bytes()
    moved = tmp_path / "elsewhere" / "disfa"
    shutil.copytree(dataset, moved)
    assert write_version(moved).read_bytes() == first  # same data in another folder: same bytes
    label = dataset / "ActionUnit_Labels" / "SN001" / "SN001_au1.txt"
    label.write_text("1,0\n2,4\n")  # one label
    assert write_version(dataset).read_bytes() != first
    label.write_text("1,0\n2,3\n")
    assert write_version(dataset).read_bytes() == first
    label.rename(label.with_name("SN001_au2.txt"))  # same bytes, another name
    assert write_version(dataset).read_bytes() != first


def test_version_that_does_not_fit_the_data_is_refused(dataset, tmp_path):
    path = write_version(dataset)
    with pytest.raises(DataError, match=r"disfa: its files differ from those .*disfa.version.json was written for"):
        check_version(dataset, path, digest(dataset) + "0")  # the files read are not those described
    label = dataset / "ActionUnit_Labels" / "SN001" / "SN001_au1.txt"
    for f in (*dataset.rglob("*.*"), path):  # the data long ago, then the version, then an edit
        os.utime(f, ns=(1, 1) if f != path else (2, 2))
    label.write_text("1,0\n2,5\n")
    with pytest.raises(DataError, match=rf"\(1 changed or added since the version file \(or only touched: their times "
                                        rf"say no more\), e.g. {label}; if the change "):
        check_version(dataset, path, digest(dataset))
    video = next(dataset.rglob("*.avi"))
    os.utime(video, ns=(3, 3))  # touched only, and earlier in name order: the edited label is named still
    with pytest.raises(DataError, match=rf"\(2 changed or added since the version file .*, e.g. {label}; "):
        check_version(dataset, path, digest(dataset))
    (dataset / "extra.txt").write_text("x")
    with pytest.raises(DataError, match=r"\(3 files now, 2 then; 3 changed or added since the version file"):
        check_version(dataset, path, digest(dataset))
    for f in dataset.rglob("*.*"):  # an edit that kept the files' times: nothing more to say than that
        os.utime(f, ns=(1, 1))
    (dataset / "extra.txt").unlink()
    with pytest.raises(DataError, match=r"\(as many files, none newer than the version file: renamed, edited with "):
        check_version(dataset, path, digest(dataset))
    other = tmp_path / "data" / "expw"
    other.mkdir()
    with pytest.raises(DataError, match=r"disfa.version.json: is the version of .*disfa, not of .*expw"):
        check_version(other, path, digest(other))
    with pytest.raises(DataError, match=r"missing.version.json: version of .*disfa not found"):
        check_version(dataset, tmp_path / "missing.version.json", digest(dataset))
    with pytest.raises(DataError, match=r"missing.version.json: version of .*disfa not found"):  # before reading
        check_version(dataset, tmp_path / "missing.version.json", None)
    check_version(dataset, path, None)  # there and about this folder: the digest comes after reading
    broken = tmp_path / "broken.version.json"
    broken.write_text('{"dataset": "disfa"')
    with pytest.raises(DataError, match=r"broken.version.json: not a version file"):
        check_version(dataset, broken, digest(dataset))


def test_the_root_itself_is_its_own_version(dataset):
    check_version(dataset, dataset, "any: DVC hashes the folder itself")
    check_version(dataset, dataset.parent / "." / "disfa", "")


def test_a_dvc_file_is_a_version_of_the_folder_it_tracks(dataset, tmp_path):
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "HOME": str(tmp_path),
           "DVC_SITE_CACHE_DIR": str(tmp_path / "site-cache")}
    project = dataset.parent.parent
    subprocess.run([DVC, "init", "--no-scm", "-q"], cwd=project, env=env, check=True)
    subprocess.run([DVC, "add", "-q", "data/disfa"], cwd=project, env=env, check=True)
    dvc_file = project / "data" / "disfa.dvc"
    check_version(dataset, dvc_file, digest(dataset))
    other = project / "data" / "expw"
    other.mkdir()
    with pytest.raises(DataError, match=r"disfa.dvc: tracks .*disfa, not .*expw"):
        check_version(other, dvc_file, digest(other))


def test_dataset_version_command_writes_it_and_says_so(dataset):
    from click.testing import CliRunner

    from stages.cli import main

    (dataset / "loop").symlink_to(dataset)  # a link loop: not walked around forever
    (dataset / "gone.txt").symlink_to(dataset / "absent.txt")
    os.mkfifo(dataset / "pipe")  # never read (a read would wait for a writer): said with the links
    result = CliRunner().invoke(main, ["dataset-version", str(dataset)])
    assert result.exit_code == 0, result.output
    path = version_path(dataset)
    assert f"{path}: 2 files, sha256 {independent_digest(dataset)[:16]}" in result.output
    assert (f"warning: 3 entries not read (links dangling or to a folder, pipes, devices: extraction does not read "
            f"them either), e.g. {dataset / 'gone.txt'}") in result.output
    (dataset / "pipe").unlink()
    check_version(dataset, path, independent_digest(dataset))
    # a synthetic data set's version is synth's output: not rewritten by hand
    (dataset.parent / "synth.json").write_text('{"generator": "mtaffect synthetic v3", "complete": true}')
    before = path.read_bytes()
    refused = CliRunner().invoke(main, ["dataset-version", str(dataset)])
    assert refused.exit_code != 0 and "a synthetic data set, whose version file is synth's output" in refused.output
    assert "dvc repro --force synth" in refused.output and path.read_bytes() == before


# --- the digest of what extraction reads ----------------------------------------------------


def test_what_extraction_reads_gives_the_folders_digest_and_a_change_meanwhile_is_refused(dataset):
    from pipeline.extraction.dataset_version import DatasetRead
    from pipeline.core.hashing import HashingReader

    read = DatasetRead.start(dataset)
    video = dataset / "Videos_LeftCamera" / "LeftVideoSN001_comp.avi"
    reader = HashingReader(video)
    reader.read(100), reader.seek(900), reader.read(50)  # a decoder's reads, out of order
    read.add({str(video): reader.sha256()})  # (what it skipped is read for the hash, once)
    assert read.finish() == independent_digest(dataset) == digest(dataset)
    for change in ("edit", "new", "gone"):
        read = DatasetRead.start(dataset)
        labels = dataset / "ActionUnit_Labels" / "SN001" / "SN001_au1.txt"
        if change == "edit":
            os.utime(labels, ns=(0, 12345))  # same bytes, touched: still a sign of a change
        elif change == "new":
            (dataset / "late.txt").write_text("arrived during the run")
        else:
            video.unlink()
        with pytest.raises(DataError, match="changed while it was being extracted"):
            read.finish()


def test_a_video_is_read_once_to_extract_and_hash_it(tmp_path):
    """The worker hashes the bytes OpenCV's decoder reads: the file's bytes go through
    read() once (/proc/self/io), not once for the hash and once for the decoder."""
    import cv2
    import numpy as np

    from pipeline.extraction.params import ExtractParams
    from pipeline.extraction.worker import process_job
    from pipeline.core.hashing import file_sha256
    from pipeline.extraction.sources.base import Job

    video = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25, (320, 240))
    for k in range(60):
        writer.write(np.random.default_rng(k).integers(0, 255, (240, 320, 3), dtype=np.uint8))
    writer.release()
    job = Job(source="input", video="v", subject="v", split="test", mode="detect", frames=np.arange(60),
              video_path=str(video))

    class NoFaces:
        def detect(self, frames):
            return [type("F", (), {"pick": lambda *a, **k: None})() for _ in frames]

    def read_chars() -> int:
        return int(next(line for line in open("/proc/self/io") if line.startswith("rchar")).split()[1])

    before = read_chars()
    res = process_job(0, job, ExtractParams(track=False), NoFaces, str(tmp_path))
    read = read_chars() - before
    assert res.hashes == {str(video): file_sha256(video)} and res.frames_read == 60
    assert video.stat().st_size <= read < 1.2 * video.stat().st_size, (read, video.stat().st_size)


def test_a_file_name_that_is_not_utf8_is_hashed_as_its_bytes_and_utf8_names_as_before(dataset):
    from click.testing import CliRunner

    from stages.cli import main

    (dataset / "café.txt").write_text("accents")  # UTF-8: hashed as it always was
    written = CliRunner().invoke(main, ["dataset-version", str(dataset), "--quiet"])
    assert written.exit_code == 0 and json.loads(version_path(dataset).read_text())["sha256"] == \
        independent_digest(dataset), written.output
    bad = os.fsencode(dataset) + b"/bad\xffname"
    with open(bad, "wb") as f:
        f.write(b"x")
    files = {p: p.read_bytes() for p in dataset.rglob("*") if p.is_file()}
    result = CliRunner().invoke(main, ["dataset-version", str(dataset), "--quiet"])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    h = hashlib.sha256()  # the names' bytes on disk, in the order of their parts
    for f in sorted(p for p in dataset.rglob("*") if p.is_file()):
        h.update(os.fsencode(f.relative_to(dataset).as_posix()) + b"\0" +
                 hashlib.sha256(f.read_bytes()).hexdigest().encode() + b"\n")
    assert json.loads(version_path(dataset).read_text()) == {"dataset": "disfa", "files": 4, "sha256": h.hexdigest()}
    assert {p: p.read_bytes() for p in dataset.rglob("*") if p.is_file()} == files
    assert not [p for p in dataset.parent.iterdir() if p.name.startswith(".")]
