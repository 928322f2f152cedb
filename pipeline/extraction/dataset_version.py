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
import os
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from pipeline.core.errors import DataError
from pipeline.core.fileio import special_file, write_json
from pipeline.core.hashing import combine, digest, file_sha256, folder_files
from pipeline.extraction.sources.affwild2_layout import VIDEO_EXTENSIONS
from pipeline.extraction.sources.base import IMAGE_EXTENSIONS
from pipeline.core.validation import load_yaml

SUFFIX = ".version.json"


def version_path(root: str | Path) -> Path:
    """Where ``write_version`` puts a dataset's version file: next to its folder."""
    root = Path(root)
    return root.with_name(root.name + SUFFIX)


def write_version(root: str | Path, progress: bool = False) -> Path:
    """Write ``<root>.version.json``: the dataset's folder name, file count and digest."""
    root = Path(root).resolve()  # "." has no name to write the version file under
    if not root.name:
        raise DataError(f"{root}: the file system's root is not a dataset folder")
    files = folder_files(root)
    if not files:
        raise DataError(f"{root}: no file in this folder: nothing to version")
    path = version_path(root)
    if path.exists() and _version_record(path) is None:
        raise DataError(f"{path}: exists and is not a version file of {root.name}: refusing to replace it")
    write_json(path, {"dataset": root.name, "files": len(files), "sha256": digest(root, progress, files)})
    return path


def unfollowed_links(root: str | Path) -> list[Path]:
    """The entries below ``root`` that no digest reads: links dangling or to a folder (never
    descended into, so a link loop is no endless walk), pipes, devices, sockets."""
    return sorted(p for p in Path(root).rglob("*") if (p.is_symlink() and not p.is_file()) or special_file(p))


def _version_record(path: Path) -> dict | None:
    """The version file's content, or None when the file is something else."""
    try:
        record = json.loads(path.read_text())
    except (ValueError, OSError):
        return None
    keys = {"dataset", "files", "sha256"}
    return record if isinstance(record, dict) and set(record) == keys and \
        record["dataset"] == path.name.removesuffix(SUFFIX) else None


def check_version(root: str | Path, version: str | Path, root_digest: str | None) -> None:
    """Refuse a ``version`` that is not about ``root``, or (a version file) whose digest is
    not ``root_digest``, the digest of the files ``extract`` is about to read (None: check
    only that the version is there and about ``root``, before reading anything)."""
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
    if root_digest is not None and sha256 != root_digest:
        again = ("dvc repro --force synth" if Path(root).resolve().parent == version.resolve().parent
                 and (version.parent / "synth.json").exists() else f"mtaffect dataset-version {root}")
        raise DataError(f"{root}: its files differ from those {version} was written for "
                        f"({_what_changed(root, version, record)}; if the change is meant, write the version "
                        f"again: {again})")


def _what_changed(root: Path, version: Path, record: dict) -> str:
    """A hint at the edit: the file count, and the files newer than the version file (the
    version records no per-file digests: it cannot say more)."""
    files = folder_files(root)
    written = version.stat().st_mtime_ns
    # text files first: a label file is more often edited than a picture only touched
    newer = sorted((f for f in files if f.stat().st_mtime_ns > written),
                   key=lambda f: f.suffix.lower() in (*IMAGE_EXTENSIONS, *VIDEO_EXTENSIONS))
    parts = ([f"{len(files)} files now, {record.get('files')} then"] if record.get("files") != len(files) else []) \
        + ([f"{len(newer)} changed or added since the version file (or only touched: their times say no more), "
            f"e.g. {newer[0]}"] if newer else [])
    return "; ".join(parts) or ("as many files, none newer than the version file: renamed, edited with their "
                                "times kept, or the version file itself edited")


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


@dataclass
class DatasetRead:
    """The digest of the bytes extraction reads, not of the bytes there were before it.

    ``start`` notes every file's size and modification time; the workers hash each image
    and video as they read it (``hashing.HashingReader``: no second read) and :meth:`add`
    collects those; :meth:`finish` hashes the files nobody read, checks that no file
    changed, came or went since the start, and returns the folder's digest (the formula of
    ``hashing.digest``). A dataset edited during extraction is refused, naming a file:
    its faces would otherwise be recorded as coming from data they did not come from.
    """

    root: Path
    stats: dict[str, tuple[int, int]] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)  # "file: why" of the files that could not be hashed

    @classmethod
    def start(cls, root: str | Path) -> "DatasetRead":
        root = Path(root)
        files = [root] if root.is_file() else folder_files(root)
        return cls(root, {cls._name(root, f): _stat(f) for f in files})

    @staticmethod
    def _name(root: Path, path: Path) -> str:
        return "" if root.is_file() else Path(os.path.relpath(path, root)).as_posix()

    def add(self, hashes: dict[str, str]) -> None:
        """Hashes of files read elsewhere (``{path as read: sha256}``)."""
        self.hashes.update({self._name(self.root, Path(p)): h for p, h in hashes.items()})

    def finish(self, progress: bool = False) -> str:
        self._unchanged()
        unread = [n for n in self.stats if n not in self.hashes]
        for name in tqdm(unread, desc=f"hashing the rest of {self.root.name}", unit="file", leave=False,
                         disable=not progress or not unread):
            try:
                self.hashes[name] = file_sha256(self.root / name if name else self.root)
            except OSError as e:  # skipped by the extraction too (on_error: skip): the digest says so
                self.hashes[name] = f"unreadable ({e.strerror or e})"
                self.unreadable.append(f"{self.root / name}: {e.strerror or e}")
        self._unchanged()
        if self.root.is_file():
            return self.hashes[""]
        return combine({n: self.hashes[n] for n in self.stats})

    def _unchanged(self) -> None:
        now = DatasetRead.start(self.root).stats if self.root.exists() else {}
        changed = sorted(set(now) ^ set(self.stats)) or sorted(n for n in now if now[n] != self.stats[n])
        if changed:
            raise DataError(f"{self.root / changed[0]}: changed while it was being extracted "
                            f"({len(changed)} file(s) changed, came or went): nothing written; run it again "
                            "once the dataset is complete")
