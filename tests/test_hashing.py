"""Digests of files and folders."""
import shutil

import pytest

from pipeline.core.hashing import digest, file_sha256


def test_folder_digest_follows_names_and_bytes_not_location(tmp_path):
    a = tmp_path / "a"
    (a / "sub").mkdir(parents=True)
    (a / "x.bin").write_bytes(b"one")
    (a / "sub" / "y.bin").write_bytes(b"two")
    b = tmp_path / "elsewhere" / "b"
    shutil.copytree(a, b)
    assert digest(a) == digest(b)  # relocation keeps it
    assert digest(a / "x.bin") == file_sha256(a / "x.bin")
    (b / "sub" / "y.bin").write_bytes(b"TWO")
    assert digest(a) != digest(b)
    (b / "sub" / "y.bin").write_bytes(b"two")
    (b / "sub" / "y.bin").rename(b / "sub" / "z.bin")
    assert digest(a) != digest(b)


def test_a_folder_digest_shows_its_progress_in_bytes_read(tmp_path, monkeypatch):
    import tqdm

    (tmp_path / "big.bin").write_bytes(b"x" * 3_000_000)  # three blocks: the bar moves within the file
    (tmp_path / "small.bin").write_bytes(b"y" * 7)
    bars, real = [], tqdm.tqdm
    monkeypatch.setattr(tqdm, "tqdm", lambda *a, **k: bars.append(real(*a, **k)) or bars[-1])
    updates = []
    digest(tmp_path, progress=True)
    bar = bars[0]
    assert bar.total == 3_000_007 and bar.unit == "B" and bar.n == 3_000_007
    monkeypatch.setattr(tqdm, "tqdm", real)
    file_sha256(tmp_path / "big.bin", updates.append)
    assert updates == [1 << 20, 1 << 20, 3_000_000 - 2 * (1 << 20)]


def test_a_folder_that_cannot_be_listed_stops_the_listing_naming_it(tmp_path, monkeypatch):
    """rglob passes over a folder it may not list: the digest would leave its files out."""
    import os

    from pipeline.core.hashing import folder_files

    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "f").write_text("x")
    (tmp_path / "g").write_text("y")
    (tmp_path / "linked").symlink_to(tmp_path / "sub")  # links to folders: not followed, as before
    assert folder_files(tmp_path) == [tmp_path / "g", tmp_path / "sub" / "f"]
    scandir = os.scandir

    def denied(path="."):
        if os.fspath(path) == str(tmp_path / "sub"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", denied)
    with pytest.raises(OSError, match="cannot list this folder") as error:
        folder_files(tmp_path)
    assert error.value.filename == str(tmp_path / "sub")
