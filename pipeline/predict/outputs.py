"""Files written into a folder the user shares with us (``predict`` and ``export-abaw``
``--out``): what a run may replace, and what it must never touch.

Such a folder may hold the user's own files: a picture called ``clip.png`` beside
``clip.avi``, a table edited by hand. Each command records what it wrote there, with the
SHA-256 of the bytes, in ``.mtaffect-outputs.json``. A later run may replace a file only
while it is exactly what an earlier run of the same command wrote; any other file of that
name stops the run before any work, naming it. Two outputs of one name are refused the same
way, and a killed run's temporary files (``.<name>.tmp``) are removed by the next run that
writes the same name.
"""
from __future__ import annotations

import glob
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.core.errors import DataError
from pipeline.core.fileio import OUTPUTS_LIST, hold_lock, read_only, temp_path, write_json
from pipeline.core.hashing import file_sha256

NAME_MAX = 255  # bytes of a file name on the usual file systems
#: The folders this process holds, until it ends.
HELD: dict = {}


@dataclass
class OutputFolder:
    """An output folder and the record of what ``command`` wrote into it."""

    folder: Path
    command: str
    entries: dict = field(default_factory=dict)  # relative name -> {"command", "sha256"}
    made: list = field(default_factory=list)  # the folders :meth:`lock` created, deepest first

    def __post_init__(self):
        self.folder = Path(self.folder)
        manifest = self.folder / OUTPUTS_LIST
        if manifest.exists():
            try:
                self.entries = dict(json.loads(manifest.read_text())["files"])
                if not all(isinstance(e, dict) for e in self.entries.values()):
                    raise ValueError("an entry that is no record")
            except (ValueError, KeyError, TypeError, OSError):
                raise DataError(f"{manifest}: unreadable record of mtaffect's earlier outputs (delete it only if "
                                "nothing in the folder is yours to keep)") from None

    def name(self, path: Path) -> str:
        return Path(path).relative_to(self.folder).as_posix()

    def ours(self, path: Path) -> bool:
        """Whether ``path`` is still exactly what an earlier run of this command wrote."""
        entry = self.entries.get(self.name(path))
        return (entry is not None and entry.get("command") == self.command and Path(path).is_file()
                and entry.get("sha256") == file_sha256(path))

    def claim(self, paths: list[Path]) -> None:
        """Before any work: refuse an output written twice, a file where an output's folder
        goes, and an existing file (or folder) of an output's name that is not ours (then
        :meth:`lock` before writing)."""
        paths = [Path(p) for p in paths]
        for i, path in enumerate(paths):
            if path in paths[:i]:
                raise DataError(f"{path}: two inputs would write this same file (predict or export them apart)")
            longest = len(temp_path(path).name.encode()) + len(".mp4")  # the overlay's temporary name
            if longest > NAME_MAX:
                raise DataError(f"{path}: too long a name to write (its temporary name would be {longest} bytes, "
                                f"the file system allows {NAME_MAX}): rename the input")
            for folder in reversed(path.parents):  # e.g. AU_Set/ of an export
                if folder.exists() and not folder.is_dir():
                    raise DataError(f"{folder}: a file is where the folder {folder.name}/ goes: move it, or "
                                    "choose another --out")
        for path in paths:
            if path.exists() and not self.ours(path):
                raise DataError(f"{path}: exists and was not written by an earlier `mtaffect {self.command}`: "
                                "refusing to replace it (choose another --out, or move the file)")
            if path.is_file() and read_only(path):  # the user protected it: a rename would not ask
                raise DataError(f"{path}: the file is read-only: refusing to replace it (make it writable first, "
                                "or choose another --out)")

    def lock(self, paths: list[Path]) -> None:
        """Before writing ``paths`` (claimed): hold the folder until this process ends (the
        system lets go even after a kill; two runs writing into one folder would take each
        other's temporaries and record bytes that are not the ones on disk), then remove
        the temporaries a killed run left under those names."""
        try:
            self.made = [f for f in (self.folder, *self.folder.parents) if not f.exists()]
            self.folder.mkdir(parents=True, exist_ok=True)
            if self.folder.resolve() not in HELD:  # else this process's own, from an earlier command
                # the folder itself: no file of ours in it
                HELD[self.folder.resolve()] = hold_lock(self.folder, (
                    f"{self.folder}: another mtaffect predict or export-abaw is writing into this folder: "
                    "wait for it to finish, or choose another --out"))
        except OSError as e:
            raise DataError(f"{self.folder}: cannot write there ({e.strerror or e})") from None
        for path in map(Path, paths):
            for stale in path.parent.glob(f"{glob.escape(temp_path(path).name)}*"):  # a killed run's
                stale.unlink()

    @contextmanager
    def writing(self, paths: list[Path]):
        """:meth:`lock`, then a run whose failure leaves no folder this created behind (a
        refused input must not leave an empty --out); one it created that holds a file
        now stays, and one the user had is never removed."""
        self.lock(paths)
        try:
            yield
        except BaseException:
            key = self.folder.resolve()
            for folder in self.made:
                try:
                    folder.rmdir()
                except OSError:  # not empty: an earlier input's outputs, or someone else's file
                    break
                if folder == self.made[0] and key in HELD:  # its lock goes with it
                    os.close(HELD.pop(key))
            raise

    def record(self, path: Path, **about) -> None:
        """Note that this run wrote ``path`` (complete, under its final name), with ``about``
        it (e.g. ``input="folder"``). When the note cannot be written (a full disk), the file
        goes too: unrecorded, the next run would take it for the user's and refuse to replace it."""
        name = self.name(path)
        self.entries[name] = {"command": self.command, "sha256": file_sha256(path), **about}
        try:
            write_json(self.folder / OUTPUTS_LIST, {"files": dict(sorted(self.entries.items()))})
        except BaseException:
            del self.entries[name]
            Path(path).unlink(missing_ok=True)
            raise


def recorded(path: Path, command: str) -> dict:
    """What ``command`` recorded of ``path`` while the file is still exactly what it wrote;
    empty when it did not write it, or it changed since, or its record is unreadable."""
    path = Path(path)
    try:
        folder = OutputFolder(path.parent, command)
    except DataError:
        return {}
    return folder.entries[folder.name(path)] if folder.ours(path) else {}


def earlier_outputs(folder: Path) -> tuple[set[Path], list[str]]:
    """The files directly in ``folder`` that its outputs list says predict or export-abaw
    wrote there and that still hold those bytes (one the user edited since is theirs), and
    the commands that wrote them. An unreadable list leaves nothing out: never a guess."""
    try:
        entries = dict(json.loads((Path(folder) / OUTPUTS_LIST).read_text())["files"])
    except (ValueError, KeyError, TypeError, OSError):
        return set(), []
    written, commands = set(), set()
    for name, entry in entries.items():
        path = Path(folder) / name
        if not (isinstance(entry, dict) and path.parent == Path(folder) and path.is_file()):
            continue
        try:
            same = entry.get("sha256") == file_sha256(path)
        except OSError:  # unreadable now: an input, whose own error names it
            same = False
        if same:
            written.add(path)
            commands.add(str(entry.get("command")))
    return written, sorted(commands)


def check_out_option(out: str) -> Path:
    """``--out`` as given: an empty string would mean the current folder without saying so;
    a folder a DVC stage writes would lose our files on its next ``dvc repro``."""
    if not str(out).strip():
        raise DataError("--out: empty path (name the folder to write into, e.g. --out predictions)")
    owner = pipeline_output(Path(out))
    if owner:
        raise DataError(f"--out {out}: inside {owner[1]}, an output of the pipeline's stage {owner[0]}: the next "
                        "`dvc repro` replaces it, and what is written there with it: choose another folder")
    return Path(out)


def pipeline_output(path: Path) -> tuple[str, str] | None:
    """(stage, output) of the DVC project holding ``path`` whose recorded output (its
    ``dvc.lock``) is ``path`` or holds it; None when no stage writes there."""
    import yaml

    path = path.absolute()
    root = next((p for p in [path, *path.parents] if (p / ".dvc").is_dir()), None)
    if root is None or not (root / "dvc.lock").is_file():
        return None
    try:
        stages = yaml.load((root / "dvc.lock").read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))["stages"]
        outs = [(name, o["path"]) for name, stage in stages.items() for o in stage.get("outs", [])]
    except (OSError, ValueError, yaml.YAMLError, KeyError, TypeError):
        return None  # a torn lock: `mtaffect repair-lock` says so, not this
    return next(((name, out) for name, out in outs if path.is_relative_to(root / out)), None)
