"""Writing files so that no reader ever sees half of one.

Every output is written under a hidden temporary name in its own folder and renamed into
place when complete (a rename within one file system is atomic), so a crash or a full
disk leaves the previous file or nothing, never a truncated file a later stage could take
for a finished one.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import fnmatch
import json
import logging
import os
import stat
import shutil
from contextlib import contextmanager
from pathlib import Path

from pipeline.core.errors import DataError


def special_file(path: str | Path) -> str | None:
    """What ``path`` is when it exists but is neither a regular file nor a folder ("a named
    pipe", "a device", "a socket"), else None: reading a pipe waits for a writer, a device
    never ends, so every input read whole is asked first."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a socket" if stat.S_ISSOCK(mode) else None


def require_regular(path: str | Path, what: str) -> None:
    """Refuse, in one line, an input ``what`` that is a pipe, device or socket."""
    kind = special_file(path)
    if kind:
        raise DataError(f"{path}: {kind}, not a file: cannot be read as {what}")


def temp_path(path: str | Path) -> Path:
    """Where ``path`` is written until it is complete: ``.<name>.tmp`` next to it."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp")


@contextmanager
def names_file(path: str | Path, temporary: str | Path | None = None):
    """Re-raise an OSError that names no file (a write to a full disk) or only ``temporary``
    as one naming ``path``, the file the user knows."""
    try:
        yield
    except OSError as e:
        if e.filename not in (None, None if temporary is None else str(temporary)):
            raise
        raise OSError(e.errno, e.strerror or str(e), str(path)) from None


@contextmanager
def atomic_write(path: str | Path):
    """Yield a temporary path to write; on success it replaces ``path``, on error it is removed
    with the folders made for it. Writers that pick a format by extension (matplotlib) must
    be given the format explicitly."""
    path = Path(path)
    made = [d for d in (path.parent, *path.parent.parents) if not d.exists()]  # innermost first
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, done = temp_path(path), False
    try:
        with names_file(path, tmp):  # a full disk, ...: name the file being written, not its temporary name
            yield tmp
            os.replace(tmp, path)
            done = True
    finally:
        tmp.unlink(missing_ok=True)
        for folder in () if done else made:  # a failed write leaves no empty folder of ours behind
            with contextlib.suppress(OSError):  # not empty: something else lives there now
                folder.rmdir()


#: In a folder predict or export-abaw writes into: the files they wrote there, and their
#: SHA-256 (``pipeline.predict.outputs``; ``mtaffect info`` reads it too).
OUTPUTS_LIST = ".mtaffect-outputs.json"

#: Inside a folder being written by :func:`replacing_folder`: says the folder is ours.
WORK_MARK = ".mtaffect-work"


def check_output_folder(out: str | Path, marker: str, inputs=(), own=(), option: str = "--out") -> None:
    """Refuse, before any work, an output folder that overlaps an input or that holds
    anything but a previous output of the same stage: its ``marker`` file and files
    matching the ``own`` patterns (e.g. ``shard-*.h5``), nothing else. The same for the
    temporary siblings :func:`replacing_folder` would clear. ``option``: how the user named it."""
    out = Path(out).resolve()
    for given in inputs:
        source = Path(given).resolve()
        if out == source or source in out.parents or out in source.parents:
            raise DataError(f"{out}: the output folder would overlap the input {source}: refusing (choose another "
                            f"{option})")
    if out.exists():
        if not out.is_dir():
            raise DataError(f"{out}: exists and is not a folder: refusing to replace it")
        if any(out.iterdir()) and not (out / marker).exists():
            raise DataError(f"{out}: holds files but no {marker}, so it is not an earlier output of this stage: "
                            f"refusing to replace it (choose another {option}, or empty it yourself)")
        foreign = [p.name for p in sorted(out.iterdir())
                   if p.name != marker and not any(fnmatch.fnmatch(p.name, pattern) for pattern in own)]
        if foreign:
            raise DataError(f"{out}: holds {', '.join(foreign[:3])}, which this stage does not write: refusing to "
                            f"replace the folder (move them away, or choose another {option})")
    for sibling in (out.with_name(f".{out.name}.tmp"), out.with_name(f".{out.name}.old")):
        if sibling.exists() and not ((sibling / WORK_MARK).exists() or (sibling / marker).exists()):
            raise DataError(f"{sibling}: exists and was not left by this stage: refusing to delete it "
                            f"(move it away, or choose another {option})")


@contextmanager
def output_lock(out: str | Path, busy: str = ""):
    """Hold ``.<out>.lock`` beside ``out`` while writing it: a second run is refused (``busy``)
    instead of removing the first one's work folder; the lock file goes at the end."""
    out = Path(out)
    path = out.with_name(f".{out.name}.lock")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        lock = hold_lock(path, busy or f"{out}: another run is writing it now; wait for it to finish, then run again")
    except OSError as e:
        raise DataError(f"{out}: cannot write there ({e.strerror or e})") from None
    try:
        yield
    finally:
        release_lock(path, lock)


@contextmanager
def replacing_folder(out: str | Path, locked: bool = False):
    """Yield a sibling folder to write ``out`` into; on success it replaces ``out`` (removed
    only then), on error it goes and ``out`` stays. Check ``out`` with :func:`check_output_folder`.
    It holds :func:`output_lock` meanwhile, unless the caller does already (``locked``)."""
    out = Path(out)
    work, old = out.with_name(f".{out.name}.tmp"), out.with_name(f".{out.name}.old")
    with contextlib.nullcontext() if locked else output_lock(out):
        for leftover in (work, old):  # ours, from a run that was killed (check_output_folder made sure)
            shutil.rmtree(leftover, ignore_errors=True)
        work.mkdir(parents=True)
        (work / WORK_MARK).touch()
        try:
            yield work
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        (work / WORK_MARK).unlink()
        if out.exists():
            os.replace(out, old)
        os.replace(work, out)
    kept = []
    if old.exists():  # a first run has no earlier output to remove
        shutil.rmtree(old, onerror=lambda _f, path, _e: kept.append(path))
    if kept:  # e.g. an immutable file: the new output is in place, the old one only partly gone
        with contextlib.suppress(OSError):
            (old / WORK_MARK).touch()  # ours: the next run may delete it
        logging.getLogger("mtaffect").warning("%s: could not delete %s of the earlier output: remove it", old, kept[0])


def hold_lock(path: Path, busy: str) -> int:
    """Take the exclusive lock of ``path`` (a folder, or a lock file created here) without
    waiting, and return its descriptor: the system lets go when it is closed or the process
    ends, even killed. Another process holding it is ``DataError(busy)``. A lock file may
    be deleted by its holder before it lets go (:func:`release_lock`)."""
    folder = Path(path).is_dir()
    for _ in range(10):
        lock = os.open(path, os.O_RDONLY if folder else os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)
            raise DataError(busy) from None
        try:
            if folder or os.path.samestat(os.fstat(lock), os.stat(path)):
                return lock
        except FileNotFoundError:
            pass
        os.close(lock)  # the file its last holder deleted as we opened it: take the new one
    raise DataError(busy)


def release_lock(path: Path, lock: int) -> None:
    """Delete a lock file :func:`hold_lock` took (no file is left beside an output), then let go."""
    with contextlib.suppress(OSError):
        os.unlink(path)
    os.close(lock)


def _nearly_full(folder: Path) -> bool:
    """Whether the file system of ``folder`` has (almost) no space left for its user."""
    try:
        fs = os.statvfs(folder)
    except OSError:
        return False
    return fs.f_bavail * fs.f_frsize < 1 << 20


def write_torch(path: str | Path, obj) -> None:
    """``torch.save`` of plain values and tensors, atomically; torch's own write errors
    (a full disk shows as a RuntimeError) become an OSError naming the file."""
    import torch

    with atomic_write(path) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as e:  # torch's text: "... open file failed with strerror: <the OS's words>"
            if _nearly_full(tmp.parent):  # a full disk: torch says only "unexpected pos 576 vs 534"
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) from None
            text = str(e).splitlines()[0]
            why = text.rsplit("strerror: ", 1)[1] if "strerror: " in text else text[:120]
            hint = "; is the disk full?" if "space" in why.lower() or "strerror" not in text else ""
            raise OSError(f"cannot write ({why}{hint})") from e


def write_text(path: str | Path, text: str) -> None:
    """``text`` to ``path``, atomically."""
    with atomic_write(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, data) -> None:
    """``data`` as indented JSON (a fixed layout: same data, same bytes), atomically."""
    write_text(path, json.dumps(data, indent=2) + "\n")


def read_only(path: str | Path) -> bool:
    """Whether the user made ``path`` read-only (chmod 444): root may write anything, the mode
    says what was meant."""
    return not os.access(path, os.W_OK) or not os.stat(path).st_mode & stat.S_IWUSR
