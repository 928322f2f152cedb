"""Frame tables and indexes (Parquet): written reproducibly, streamed in row groups.

Written under a temporary name and renamed when complete (``pipeline.core.fileio``), and
byte-identical for identical content: a fixed schema, compression and row-group size
(docs/architecture.md, "Data contracts").
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core.errors import DataError
from pipeline.core.fileio import atomic_write, names_file, temp_path
from pipeline.core.labels import AU_NAMES
from pipeline.core.schema import au_number

LANDMARK_COLUMNS = [f"lm{i}_{axis}" for i in range(5) for axis in ("x", "y")]


def frame_schema(aus=AU_NAMES) -> pa.Schema:
    """One row per face, with a column for each AU in ``aus`` (those the source labels, in
    FACS order). Unknown labels: -1 (AU, expr: codes of ``schema.EXPRESSIONS``) and NaN
    (valence, arousal)."""
    aus = sorted(aus, key=au_number)
    return pa.schema([
        ("uid", pa.string()),
        ("source", pa.string()),
        ("video", pa.string()),
        ("subject", pa.string()),
        ("frame", pa.int32()),
        ("timestamp", pa.float64()),  # the decoder's time of a video frame, seconds (NaN: not a video)
        ("split", pa.string()),
        *[(au, pa.int8()) for au in aus],
        ("expr", pa.int8()),
        ("valence", pa.float32()),
        ("arousal", pa.float32()),
        ("shard", pa.string()),
        ("row", pa.int32()),
        ("det_score", pa.float32()),
        *[(c, pa.float32()) for c in LANDMARK_COLUMNS],
    ])


#: The 2020 AU columns (tables written before the label schemas, and tests).
FRAME_SCHEMA = frame_schema()

#: Fixed writer options: the bytes of a table depend on its content only. Row groups of
#: 8,192 rows keep what a streaming writer or reader holds to a few MB.
PARQUET_OPTIONS = dict(
    compression="zstd", compression_level=3, row_group_size=8192, use_dictionary=True,
    write_statistics=True, data_page_version="2.0", version="2.6",
)


def uid(source: str, video: str, frame: int) -> str:
    """The stable frame identifier ``source/video/frame`` (frame 0-based)."""
    return f"{source}/{video}/{int(frame)}"


def write_parquet(table: pa.Table, path: str | Path) -> None:
    """Write ``table`` to ``path`` atomically with the project's fixed options (and no
    pandas or Arrow metadata, which could differ between runs or library versions)."""
    table = table.replace_schema_metadata(None)
    with atomic_write(path) as tmp:
        pq.write_table(table, tmp, **PARQUET_OPTIONS)


def frame_table(columns: dict[str, np.ndarray | list], schema: pa.Schema = FRAME_SCHEMA) -> pa.Table:
    """A frame table from column arrays, cast to ``schema`` (checks the columns)."""
    missing = [f.name for f in schema if f.name not in columns]
    if missing:
        raise ValueError(f"frame table lacks columns {missing}")
    arrays = [pa.array(columns[f.name], type=f.type, from_pandas=True) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


class FrameTableWriter:
    """Streams rows to Parquet in row groups of a fixed size: frame-table rows with the AU
    columns ``aus`` by default, or rows of ``schema`` (the build's indexes).

    Memory holds at most one row group; the row-group boundaries depend only on the row
    count, so the same rows give the same bytes. Written to a temp name, renamed on close;
    a write that fails (a full disk: Arrow names no file) names ``path``.
    """

    def __init__(self, path: str | Path, schema: pa.Schema | None = None, aus=AU_NAMES):
        self.frames = schema is None
        schema = frame_schema(aus) if schema is None else schema
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = temp_path(self.path)
        self.schema = schema
        self.rows = PARQUET_OPTIONS["row_group_size"]
        options = {k: v for k, v in PARQUET_OPTIONS.items() if k != "row_group_size"}
        try:
            with names_file(self.path, self.tmp):
                self.writer = pq.ParquetWriter(self.tmp, schema, **options)
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise
        self.buffer: list[pa.Table] = []
        self.buffered = 0
        self.count = 0

    def add(self, columns: dict) -> None:
        table = frame_table(columns, self.schema) if self.frames else pa.table(columns, schema=self.schema)
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
        with names_file(self.path, self.tmp):
            self.writer.write_table(buffered.slice(0, n).combine_chunks(), row_group_size=n)
        rest = buffered.slice(n)
        self.buffer, self.buffered = ([rest] if rest.num_rows else []), rest.num_rows

    def close(self) -> int:
        if self.buffered:
            self._flush(self.buffered)
        with names_file(self.path, self.tmp):
            self.writer.close()
            os.replace(self.tmp, self.path)
        return self.count

    def abort(self) -> None:
        with contextlib.suppress(OSError):  # closing writes the footer: on a full disk it fails again
            self.writer.close()
        self.tmp.unlink(missing_ok=True)


def read_frames(path: str | Path, columns: list[str] | None = None):
    """A frame table as a pandas DataFrame."""
    return pq.read_table(path, columns=columns).to_pandas()


def check_own_tables(folder: str | Path, names, schema: pa.Schema, any_aus: bool = False) -> None:
    """Refuse, before any work, to write tables ``names`` into a folder that holds anything
    else, or a file of one of those names that is not a table of ``schema`` (with
    ``any_aus``: whatever its AU columns), so not one an earlier run wrote: the user's own
    files are never replaced."""

    def shape(s: pa.Schema) -> pa.Schema:
        return pa.schema([f for f in s.remove_metadata() if not (any_aus and f.name.startswith("AU"))])

    folder = Path(folder)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise DataError(f"{folder}: exists and is not a folder: refusing to write into it")
    for path in sorted(folder.iterdir()):
        if path.name not in names and path.name not in {temp_path(folder / n).name for n in names}:
            raise DataError(f"{path}: not written by this stage: refusing to write into {folder} (move it away, "
                            "or choose another --out)")
        try:
            ours = path.name not in names or shape(pq.read_schema(path)).equals(shape(schema))
        except (pa.ArrowInvalid, OSError):
            ours = False
        if not ours:
            raise DataError(f"{path}: exists and is not a table this stage wrote: refusing to replace it (move it "
                            "away, or choose another --out)")

