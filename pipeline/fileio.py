"""Writing files so that no reader ever sees half of one, and hashing them.

Every output is written under a hidden temporary name in its own folder and renamed into
place when complete (a rename within one file system is atomic), so a crash or a full
disk leaves the previous file or nothing, never a truncated file a later stage could take
for a finished one.
"""
from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path


def temp_path(path: str | Path) -> Path:
    """Where ``path`` is written until it is complete: ``.<name>.tmp`` next to it."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp")


@contextmanager
def atomic_write(path: str | Path):
    """Yield a temporary path to write; on success it replaces ``path``, on error it is removed.

    The parent folder is created. Writers that need a file extension to pick a format
    (matplotlib) must be given the format explicitly.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    """``text`` to ``path``, atomically."""
    with atomic_write(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, data) -> None:
    """``data`` as indented JSON (a fixed layout: same data, same bytes), atomically."""
    write_text(path, json.dumps(data, indent=2) + "\n")


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
