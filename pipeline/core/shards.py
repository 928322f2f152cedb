"""Face shards and the stages' other HDF5 files: written reproducibly, read fast, checked.

Written under a temporary name and renamed when complete (``pipeline.core.fileio``), and
byte-identical for identical content: datasets with ``track_times=False``, fixed
attributes, written in a fixed order (docs/architecture.md, "Data contracts").
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from pipeline.core.errors import CheckpointError
from pipeline.core.fileio import temp_path

FACES_DATASET = "faces"
SHARD_PATTERN = "shard-{:05d}.h5"
FACE_SIZE = 112  #: the side of the faces the models read (pipeline.core.images.IMAGE_SIZE)


@dataclass
class ShardWriter:
    """Appends aligned faces to HDF5 shards of at most ``shard_faces`` faces each.

    Shards are named ``shard-00000.h5``, ... in ``directory``; :meth:`add` returns the
    (shard file name, row) of each face: names relative to the folder, so the folder can
    move (or be written under a temporary name and renamed) without invalidating them.
    Each shard is written as ``.shard-....h5.tmp`` and renamed when full or on
    :meth:`close`, so readers never see a partial shard.
    """

    directory: Path
    shard_faces: int = 4096
    size: int = FACE_SIZE
    attrs: dict = field(default_factory=dict)
    _index: int = 0
    _row: int = 0
    _file: h5py.File | None = None
    _tmp: Path | None = None
    written: list[Path] = field(default_factory=list)

    def __post_init__(self):
        self.directory = Path(self.directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    @property
    def current_path(self) -> Path:
        return self.directory / SHARD_PATTERN.format(self._index)

    def _open(self) -> None:
        self._tmp = temp_path(self.current_path)
        self._file = h5py.File(self._tmp, "w", libver="earliest", track_order=False)
        s = self.size
        # One face per chunk: random access to a single face reads exactly one chunk.
        # A Fletcher-32 checksum per chunk, checked by HDF5 on every read: a damaged face is
        # an error naming its shard, never a picture of noise with a label.
        self._file.create_dataset(
            FACES_DATASET, shape=(0, s, s, 3), maxshape=(self.shard_faces, s, s, 3),
            dtype=np.uint8, chunks=(1, s, s, 3), fletcher32=True, track_times=False,
        )
        for key in sorted(self.attrs):
            self._file[FACES_DATASET].attrs[key] = self.attrs[key]
        self._row = 0

    def add(self, faces: np.ndarray) -> list[tuple[str, int]]:
        """Append faces ``uint8 [k, size, size, 3]``; returns their (shard file name, row)."""
        faces = np.asarray(faces, dtype=np.uint8)
        if faces.ndim != 4 or faces.shape[1:] != (self.size, self.size, 3):
            raise ValueError(f"faces must be [k, {self.size}, {self.size}, 3] uint8, got {faces.shape}")
        # HDF5 does not report a full disk (the error is lost in a destructor, the file is
        # left with black faces, the process may crash): make sure of the room first
        need = faces.nbytes + faces.nbytes // 8 + (1 << 20)  # chunk checksums and metadata, with a margin
        free = shutil.disk_usage(self.directory).free
        if free < need:
            raise OSError(errno.ENOSPC, f"No space left on device ({free >> 20} MB free, the next {len(faces)} "
                                        f"faces need about {-(-need >> 20)} MB)", str(self.current_path))
        where = []
        start = 0
        while start < len(faces):
            if self._file is None:
                self._open()
            take = min(len(faces) - start, self.shard_faces - self._row)
            d = self._file[FACES_DATASET]
            d.resize(self._row + take, axis=0)
            d[self._row:self._row + take] = faces[start:start + take]
            where.extend((self.current_path.name, self._row + i) for i in range(take))
            self._row += take
            start += take
            if self._row == self.shard_faces:
                self._finish()
        return where

    def _finish(self) -> None:
        self._file.close()
        os.replace(self._tmp, self.current_path)
        self.written.append(self.current_path)
        self._file, self._tmp = None, None
        self._index += 1

    def close(self) -> list[Path]:
        """Finish the open shard; returns every shard written."""
        if self._file is not None:
            self._finish()
        return self.written

    def abort(self) -> None:
        """Drop the shard being written (after an error): nothing half-written remains."""
        if self._file is not None:
            self._file.close()
            self._tmp.unlink(missing_ok=True)
            self._file, self._tmp = None, None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()


class FaceReader:
    """Random access to faces by (shard, row), keeping shards open.

    Reads one face per call through the dataset's chunk (fast); h5py fancy indexing with
    a list of rows is avoided on purpose: it is far slower (docs/architecture.md).
    Open it inside each DataLoader worker (h5py handles do not survive a fork well).
    """

    def __init__(self, size: int = FACE_SIZE):
        self.size = size  # faces are [size, size, 3]: a shard of another size is refused when opened
        self._files: dict[str, h5py.File] = {}
        self._datasets: dict[str, h5py.Dataset] = {}  # looked up once: a lookup costs as much as a read

    def dataset(self, shard: str) -> h5py.Dataset:
        d = self._datasets.get(shard)
        if d is None:
            if not os.path.isfile(shard):
                raise CheckpointError(f"{shard}: face shard missing (moved or deleted since the build?): rerun the "
                                      "extraction that wrote it (dvc repro extract@<source>)")
            f = self._files[shard] = h5py.File(shard, "r")
            if FACES_DATASET not in f:
                raise CheckpointError(f"{shard}: no '{FACES_DATASET}' dataset: not a face shard (rerun the extraction "
                                      "that wrote it)")
            d = f[FACES_DATASET]
            if d.shape[1:] != (self.size, self.size, 3):
                raise CheckpointError(f"{shard}: holds faces of {'x'.join(map(str, d.shape[1:]))}, this stage "
                                      f"reads faces of {self.size}x{self.size}x3: extracted with another "
                                      "extract.face_size (rerun the extraction that wrote it)")
            self._datasets[shard] = d
        return d

    def read(self, shard: str, row: int) -> np.ndarray:
        try:
            d = self.dataset(shard)
            if not 0 <= int(row) < len(d):
                raise CheckpointError(f"{shard}: holds {len(d)} faces but the index asks for face {int(row)}: it is not "
                                      "the shard its frame table was written with (rerun the extraction that wrote it)")
            return d[int(row)]
        except PermissionError:  # the file is sound: re-extracting would not help
            raise CheckpointError(f"{shard}: permission denied: this face shard cannot be read (check its owner "
                                  "and mode)") from None
        except OSError as e:  # unreadable file, or a chunk failing its checksum
            raise CheckpointError(f"{shard}: face {int(row)} is damaged: its checksum fails or it cannot be read "
                                  f"({str(e).splitlines()[0][:100]}); rerun the extraction that wrote it "
                                  "(dvc repro --force extract@<source>)") from None

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()
        self._datasets.clear()

    def __getstate__(self):
        # Pickled into worker processes without open handles; each reopens lazily.
        return {"size": self.size, "_files": {}, "_datasets": {}}


@contextmanager
def read_stage_h5(path: str | Path, what: str, version: int, stage: str, datasets: tuple[str, ...] = ()):
    """Open an HDF5 file a stage writes (the soft-label cache, the features) as ``(h5,
    attrs)``: missing, unreadable, of another format version, without one of its
    ``datasets`` (another stage's file), damaged (its checksums) or holding values that are
    not finite is one clear error."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: {what} not found (run `dvc repro {stage}`)")
    try:
        with h5py.File(path, "r") as h5:
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in h5.attrs.items()}
            if "format_version" not in attrs:
                raise CheckpointError(f"{path}: not a {what} (an HDF5 file without its format_version; another "
                                      "stage's file?)")
            if attrs.get("format_version") != version:
                raise CheckpointError(f"{path}: {what} format {attrs.get('format_version')!r}, this code reads "
                                      f"{version} (rerun `dvc repro {stage}`)")
            missing = [d for d in datasets if d not in h5]
            if missing:
                raise CheckpointError(f"{path}: not a {what}: it lacks {', '.join(map(repr, missing))} (another "
                                      f"stage's file? `dvc repro {stage}` writes it)")
            check_sealed(h5, path, what, stage)
            yield h5, attrs
    except OSError as e:
        raise CheckpointError(f"{path}: not a readable {what} ({e})") from None


def _digest(dataset: h5py.Dataset, block_bytes: int = 8 << 20) -> tuple[str, bool]:
    """SHA-256 of a dataset's values (strings: UTF-8, each ended by a zero byte; numbers:
    their bytes in C order), read a few MB at a time, and whether every float is finite."""
    h, finite = hashlib.sha256(), True
    strings = h5py.check_string_dtype(dataset.dtype) is not None
    row_bytes = max(1, int(np.prod(dataset.shape[1:], dtype=np.int64)) * dataset.dtype.itemsize)
    rows = max(1, block_bytes // row_bytes)
    for start in range(0, len(dataset), rows):
        if strings:
            h.update(b"".join(v.encode() + b"\0" for v in dataset.asstr()[start:start + rows]))
            continue
        part = np.ascontiguousarray(dataset[start:start + rows])
        h.update(part.tobytes())
        finite = finite and (part.dtype.kind != "f" or bool(np.isfinite(part).all()))
    return h.hexdigest(), finite


def seal_h5(h5: h5py.File) -> None:
    """Record every dataset's SHA-256 in the ``sha256`` attribute (JSON), for
    :func:`check_sealed`; the last thing written to the file."""
    h5.attrs["sha256"] = json.dumps({name: _digest(h5[name])[0] for name in sorted(h5)}, sort_keys=True)


def check_sealed(h5: h5py.File, path: str | Path, what: str, stage: str) -> None:
    """Refuse a stage's HDF5 file whose values are not those it was written with, or not
    finite (one pass over the data: the price of a few seconds at real sizes)."""
    expected = json.loads(h5.attrs.get("sha256", "{}"))
    for name in sorted(h5):
        digest, finite = _digest(h5[name])
        if expected.get(name) != digest:
            raise CheckpointError(f"{path}: {what} damaged: dataset {name!r} fails its checksum "
                                  f"(rerun `dvc repro --force {stage}`)")
        if not finite:
            raise CheckpointError(f"{path}: {what} holds values that are not finite in {name!r} "
                                  f"(rerun `dvc repro --force {stage}`)")


class MappedDatasets:
    """Contiguous datasets of an HDF5 file read through memory maps, so that reading a
    few rows never loads the whole array (maps open lazily: safe in DataLoader workers)."""

    def __init__(self, path: str | Path, h5: h5py.File, names: tuple[str, ...]):
        self.path = Path(path)
        missing = [n for n in names if n not in h5]
        if missing:
            raise CheckpointError(f"{path}: lacks its {', '.join(map(repr, missing))} dataset: not a complete file of "
                                  "this kind (rerun the stage that wrote it)")
        self._layout = {n: (h5[n].id.get_offset(), h5[n].shape, h5[n].dtype) for n in names}
        self._maps: dict = {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._maps:
            offset, shape, dtype = self._layout[name]
            self._maps[name] = (np.zeros(shape, dtype) if offset is None  # nothing written: no storage
                                else np.memmap(self.path, mode="r", dtype=dtype, offset=offset, shape=shape))
        return self._maps[name]

    def __getstate__(self):
        return {**self.__dict__, "_maps": {}}
