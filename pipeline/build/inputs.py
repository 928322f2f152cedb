"""The build's inputs, checked before it writes anything: the AU sources label every AU
of the schema, and the face shards the frame tables name are there, readable, hold faces
of the one size every source shares, and as many faces as the tables' rows ask for (the
metadata only: no face is read)."""
from __future__ import annotations

from pathlib import Path

import h5py
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.build.selection import read_batches
from pipeline.core.errors import DataError
from pipeline.core.schema import LabelSchema
from pipeline.core.shards import FACES_DATASET


def named_rows(path: Path) -> dict[str, tuple[int, int]]:
    """(smallest, largest) row the frame table ``path`` asks of each shard it names, read
    batch by batch."""
    rows: dict[str, tuple[int, int]] = {}
    for batch in read_batches(path, ["shard", "row"]):
        grouped = pa.Table.from_batches([batch]).group_by("shard").aggregate([("row", "min"), ("row", "max")])
        for shard, low, high in zip(*(grouped[c].to_pylist() for c in ("shard", "row_min", "row_max"))):
            if low is None:  # a shard named with no row
                continue
            before = rows.get(shard, (low, high))
            rows[shard] = (min(before[0], low), max(before[1], high))
    return rows


def shard_shape(shard: Path) -> tuple[int, tuple[int, ...]]:
    """(faces held, shape of one face) of a face shard, from its metadata."""
    try:
        with h5py.File(shard, "r") as h5:
            if FACES_DATASET not in h5:
                raise DataError(f"{shard}: no '{FACES_DATASET}' dataset: not a face shard as extraction writes them "
                                "(rerun the extraction that wrote it)")
            faces = h5[FACES_DATASET]
            shape, size = tuple(faces.shape), faces.attrs.get("size")
    except OSError as e:
        raise DataError(f"{shard}: not a readable face shard ({str(e).splitlines()[0][:100]}): rerun the "
                        "extraction that wrote it") from None
    if len(shape) != 4 or shape[3] != 3 or shape[1] != shape[2]:
        raise DataError(f"{shard}: faces of shape {'x'.join(map(str, shape[1:]))}, not square colour images "
                        "(rerun the extraction that wrote it)")
    if size is not None and int(size) != shape[1]:
        raise DataError(f"{shard}: faces of {shape[1]}x{shape[2]} but the shard records size {int(size)}: changed "
                        "after extraction (rerun the extraction that wrote it)")
    return shape[0], shape[1:]


def check_shards(paths: list[Path]) -> None:
    """Every face shard the frame tables ``paths`` name is there, holds the rows they ask
    for, and all hold faces of one size: a missing shard, a row past its end or a source
    extracted at another face_size would otherwise surface mid-training or after it."""
    first = None  # (shard, face shape) of the first shard seen
    for path in paths:
        for shard, (low, high) in sorted(named_rows(path).items()):
            file = path.parent / shard
            if not file.is_file():
                raise DataError(f"{path}: names the face shard {shard}, which is missing from {path.parent} (rerun "
                                "the extraction that wrote it)")
            n, face = shard_shape(file)
            if low < 0 or high >= n:
                raise DataError(f"{path}: names face {high if high >= n else low} of the face shard {file}, which "
                                f"holds {n} faces (rerun the extraction that wrote it)")
            if first is None:
                first = (file, face)
            elif face != first[1]:
                raise DataError(f"{file}: faces of {'x'.join(map(str, face))}, but {first[0]} holds faces of "
                                f"{'x'.join(map(str, first[1]))}: every source must be extracted with the same "
                                "extract.face_size (rerun the extraction of one of them)")


def check_aus_labelled(au_tables: dict[str, Path], schema: LabelSchema) -> None:
    """Every AU of ``schema`` is a column of some AU source's frame table: an AU no source
    labels has no positive frame to learn from (the reader keeps every AU its source labels)."""
    held = {}
    for source, path in au_tables.items():
        try:
            held[source] = set(pq.read_schema(path).names)
        except (OSError, ValueError) as e:  # Arrow's errors are ValueErrors
            raise DataError(f"{path}: not a readable frame table ({str(e).splitlines()[0][:120]})") from None
    unlabelled = [a for a in schema.aus if not any(a in names for names in held.values())]
    if unlabelled:
        raise DataError(f"AU: no source of build.au_sources ({', '.join(held)}) labels {', '.join(unlabelled)}, "
                        f"which {schema.name} learns: add a source that does (Aff-Wild2 in its 2022+ layout labels "
                        "12 AUs), or name the AUs to learn with build.aus")
