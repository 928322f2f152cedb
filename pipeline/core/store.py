"""Face shards (HDF5) and frame tables (Parquet): writing them reproducibly, reading them fast.

Both are written under a temporary name and renamed when complete (``pipeline.core.fileio``).
Both are byte-identical for identical content: HDF5 datasets with ``track_times=False``
and fixed attributes, Parquet with a fixed schema, compression and row-group size
(docs/architecture.md, "Data contracts").
"""
from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core.errors import CheckpointError
from pipeline.core.fileio import atomic_write, temp_path
from pipeline.core.labels import AU_NAMES

FACES_DATASET = "faces"
SHARD_PATTERN = "shard-{:05d}.h5"

# --- the frame table ----------------------------------------------------------------

LANDMARK_COLUMNS = [f"lm{i}_{axis}" for i in range(5) for axis in ("x", "y")]

#: One row per face. Unknown labels: -1 (AU, expr) and NaN (valence, arousal).
FRAME_SCHEMA = pa.schema(
    [
        ("uid", pa.string()),
        ("source", pa.string()),
        ("video", pa.string()),
        ("subject", pa.string()),
        ("frame", pa.int32()),
        ("timestamp", pa.float64()),  # the decoder's time of a video frame, seconds (NaN: not a video)
        ("split", pa.string()),
        *[(au, pa.int8()) for au in AU_NAMES],
        ("expr", pa.int8()),
        ("valence", pa.float32()),
        ("arousal", pa.float32()),
        ("shard", pa.string()),
        ("row", pa.int32()),
        ("det_score", pa.float32()),
        *[(c, pa.float32()) for c in LANDMARK_COLUMNS],
    ]
)

#: Fixed writer options: the bytes of a table depend on its content only. Row groups of
#: 8,192 rows keep what a streaming writer or reader holds to a few MB.
PARQUET_OPTIONS = dict(
    compression="zstd", compression_level=3, row_group_size=8192, use_dictionary=True,
    write_statistics=True, data_page_version="2.0", version="2.6",
)


def uid(source: str, video: str, frame: int) -> str:
    """The stable frame identifier ``source/video/frame`` (frame 0-based)."""
    return f"{source}/{video}/{int(frame)}"


def write_parquet(table: pa.Table, path: str | Path, provenance: list | None = None) -> None:
    """Write ``table`` to ``path`` atomically with the project's fixed options, and
    ``provenance`` (``pipeline.core.provenance`` records) in its schema metadata."""
    # Drop pandas/arrow metadata that could differ between runs or library versions.
    meta = {b"mtaffect.provenance": json.dumps(provenance, sort_keys=True).encode()} if provenance else None
    table = table.replace_schema_metadata(meta)
    with atomic_write(path) as tmp:
        pq.write_table(table, tmp, **PARQUET_OPTIONS)


def frame_table(columns: dict[str, np.ndarray | list]) -> pa.Table:
    """A frame table from column arrays, cast to :data:`FRAME_SCHEMA` (checks the columns)."""
    missing = [f.name for f in FRAME_SCHEMA if f.name not in columns]
    if missing:
        raise ValueError(f"frame table lacks columns {missing}")
    arrays = [pa.array(columns[f.name], type=f.type, from_pandas=True) for f in FRAME_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=FRAME_SCHEMA)


class FrameTableWriter:
    """Streams rows to Parquet in row groups of a fixed size: frame-table rows by default,
    or rows of ``schema`` (the build's indexes).

    Memory holds at most one row group; the row-group boundaries depend only on the row
    count, so the same rows give the same bytes. Written to a temp name, renamed on close.
    """

    def __init__(self, path: str | Path, schema: pa.Schema = FRAME_SCHEMA):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = temp_path(self.path)
        self.schema = schema
        self.rows = PARQUET_OPTIONS["row_group_size"]
        options = {k: v for k, v in PARQUET_OPTIONS.items() if k != "row_group_size"}
        self.writer = pq.ParquetWriter(self.tmp, schema, **options)
        self.buffer: list[pa.Table] = []
        self.buffered = 0
        self.count = 0

    def add(self, columns: dict) -> None:
        table = frame_table(columns) if self.schema is FRAME_SCHEMA else pa.table(columns, schema=self.schema)
        self.buffer.append(table)
        self.buffered += table.num_rows
        self.count += table.num_rows
        while self.buffered >= self.rows:
            self._flush(self.rows)

    def _flush(self, n: int) -> None:
        # Copy only the row group being written into one contiguous chunk (same bytes
        # whatever the sizes of the added pieces); the rest stays a view of the pieces
        # it came from, so no full-size merged copy outlives the write.
        buffered = pa.concat_tables(self.buffer)
        self.writer.write_table(buffered.slice(0, n).combine_chunks(), row_group_size=n)
        rest = buffered.slice(n)
        self.buffer, self.buffered = ([rest] if rest.num_rows else []), rest.num_rows

    def close(self) -> int:
        if self.buffered:
            self._flush(self.buffered)
        self.writer.close()
        os.replace(self.tmp, self.path)
        return self.count

    def abort(self) -> None:
        self.writer.close()
        self.tmp.unlink(missing_ok=True)


def read_frames(path: str | Path, columns: list[str] | None = None):
    """A frame table as a pandas DataFrame."""
    return pq.read_table(path, columns=columns).to_pandas()


# --- face shards --------------------------------------------------------------------


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
    size: int = 112
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

    def __init__(self):
        self._files: dict[str, h5py.File] = {}
        self._datasets: dict[str, h5py.Dataset] = {}  # looked up once: a lookup costs as much as a read

    def dataset(self, shard: str) -> h5py.Dataset:
        d = self._datasets.get(shard)
        if d is None:
            f = self._files[shard] = h5py.File(shard, "r")
            d = self._datasets[shard] = f[FACES_DATASET]
        return d

    def read(self, shard: str, row: int) -> np.ndarray:
        try:
            return self.dataset(shard)[int(row)]
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
        return {"_files": {}, "_datasets": {}}


@contextmanager
def read_stage_h5(path: str | Path, what: str, version: int, stage: str):
    """Open an HDF5 file a stage writes (the soft-label cache, the features) as ``(h5,
    attrs)``: missing, unreadable, of another format version, damaged (its checksums) or
    holding values that are not finite is one clear error."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: {what} not found (run `dvc repro {stage}`)")
    try:
        with h5py.File(path, "r") as h5:
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in h5.attrs.items()}
            if attrs.get("format_version") != version:
                raise CheckpointError(f"{path}: {what} format {attrs.get('format_version')!r}, this code reads "
                                      f"{version} (rerun `dvc repro {stage}`)")
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
