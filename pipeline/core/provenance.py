"""Where an artefact came from: the stage, its parameters, the code that ran, the inputs it
read and the outputs it wrote (docs/architecture.md, "Provenance").

Every stage run writes one record, a JSON file of its own (``provenance/<stage>.json``,
``provenance/<stage>/<name>.json`` for the students and the sources), never into the
artefacts: the record names the code, so it changes whenever the code does, and an
artefact holding it would change with it, whatever its data. Downstream stages depend on
the artefacts, not on the records, so a stage rerun for a code change that leaves its data
as they were reruns nothing after it (DVC's early cutoff).

A record holds no git commit and no "dirty" flag: it holds the git object id of every
project file the stage runs (its import closure, the same list ``dvc.yaml`` tracks), which
names the code exactly; ``mtaffect info`` then finds the commit holding that code, or says
the code was never committed. Inputs and outputs are named by SHA-256 of their bytes (a
folder input: of its files' names and hashes; a folder output is named by path only), with
paths relative to the record's own folder, so the project can move.
"""
from __future__ import annotations

import ast
import json
import hashlib
import os
from pathlib import Path

from pipeline.core.errors import DataError
from pipeline.core.fileio import write_json
from pipeline.core.hashing import digest, file_sha256

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipeline", "stages", "synthetic")
FORMAT = 2  # 2: one record per stage run, in a file of its own, with the outputs


def module_file(name: str) -> Path | None:
    """The file of project module ``name`` (a package's ``__init__.py``), or None."""
    parts = name.split(".")
    if parts[0] not in PACKAGES:
        return None
    p = ROOT.joinpath(*parts)
    if (p / "__init__.py").exists():
        return p / "__init__.py"
    return p.with_suffix(".py") if p.with_suffix(".py").exists() else None


def imported_modules(name: str) -> set[str]:
    """Project modules that module ``name`` imports anywhere in its file (also inside
    functions: the stages import lazily)."""
    path = module_file(name)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # "from pkg import module"
    return {m for m in found if module_file(m)}


def code_files(module: str) -> list[str]:
    """Files (relative to the project root) of every project module that running
    ``module`` may execute, packages' ``__init__`` included."""
    seen, todo = set(), [module]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        parts = m.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages run first
        todo.extend(imported_modules(m))
    return sorted(module_file(m).relative_to(ROOT).as_posix() for m in seen)


def blob_id(path: str | Path) -> str:
    """Git's object id of a file's bytes (what ``git hash-object`` prints), so that git can
    say which commits hold exactly this file."""
    data = Path(path).read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def record_path(stage: str, name: str | None = None) -> Path:
    """Where a stage run's record goes by default: ``provenance/<stage>[/<name>].json``."""
    return Path("provenance") / stage / f"{name}.json" if name else Path("provenance") / f"{stage}.json"


def aside_of_others(path: Path, outputs: list[Path]) -> Path:
    """``path``, or the same record name under ``<first output's folder>/provenance`` when
    the record at ``path`` names other outputs than ``outputs``."""
    if not path.exists() and not path.is_symlink():
        return path
    try:
        old = json.loads(path.read_text())
        named = {(path.resolve().parent / o["path"]).resolve() for o in old["outputs"].values()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # e.g. --provenance dvc.lock
        raise DataError(f"{path}: exists and is no provenance record: refusing to replace it (choose another "
                        "--provenance)") from None
    if not outputs or named == {p.resolve() for p in outputs}:
        return path
    parts = path.parts[path.parts.index("provenance") + 1:] if "provenance" in path.parts else (path.name,)
    return outputs[0].resolve().parent.joinpath("provenance", *parts)


def write(path: str | Path, module: str, params: dict, inputs: dict[str, str | Path],
          outputs: dict[str, str | Path], digests: dict[str, str] | None = None, progress: bool = False) -> dict:
    """Write the record of a stage run by ``module`` (e.g. ``stages.train_teacher``) to
    ``path``: effective ``params`` (plain values), ``inputs`` and ``outputs`` (name -> file
    or folder; ``digests``: SHA-256 of inputs hashed already, as extraction reads them).
    Returns the record. A record there that names other outputs (the stage's own, when a
    user runs it by hand with another ``--out``) is kept: this one goes to a ``provenance``
    folder beside the first output instead, where ``mtaffect info`` finds it too."""
    path = aside_of_others(Path(path), [Path(p) for _, p in sorted(outputs.items())])
    here = path.resolve().parent
    relative = lambda p: Path(os.path.relpath(Path(p).resolve(), here)).as_posix()  # noqa: E731
    digests = digests or {}
    rec = {
        "format": FORMAT,
        "stage": module.rpartition(".")[2],
        "params": params,
        "code": {f: blob_id(ROOT / f) for f in code_files(module)},
        "inputs": {name: {"path": relative(p), "sha256": digests[name] if name in digests else digest(p, progress)}
                   for name, p in sorted(inputs.items())},
        "outputs": {name: {"path": relative(p), "sha256": None if Path(p).is_dir() else file_sha256(p)}
                    for name, p in sorted(outputs.items())},
    }
    write_json(path, rec)
    return rec
