"""Hashing files and folders."""
import shutil

from pipeline.core.fileio import digest, file_sha256


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
