"""Files written whole or not at all; output folders replaced only when they are the stage's own."""
import os
import shutil
from pathlib import Path

import pytest


def test_an_output_folder_is_replaced_only_when_all_of_it_is_the_stages_own(tmp_path):
    from pipeline.core.errors import DataError
    from pipeline.core.fileio import WORK_MARK, check_output_folder, replacing_folder
    out = tmp_path / "out"
    out.mkdir()
    for name in ("extract.json", "frames.parquet", "shard-00000.h5"):
        (out / name).write_text("earlier output")
    check_output_folder(out, "extract.json", own=("frames.parquet", "shard-*.h5"))  # an earlier output: fine
    (out / "notes.txt").write_text("the user's")
    with pytest.raises(DataError, match="notes.txt, which this stage does not write"):
        check_output_folder(out, "extract.json", own=("frames.parquet", "shard-*.h5"))
    (out / "notes.txt").unlink()
    # a sibling of the temporary names that is not ours is never deleted
    theirs = tmp_path / ".out.old"
    theirs.mkdir()
    (theirs / "backup.txt").write_text("the user's")
    with pytest.raises(DataError, match=r"\.out\.old: exists and was not left by this stage"):
        check_output_folder(out, "extract.json", own=("frames.parquet", "shard-*.h5"))
    theirs.rename(tmp_path / "kept")
    # a work folder left by a killed run is ours (marked), and goes; the new output has no mark
    with pytest.raises(KeyboardInterrupt):
        with replacing_folder(out) as work:
            assert (work / WORK_MARK).exists()
            shutil.copytree(work, tmp_path / "left")
            raise KeyboardInterrupt
    (tmp_path / "left").rename(tmp_path / ".out.tmp")  # as if killed before its clean-up
    check_output_folder(out, "extract.json", own=("frames.parquet", "shard-*.h5"))
    with replacing_folder(out) as work:
        (work / "extract.json").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["extract.json"]
    assert not (tmp_path / ".out.tmp").exists() and (tmp_path / "kept" / "backup.txt").exists()


def test_a_first_output_folder_warns_of_nothing(tmp_path, caplog):
    from pipeline.core.fileio import replacing_folder

    with caplog.at_level("WARNING"):
        with replacing_folder(tmp_path / "new" / "out") as work:
            (work / "extract.json").write_text("first")
    assert (tmp_path / "new" / "out" / "extract.json").read_text() == "first" and caplog.text == ""


def test_an_earlier_output_that_cannot_be_deleted_is_said_and_recognised_as_ours_next_time(tmp_path, monkeypatch,
                                                                                           caplog):
    from pipeline.core.fileio import check_output_folder, replacing_folder

    out = tmp_path / "out"
    out.mkdir()
    for name in ("extract.json", "frames.parquet"):
        (out / name).write_text("earlier output")
    real = shutil.rmtree

    def stuck(path, onerror=None, **kw):  # as an immutable frames.parquet (chattr +i) would be
        keep = Path(path) / "frames.parquet"
        if Path(path).name != ".out.old" or not keep.exists():
            return real(path, onerror=onerror, **kw)
        for p in Path(path).iterdir():
            if p != keep:
                p.unlink()
        onerror(os.unlink, str(keep), (PermissionError, PermissionError(1, "Operation not permitted"), None))

    monkeypatch.setattr(shutil, "rmtree", stuck)
    with replacing_folder(out) as work:
        (work / "extract.json").write_text("new")
    monkeypatch.setattr(shutil, "rmtree", real)
    assert (out / "extract.json").read_text() == "new"
    assert f"{tmp_path / '.out.old'}: could not delete {tmp_path / '.out.old' / 'frames.parquet'}" in caplog.text
    check_output_folder(out, "extract.json", own=("frames.parquet",))  # its own leftover: not refused
    with replacing_folder(out) as work:
        (work / "extract.json").write_text("newer")
    assert not (tmp_path / ".out.old").exists()


@pytest.mark.parametrize("torch_says, we_say", [
    ("[enforce fail at inline_container.cc:747] . open file failed with strerror: Operation not permitted",
     "cannot write (Operation not permitted)"),
    ("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file data/0: file write failed",
     "file write failed; is the disk full?)"),
])
def test_a_checkpoint_that_cannot_be_written_says_why_and_blames_the_disk_only_when_it_may_be(tmp_path, monkeypatch,
                                                                                                torch_says, we_say):
    import torch

    from pipeline.core.fileio import write_torch

    def refuse(obj, f):
        raise RuntimeError(torch_says)

    monkeypatch.setattr(torch, "save", refuse)
    with pytest.raises(OSError) as caught:
        write_torch(tmp_path / "m.pt", {})
    assert caught.value.filename == str(tmp_path / "m.pt") and caught.value.strerror.endswith(we_say)
    assert (caught.value.strerror.count("disk full") == 1) == we_say.endswith("full?)")
    assert not list(tmp_path.iterdir())


def test_a_lock_file_is_held_once_and_deleted_by_its_holder(tmp_path):
    from pipeline.core.errors import DataError
    from pipeline.core.fileio import hold_lock, release_lock

    path = tmp_path / ".out.lock"
    first = hold_lock(path, "busy")
    with pytest.raises(DataError, match="busy"):
        hold_lock(path, "busy")
    release_lock(path, first)
    assert not path.exists()
    release_lock(path, hold_lock(path, "busy"))  # free again


def test_a_failed_write_leaves_none_of_the_folders_it_made(tmp_path):
    from pipeline.core.fileio import atomic_write

    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "mine.txt").write_text("the user's")
    for target in (tmp_path / "new" / "deeper" / "out.json", tmp_path / "kept" / "sub" / "out.json"):
        with pytest.raises(OSError, match="disk full"):
            with atomic_write(target) as tmp:
                tmp.write_text("half")
                raise OSError(28, "disk full")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["kept", "kept/mine.txt"]
    with atomic_write(tmp_path / "new" / "deeper" / "out.json") as tmp:
        tmp.write_text("whole")
    assert (tmp_path / "new" / "deeper" / "out.json").read_text() == "whole"


def test_a_second_writer_of_the_same_output_folder_is_refused_and_the_first_completes(tmp_path):
    from pipeline.core.errors import DataError
    from pipeline.core.fileio import replacing_folder

    out = tmp_path / "reports" / "study"
    with replacing_folder(out) as work:
        (work / "study.md").write_text("first")
        with pytest.raises(DataError, match=r"study: another run is writing it now"):
            with replacing_folder(out):
                pass
        assert (work / "study.md").read_text() == "first"  # the second took nothing of the first's
    assert (out / "study.md").read_text() == "first"
    assert sorted(p.name for p in out.parent.iterdir()) == ["study"]  # no lock file left beside it
    with replacing_folder(out) as work:  # and the next run goes ahead
        (work / "study.md").write_text("second")
    assert (out / "study.md").read_text() == "second"
