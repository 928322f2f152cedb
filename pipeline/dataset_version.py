"""A dataset's version: the small file ``extract`` depends on instead of the dataset's folder.

DVC hashes every file of a folder each time it checks a stage listing it (``dvc status``, a
no-op ``dvc repro``), once per stage (treeverse/dvc#10604): the synthetic data were walked
as ``synth``'s output and again as each ``extract`` stage's dependency. A file that changes
whenever the data do spares the second walk (docs/architecture.md, "Dataset versions"):

- the version file ``synth`` writes next to each dataset (``<root>.version.json``: the
  folder's digest, as provenance records compute it), or
- a real dataset's ``.dvc`` file (``dvc add`` / ``dvc import``), which DVC rewrites when
  the data change and are committed, or
- the root itself: DVC walks the folder, as for any folder dependency.

``check_version`` makes sure the version speaks of the folder ``extract`` reads, so a
``sources`` entry cannot pair one dataset with another's version.
"""
from __future__ import annotations

import json
from pathlib import Path

from pipeline.errors import DataError
from pipeline.fileio import digest, folder_files, write_json
from pipeline.validation import load_yaml

SUFFIX = ".version.json"


def version_path(root: str | Path) -> Path:
    """Where ``write_version`` puts a dataset's version file: next to its folder."""
    root = Path(root)
    return root.with_name(root.name + SUFFIX)


def write_version(root: str | Path, progress: bool = False) -> Path:
    """Write ``<root>.version.json``: the dataset's folder name, file count and digest."""
    root, files = Path(root), folder_files(root)
    path = version_path(root)
    write_json(path, {"dataset": root.name, "files": len(files), "sha256": digest(root, progress, files)})
    return path


def check_version(root: str | Path, version: str | Path, root_digest: str) -> None:
    """Refuse a ``version`` that is not about ``root``, or (a version file) whose digest is
    not ``root_digest``, the digest of the files ``extract`` is about to read."""
    root, version = Path(root), Path(version)
    if version.resolve() == root.resolve():
        return
    if not version.is_file():
        raise DataError(f"{version}: version of {root} not found (sources: version is the root itself, "
                        f"a {SUFFIX} file from synth, or the dataset's .dvc file)")
    if version.suffix == ".dvc":
        outs = (load_yaml(version.read_text(), str(version)) or {}).get("outs") or []
        tracked = [(version.parent / str(o.get("path", ""))).resolve() for o in outs if isinstance(o, dict)]
        if root.resolve() not in tracked:
            raise DataError(f"{version}: tracks {', '.join(map(str, tracked)) or 'nothing'}, not {root}")
        return
    try:
        record = json.loads(version.read_text())
        dataset, sha256 = record["dataset"], record["sha256"]
    except (ValueError, KeyError, TypeError):
        raise DataError(f"{version}: not a version file (expected JSON with dataset and sha256)") from None
    if (version.parent / str(dataset)).resolve() != root.resolve():
        raise DataError(f"{version}: is the version of {version.parent / str(dataset)}, not of {root}")
    if sha256 != root_digest:
        raise DataError(f"{root}: its files differ from those {version} was written for "
                        f"(edited since? rerun the stage that wrote them: dvc repro --force synth)")
