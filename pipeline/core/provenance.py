"""Where an artefact came from: the stage, its parameters, the code that ran and the inputs
it read (docs/architecture.md, "Provenance").

Every model and report carries one record. It deliberately holds no git commit and no
"dirty" flag: the commit that records ``dvc.lock`` is never the one that produced the
outputs, so writing either would make every fresh clone rebuild different bytes and DVC
would never skip a stage. It holds instead the git object id of every project file the
stage runs (its import closure, the same list ``dvc.yaml`` tracks), which names the code
exactly; ``mtaffect info`` then finds the commit holding that code, or reports that the
code was never committed (the tree was dirty). Inputs are named by SHA-256 of their bytes
(a folder: of its files' names and hashes), paths relative to the working directory.
"""
from __future__ import annotations

import ast
import hashlib
import os
from pathlib import Path

from pipeline.core.fileio import digest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipeline", "stages", "synthetic")
FORMAT = 1


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


def record(module: str, params: dict, inputs: dict[str, str | Path], progress: bool = False,
           digests: dict[str, str] | None = None) -> dict:
    """The provenance record of a stage run by ``module`` (e.g. ``stages.train_teacher``)
    with effective ``params`` (plain values) on ``inputs`` (name -> file or folder);
    ``digests`` gives the SHA-256 of inputs hashed already (as extraction reads them),
    ``progress`` shows a bar while a folder is hashed."""
    digests = digests or {}
    return {
        "format": FORMAT,
        "stage": module.rpartition(".")[2],
        "params": params,
        "code": {f: blob_id(ROOT / f) for f in code_files(module)},
        "inputs": {name: {"path": Path(os.path.relpath(p)).as_posix(),
                          "sha256": digests[name] if name in digests else digest(p, progress)}
                   for name, p in sorted(inputs.items())},
    }
