"""Bringing back a project whose ``dvc.lock`` a kill tore (README, "Interruptions").

DVC rewrites ``dvc.lock`` in place after every stage (and its run-lock file
``.dvc/tmp/rwlock`` around it): a ``kill -9`` in the few milliseconds of that write leaves
the file cut short or empty, and every DVC command then stops on it. Nothing is lost
though: DVC records each finished stage in its run cache *before* it writes the lock
(``dvc/stage``: ``save`` then ``dump``), so a lock brought back from git (or none at all)
and a ``dvc repro`` restore every finished stage from that cache without running it again.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import yaml

from pipeline.core.errors import DataError
from pipeline.core.fileio import atomic_write, write_text

#: A ``dvc.lock`` that records no stage: for DVC the same as none (every stage to run or restore).
NO_STAGES = "schema: '2.0'\nstages: {}\n"


def lock_problem(text: str) -> str | None:
    """Why a ``dvc.lock`` text is not one DVC can read, or None."""
    from dvc.schema import COMPILED_LOCKFILE_SCHEMA
    from voluptuous import Invalid

    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as e:
        return f"not valid YAML ({' '.join(str(e).split())[:100]})"
    if not isinstance(data, dict):
        return "empty" if data is None else "not a mapping"
    try:
        COMPILED_LOCKFILE_SCHEMA(data)
    except Invalid as e:
        return f"incomplete ({str(e)[:100]})"
    for name, stage in (data.get("stages") or {}).items():  # a cut at a line's end passes the schema
        for item in (stage.get("deps") or []) + (stage.get("outs") or []):
            if not (re.fullmatch(r"[0-9a-f]{32}(\.dir)?", str(item.get("md5", ""))) and "size" in item):
                return f"cut short (stage {name}: {item.get('path')} has no whole hash and size)"
    if not text.endswith("\n"):
        return "cut short (its last line is not whole)"
    return None


def _conflict_line(text: str) -> int | None:
    """The line (from 1) where git's merge-conflict markers start in ``text``, or None."""
    lines = text.splitlines()
    starts = [n for n, line in enumerate(lines, 1) if re.match(r"<{7}( |$)", line)]
    ends = any(re.match(r">{7}( |$)", line) for line in lines)
    return starts[0] if starts and ends else None


def _dvc_running(project: Path) -> bool:
    """Whether a DVC command holds the project's lock (``zc.lockfile``, as DVC takes it)."""
    import zc.lockfile

    lock = project / ".dvc" / "tmp" / "lock"
    if not lock.exists():
        return False
    try:
        zc.lockfile.LockFile(str(lock)).close()
    except zc.lockfile.LockError:
        return True
    return False


def _from_git(project: Path, lock: Path) -> str | None:
    """``lock`` as the last commit holds it, or None (no git, not committed)."""
    try:
        proc = subprocess.run(["git", "show", f"HEAD:./{lock.relative_to(project).as_posix()}"], cwd=project,
                              capture_output=True, text=True)
    except OSError:
        return None
    return proc.stdout if proc.returncode == 0 else None


def _refuse_special(lock: Path, where: str) -> None:
    """Refuse, before reading it, a ``dvc.lock`` (through its links) that is not a regular
    file: reading a named pipe waits forever for a writer, a folder or device is no lock."""
    try:
        mode = os.stat(lock).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a folder" if stat.S_ISDIR(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a special file")
        raise DataError(f"{lock}{where}: {kind}, not a regular file: not read, nothing changed; remove it "
                        "(repair-lock then brings dvc.lock back from the last commit)")


def repair(project: str | Path = ".") -> list[str]:
    """Make every pipeline's ``dvc.lock`` (the project's, the study's) and DVC's run-lock
    file readable again; returns what was done (nothing when all are fine). Refuses while a
    DVC command is running in ``project``."""
    project = Path(project)
    if not (project / ".dvc").is_dir():
        raise DataError(f"{project.resolve()}: not a DVC project (no .dvc folder)")
    if _dvc_running(project):
        raise DataError(f"{project / '.dvc/tmp/lock'}: a DVC command is running in this project; "
                        "let it finish (or stop it) first")
    done = []
    # the pipelines' locks: the main one and those beside another dvc.yaml (the study's), up to
    # two folders down (a walk through the data would take long)
    others = sorted(p.with_name("dvc.lock") for p in [*project.glob("*/dvc.yaml"), *project.glob("*/*/dvc.yaml")]
                    if not any(part.startswith(".") for part in p.relative_to(project).parts))
    for lock in [project / "dvc.lock", *(p for p in others if p.exists() or p.is_symlink())]:
        done += _repair_lock(project, lock)
    rwlock = project / ".dvc" / "tmp" / "rwlock"
    if rwlock.exists():
        try:
            json.loads(rwlock.read_text())
        except ValueError:
            rwlock.unlink()
            done.append(f"{rwlock}: DVC's record of running stages was cut short; removed (no DVC is running)")
    return done


def _repair_lock(project: Path, lock: Path) -> list[str]:
    """Make one pipeline's ``lock`` readable again: from the last commit, or set aside."""
    done = []
    try:
        target = lock.resolve()  # a link (to a shared file): the file is repaired, the link stays
    except RuntimeError:  # links that lead back to themselves
        raise DataError(f"{lock}: a loop of symbolic links: point it at a file (or remove it), then repair") from None
    where = f" (a link to {target})" if lock.is_symlink() else ""
    if lock.is_symlink() and not target.parent.is_dir():
        raise DataError(f"{lock}{where}: the link's folder {target.parent} does not exist, so there is no dvc.lock "
                        "to read and none can be restored there: point the link at a file in an existing folder "
                        "(or remove it), then repair")
    _refuse_special(lock, where)
    if not lock.exists():  # deleted (or a link to nothing): the committed one comes back
        committed = _from_git(project, lock)
        if committed is not None and lock_problem(committed) is None:
            write_text(target, committed)
            done.append(f"{lock}{where}: missing; restored from the last commit")
    elif (line := _conflict_line(text := lock.read_text(errors="replace"))):
        raise DataError(f"{lock}{where}: holds git merge-conflict markers (line {line}): an unfinished merge, not "
                        "a torn file; nothing changed: resolve the merge (e.g. git checkout --theirs dvc.lock, "
                        "then dvc repro)")
    elif (problem := lock_problem(text)):
        committed = _from_git(project, lock)
        restore = committed is not None and lock_problem(committed) is None
        links = target.stat().st_nlink - 1  # hard links: a new file comes in this name only, they keep the torn one
        others = (f"; {links} other hard link{'s' if links > 1 else ''} to the torn file (another name of it) still "
                  f"hold{'' if links > 1 else 's'} the torn text: only {lock} was repaired") if links > 0 else ""
        name = lock.relative_to(project).as_posix().replace("/", "_")  # study/dvc.lock: study_dvc.lock.torn
        aside = project / ".dvc" / "tmp" / f"{name}.torn"
        aside.parent.mkdir(parents=True, exist_ok=True)
        n = 1
        while aside.exists():  # an earlier repair's: kept
            n += 1
            aside = aside.with_name(f"{name}.torn.{n}")
        if restore or where:  # a link stays: its file gets a lock of no stages if none is committed
            with atomic_write(target) as tmp:  # replaced last, at once: a failure (a full disk) changes nothing
                tmp.write_text(committed if restore else NO_STAGES)
                with atomic_write(aside) as copy:
                    shutil.copyfile(target, copy)
        else:
            lock.replace(aside)  # one rename: done or not
        if restore:
            done.append(f"{lock}{where}: {problem}; restored from the last commit (the torn one is {aside}){others}")
        elif where:
            done.append(f"{lock}{where}: {problem}; kept as {aside}, the file now records no stage "
                        f"(no readable committed version to restore){others}")
        else:
            done.append(f"{lock}: {problem}; moved to {aside} (no readable committed version to restore){others}")
    return done
