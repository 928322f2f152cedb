"""Reading provenance back (``mtaffect info``): the records of the stage runs that wrote a
file, and the git commit that holds the code they name (``pipeline.core.provenance``
writes them)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from pipeline.core.errors import CheckpointError, DataError
from pipeline.core.fileio import OUTPUTS_LIST
from pipeline.core.hashing import file_sha256
from pipeline.core.provenance import FORMAT, ROOT, blob_id


def _record_folders(path: Path) -> list[Path]:
    """The ``provenance`` folders of the projects around ``path`` and the working directory."""
    found = []
    for start in (path.resolve().parent, Path.cwd().resolve()):
        for folder in (start, *start.parents):
            if (folder / "provenance").is_dir() and folder / "provenance" not in found:
                found.append(folder / "provenance")
    return found


def _records(folders: list[Path], damaged: list[str]):
    """(file, record) of every readable record in ``folders``; a folder that cannot be listed
    goes to ``damaged`` (its records could have named the file)."""
    def unlisted(error: OSError):
        damaged.append(f"{error.filename} ({error.strerror}: a folder that cannot be listed)")

    files = []
    for folder in folders:
        found = [Path(d) / n for d, _, names in os.walk(folder, onerror=unlisted) for n in names if n.endswith(".json")]
        files.extend(sorted(found))
    return _read_records(files, damaged)


def _read_records(files, damaged: list[str]):
    """(file, record) of each of ``files`` that is a record; each that is none goes to
    ``damaged`` as ``file (why)``."""
    for file in files:
        try:
            rec = json.loads(file.read_text())
        except (ValueError, OSError) as e:
            damaged.append(f"{file} ({str(e).splitlines()[0][:80]})")
            continue
        if not (isinstance(rec, dict) and rec.get("format") == FORMAT):
            damaged.append(f"{file} (not a provenance record of format {FORMAT})")
        elif (wrong := malformed(rec)) is not None:
            damaged.append(f"{file} (a provenance record whose {wrong}: edited by hand?)")
        else:
            yield file, rec


def malformed(rec: dict) -> str | None:
    """What of a record (``pipeline.core.provenance.write``'s layout) is not as written, or None."""
    if not isinstance(rec.get("stage"), str):
        return "stage is missing"
    for key in ("params", "code", "inputs", "outputs"):
        if not isinstance(rec.get(key), dict):
            return f"{key} is not a mapping"
    if not all(isinstance(v, str) for v in rec["code"].values()):
        return "code holds something else than blob ids"
    for key, digests in (("inputs", (str,)), ("outputs", (str, type(None)))):  # an output folder: None
        for name, entry in rec[key].items():
            if not (isinstance(entry, dict) and isinstance(entry.get("path"), str)
                    and "sha256" in entry and isinstance(entry["sha256"], digests)):
                return f"{key[:-1]} {name!r} lacks its path or sha256"
    return None


def resolve(record_file: Path, path: str) -> Path:
    """A path a record holds (relative to the record's folder) as a path on this machine."""
    return (record_file.parent / path).resolve()


def find(path: str | Path) -> tuple[list[tuple[Path, dict]], list[str]]:
    """The records of the stage runs that wrote ``path`` (as the output they name, inside a
    folder they wrote, or a copy of one of their files, found by its SHA-256); for a model
    bundle, then its members'. Records are looked for in the ``provenance/`` folders of
    the projects around the file and around the working directory. Also returns the
    record files that could not be read (``file (why)``): one of them may have named it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if not path.is_file() and not path.is_dir():
        raise DataError(f"{path}: not a regular file or folder")
    if path.suffix == ".json" and path.is_file():  # a record itself (one written elsewhere with --provenance)
        own = list(_read_records([path], []))
        if own:
            return own, []
    target, sha = path.resolve(), file_sha256(path) if path.is_file() else None  # a folder: by its path only
    folders = _record_folders(path)
    damaged: list[str] = []
    records = list(_records(folders, damaged))

    def wrote(rec_file, rec, wanted=None, digest=None):
        for out in rec["outputs"].values():
            where = resolve(rec_file, out["path"])
            inside = wanted is not None and (where == wanted or where in wanted.parents  # a file of an output folder
                                             or (sha is None and wanted in where.parents))  # a folder of outputs
            if inside or (digest is not None and out["sha256"] == digest):
                return True
        return False

    found = [(f, r) for f, r in records if wrote(f, r, wanted=target)] or \
        [(f, r) for f, r in records if sha is not None and wrote(f, r, digest=sha)]
    if not found:
        by_command = _listed_output(path)
        if by_command:  # predict and export-abaw list their files instead of recording a run
            raise DataError(f"{path}: written by `mtaffect {by_command}` (listed in {path.parent / OUTPUTS_LIST}), "
                            "which keeps no provenance record: `mtaffect info` the model bundle it used")
        where = ", ".join(str(f) for f in folders) or "no provenance/ folder around it or the working directory"
        unread = f"; {len(damaged)} record(s) could not be read, e.g. {damaged[0]}" if damaged else ""
        raise DataError(f"{path}: no provenance record names it (looked in {where}{unread}); was it written by "
                        "a stage? (A record written elsewhere with --provenance: give that file to `mtaffect info`)")
    for member in _bundle_members(path):
        found += [(f, r) for f, r in records if wrote(f, r, digest=member) and (f, r) not in found]
    return found, damaged


def _listed_output(path: Path) -> str | None:
    """The command that wrote ``path``, by the list of its folder (None: not listed)."""
    try:
        entry = json.loads((path.parent / OUTPUTS_LIST).read_text())["files"].get(path.name)
        return str(entry["command"]) if isinstance(entry, dict) and entry.get("sha256") == file_sha256(path) else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _bundle_members(path: Path) -> list[str]:
    """The SHA-256 of a model bundle's members' checkpoints (nothing for other files)."""
    if path.suffix != ".pt":
        return []
    from pipeline.training.models import read_torch_file

    try:
        obj = read_torch_file(path, "model file")
    except CheckpointError:
        return []
    members = obj.get("members", []) if isinstance(obj, dict) else []
    return [m["sha256"] for m in members if isinstance(m, dict) and "sha256" in m]


def label_schema_of(path: str | Path) -> str | None:
    """The label schema an artefact records (a checkpoint or bundle, a soft-label cache or
    features file, an index), described; None for any other file."""
    path = Path(path)
    try:
        if path.suffix == ".pt":
            from pipeline.training.models import read_torch_file, recorded_schema

            obj = read_torch_file(path, "model file")
            record = obj.get("schema", obj.get("config", {}).get("schema")) if isinstance(obj, dict) else None
            return None if record is None else recorded_schema(record, path).describe()
        if path.suffix == ".h5":
            import h5py

            from pipeline.training.models import attr_schema

            with h5py.File(path, "r") as h5:
                text = h5.attrs.get("label_schema")
            return None if text is None else attr_schema(text, path, "file").describe()
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            from pipeline.core.schema import LabelSchema

            text = (pq.read_schema(path).metadata or {}).get(b"label_schema")
            return None if text is None else LabelSchema.from_dict(json.loads(text), str(path)).describe()
    except (OSError, ValueError, AttributeError):  # not such a file, or damaged: the records say the rest
        return None
    return None


def _git(root: Path, *args: str) -> str | None:
    import subprocess

    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout


def code_version(code: dict[str, str], root: Path = ROOT) -> dict:
    """Which commit of the git repository at ``root`` holds exactly the recorded ``code``
    (file -> git object id).

    Returns ``commit`` (the newest commit that last changed these files into the recorded
    state, with ``date`` and ``subject``), or ``commit: None`` when no commit of HEAD's
    history holds it: the stage ran on uncommitted changes (``dirty``). ``changed_now``
    lists the files that differ today (working tree) from what ran."""
    now = {f: blob_id(root / f) if (root / f).exists() else None for f in code}
    result = {"git": True, "commit": None, "date": None, "subject": None, "dirty": False,
              "changed_now": sorted(f for f in code if now[f] != code[f])}
    log = _git(root, "log", "--format=%H%x09%cs%x09%s", "HEAD", "--", *code)
    if log is None:
        return result | {"git": False}
    for line in log.splitlines():  # newest first: the first match is the code's commit
        commit, date, subject = line.split("\t", 2)
        tree = _git(root, "ls-tree", "-r", commit, "--", *code) or ""
        blobs = {row.split("\t", 1)[1]: row.split()[2] for row in tree.splitlines()}
        if all(blobs.get(f) == b for f, b in code.items()):
            return result | {"commit": commit, "date": date, "subject": subject}
    return result | {"dirty": True}
