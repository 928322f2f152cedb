"""Digests of files and folders (SHA-256), and of a video as its decoder reads it.

Provenance records them, and a dataset's version is one."""
from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path


def file_sha256(path: str | Path, read=lambda n: None) -> str:
    """Hex SHA-256 of a file's bytes, read in blocks (``read`` is told each block's size)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            read(len(block))
    return h.hexdigest()


def folder_files(path: str | Path) -> list[Path]:
    """Every file below a folder, sorted: the order ``digest`` hashes them in. A folder that
    cannot be listed is an error naming it (``rglob`` passes over it without a word: the
    digest would leave its files out). Links to folders are not followed."""
    def unlisted(error: OSError):
        raise OSError(error.errno, f"{error.strerror}: cannot list this folder, whose files would be left out",
                      error.filename)

    if not os.path.isdir(path):  # no folder there: nothing in it (the callers say what is missing)
        return []
    found = []
    for folder, _, names in os.walk(path, onerror=unlisted):
        found.extend(p for p in (Path(folder) / n for n in names) if p.is_file())
    return sorted(found)


def combine(hashes: dict[str, str]) -> str:
    """A folder's digest from its files' SHA-256s (relative POSIX name -> hex): SHA-256 of
    every file's name and SHA-256, in ``folder_files`` order."""
    h = hashlib.sha256()
    for name in sorted(hashes, key=lambda n: tuple(n.split("/"))):  # Path order: by parts
        # surrogateescape: a name that is not UTF-8 hashes as its bytes on disk; a UTF-8 one as before
        h.update(f"{name}\0{hashes[name]}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def digest(path: str | Path, progress: bool = False, files: list[Path] | None = None) -> str:
    """SHA-256 of a file's bytes; of a folder, of its files' relative names and SHA-256s
    (``files``: the folder's ``folder_files``, when the caller has listed them already)."""
    from tqdm import tqdm

    path = Path(path)
    if not path.is_dir():
        return file_sha256(path)
    files = folder_files(path) if files is None else files
    total = sum(f.stat().st_size for f in files) if progress else 0
    with tqdm(total=total, desc=f"hashing {path.name} ({len(files)} files)", unit="B", unit_scale=True,
              disable=not progress, leave=False) as bar:  # in bytes: one huge file moves it too
        return combine({f.relative_to(path).as_posix(): file_sha256(f, bar.update) for f in files})


class HashingReader(io.BufferedIOBase):
    """A file read by someone else (OpenCV's video decoder reads through it) and hashed on
    the way, so that hashing costs no second read: the bytes read in order extend the
    SHA-256, and :meth:`sha256` reads only what the reader skipped."""

    def __init__(self, path: str | Path):
        super().__init__()
        self.path, self._file, self._hash = Path(path), open(path, "rb"), hashlib.sha256()
        self._pos = self._hashed = 0

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        if self._pos <= self._hashed < self._pos + len(data):
            self._hash.update(memoryview(data)[self._hashed - self._pos:])
            self._hashed = self._pos + len(data)
        self._pos += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = self._file.seek(offset, whence)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def sha256(self) -> str:
        """The file's SHA-256 (reading what was never read), after which it is closed."""
        self._file.seek(self._hashed)
        for block in iter(lambda: self._file.read(1 << 20), b""):
            self._hash.update(block)
        self.close()
        return self._hash.hexdigest()

    def close(self) -> None:
        self._file.close()
        super().close()
