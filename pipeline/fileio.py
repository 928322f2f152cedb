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
import shutil
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import DataError


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


def check_output_folder(out: str | Path, marker: str, inputs=()) -> None:
    """Refuse, before any work, an output folder that overlaps an input or that holds
    anything but a previous output of the same stage (recognised by its ``marker`` file)."""
    out = Path(out).resolve()
    for given in inputs:
        source = Path(given).resolve()
        if out == source or source in out.parents or out in source.parents:
            raise DataError(f"{out}: the output folder would overlap the input {source}: refusing (choose another --out)")
    if out.exists():
        if not out.is_dir():
            raise DataError(f"{out}: exists and is not a folder: refusing to replace it")
        if any(out.iterdir()) and not (out / marker).exists():
            raise DataError(f"{out}: holds files but no {marker}, so it is not an earlier output of this stage: "
                            "refusing to replace it (choose another --out, or empty it yourself)")


@contextmanager
def replacing_folder(out: str | Path):
    """Yield a temporary sibling folder to write an output folder into; on success it
    replaces ``out`` (the old one is removed only then), on error it is removed and
    ``out`` stays as it was. Check ``out`` first with :func:`check_output_folder`."""
    out = Path(out)
    work, old = out.with_name(f".{out.name}.tmp"), out.with_name(f".{out.name}.old")
    for leftover in (work, old):  # ours, from a run that was killed
        shutil.rmtree(leftover, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        yield work
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if out.exists():
        os.replace(out, old)
    os.replace(work, out)
    shutil.rmtree(old, ignore_errors=True)


def write_torch(path: str | Path, obj) -> None:
    """``torch.save`` of plain values and tensors, atomically; torch's own write errors
    (a full disk shows as a RuntimeError) become an OSError naming the file."""
    import torch

    with atomic_write(path) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as e:
            raise OSError(f"cannot write ({str(e).splitlines()[0][:120]}; is the disk full?)") from e


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


def folder_files(path: str | Path) -> list[Path]:
    """Every file below a folder, sorted: the order ``digest`` hashes them in."""
    return sorted(p for p in Path(path).rglob("*") if p.is_file())


def digest(path: str | Path, progress: bool = False, files: list[Path] | None = None) -> str:
    """SHA-256 of a file's bytes; of a folder, of its files' relative names and SHA-256s
    (``files``: the folder's ``folder_files``, when the caller has listed them already)."""
    from tqdm import tqdm

    path = Path(path)
    if not path.is_dir():
        return file_sha256(path)
    h = hashlib.sha256()
    files = folder_files(path) if files is None else files
    for f in tqdm(files, desc=f"hashing {path.name}", unit="file", disable=not progress, leave=False):
        h.update(f"{f.relative_to(path).as_posix()}\0{file_sha256(f)}\n".encode())
    return h.hexdigest()
