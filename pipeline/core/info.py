"""Reading provenance back (``mtaffect info``): the records stored in an artefact, and the
git commit that holds the code they name (``pipeline.core.provenance`` writes them)."""
from __future__ import annotations

import json
from pathlib import Path

from pipeline.core.provenance import ROOT, blob_id


def read(path: str | Path) -> list[dict]:
    """The provenance records stored in an artefact: a checkpoint or bundle (``.pt``), a
    JSON report, the soft-label cache (``.h5``) or a Parquet table. The artefact's own
    record comes first; a bundle adds its members'."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".pt":
        from pipeline.training.models import read_torch_file

        obj = read_torch_file(path, "checkpoint")
        found = obj.get("provenance") if isinstance(obj, dict) else None
        for member in (obj.get("members", []) if isinstance(obj, dict) else []):
            found = (found or []) + member.get("provenance", [])
    elif suffix == ".json":
        try:
            obj = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: not a JSON report ({e})") from None
        found = obj.get("provenance") if isinstance(obj, dict) else None
    elif suffix in (".h5", ".hdf5"):
        import h5py

        with h5py.File(path, "r") as f:
            found = json.loads(f.attrs["provenance"]) if "provenance" in f.attrs else None
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        meta = pq.read_schema(path).metadata or {}
        found = json.loads(meta[b"mtaffect.provenance"]) if b"mtaffect.provenance" in meta else None
    else:
        raise ValueError(f"{path}: not an mtaffect artefact (models .pt, reports .json, caches .h5, tables .parquet)")
    if not found:
        raise ValueError(f"{path}: no provenance recorded (written before mtaffect recorded it, or not by a stage: "
                         "rerun its stage with `dvc repro`)")
    return found


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
