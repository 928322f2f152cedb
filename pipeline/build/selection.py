"""Which frames go into which index: reading the frame tables batch by batch, the split
of videos and subjects, and the per-batch decisions of the build (docs/method.md, "Data
balancing"). Every pass over the tables makes the same decisions, so the build can
count in one pass and write in the next without holding the tables.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.build import mlros
from pipeline.build.params import BuildParams
from pipeline.core.errors import DataError
from pipeline.core.index import label_columns
from pipeline.core.labels import TASKS, VA_BINS, VA_RANGE, va_to_bin
from pipeline.core.schema import ABAW2020, OTHER, LabelSchema

log = logging.getLogger("mtaffect.build")

VAL_SOURCE = "affwild2"  # the paper validates on Aff-Wild2's validation videos only
OUTPUTS = (*TASKS, "val")

#: Frame tables are read this many rows at a time, on the calling thread: what the reader
#: holds stays a few MB, whatever the size of the table.
READ_BATCH = 8192


# --- reading the frame tables -------------------------------------------------------


def frame_table_paths(faces_dir: str | Path, sources: list[str]) -> list[Path]:
    paths = [Path(faces_dir) / source / "frames.parquet" for source in sources]
    for source, path in zip(sources, paths):
        if not path.exists():
            raise DataError(f"{path}: missing: source '{source}' has not been extracted "
                            f"(run `dvc repro extract@{source}` or remove it from build.*_sources)")
    return paths


def read_batches(path: Path, columns: list[str], schema: LabelSchema = ABAW2020):
    """The record batches of a frame table as ``columns``, in row order, its labels
    projected onto ``schema`` (:func:`project_batch`)."""
    # No pre-buffering: it would hold every row group's column chunks at once.
    try:
        with pq.ParquetFile(path, pre_buffer=False) as table:
            present = set(table.schema_arrow.names)
            missing = [c for c in columns if c not in present and not c.startswith("AU")]
            if missing:
                raise DataError(f"{path}: no column {', '.join(missing)}: not a frame table as extraction writes "
                                "them (rerun the extraction that wrote it)")
            read = [c for c in columns if c in present or not c.startswith("AU")]
            for batch in table.iter_batches(batch_size=READ_BATCH, columns=read, use_threads=False):
                yield project_batch(batch, columns, schema)
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"{path}: not a readable frame table ({str(e).splitlines()[0][:100]}): rerun the "
                        "extraction that wrote it") from None


def project_batch(batch: pa.RecordBatch, columns: list[str], schema: LabelSchema) -> pa.RecordBatch:
    """``columns`` of a frame-table batch with the schema's AUs (one the source does not
    label is unknown, -1) and its expression classes (Other unknown without it)."""
    arrays = []
    for name in columns:
        if name == "expr":
            codes = schema.project_expressions(batch["expr"].to_numpy(zero_copy_only=False))
            arrays.append(pa.array(codes, pa.int8()))
        elif name in schema.aus and name not in batch.schema.names:
            arrays.append(pa.array(np.full(batch.num_rows, -1, np.int8), pa.int8()))
        elif batch.schema.field(name).type == pa.large_string():  # as pandas writes strings
            arrays.append(pc.cast(batch[name], pa.string()))
        else:
            arrays.append(batch[name])
    return pa.RecordBatch.from_arrays(arrays, names=columns)


def schema_report(files: list[Path], sources: list[str], schema: LabelSchema = ABAW2020) -> dict:
    """What the projection onto ``schema`` leaves out, per source: the AUs its table holds
    that the schema does not (kept in the table, said once here), and the frames labelled
    Other that a schema without it makes unknown (counted)."""
    out = {}
    for source, path in zip(sources, files):
        with pq.ParquetFile(path, pre_buffer=False) as table:
            aus = [c for c in table.schema_arrow.names if c.startswith("AU") and c not in schema.aus]
            other = 0 if schema.has_other else sum(
                int(pc.sum(pc.equal(b["expr"], OTHER)).as_py() or 0)
                for b in table.iter_batches(batch_size=READ_BATCH, columns=["expr"], use_threads=False))
        if aus or other:
            log.info("%s: not in the label schema %s: AUs %s, %d frames of Other (unknown)", source, schema.name,
                     ", ".join(aus) or "none", other)
        out[source] = {"aus_not_in_schema": aus, "other_made_unknown": other}
    return {"name": schema.name, "sources": out}


def qualified(batch: pa.RecordBatch, key: str) -> pa.Array:
    """``source/<key>``: videos and subjects are only unique within a source."""
    return pc.binary_join_element_wise(batch["source"], batch[key], "/")


def as_numpy(column: pa.Array) -> np.ndarray:
    return column.to_numpy(zero_copy_only=False)  # nulls (unknown VA) become NaN


# --- pass 1: the splits -------------------------------------------------------------


@dataclass
class Splits:
    """The qualified names of the videos (and subjects) on each side of the split."""

    train_videos: set[str]
    val_videos: set[str]
    val_subjects: set[str]


def scan_splits(files: list[Path]) -> Splits:
    """The videos and subjects of each split; a frame table with another split value or a
    frame twice is refused naming the file."""
    splits = Splits(set(), set(), set())
    for path in files:
        hashes = []  # 8 bytes per frame: a frame listed twice would be trained on twice
        for batch in read_batches(path, ["uid", "source", "video", "subject", "split"]):
            other = pc.filter(batch["split"], pc.invert(pc.is_in(batch["split"], pa.array(["train", "val"]))))
            if len(other):
                raise DataError(f"{path}: split {other[0].as_py()!r} is neither 'train' nor 'val'")
            hashes.append(np.fromiter(map(hash, batch["uid"].to_pylist()), np.int64, batch.num_rows))
            train, val = pc.equal(batch["split"], "train"), pc.equal(batch["split"], "val")
            videos = qualified(batch, "video")
            splits.train_videos.update(videos.filter(train).unique().to_pylist())
            splits.val_videos.update(videos.filter(val).unique().to_pylist())
            splits.val_subjects.update(qualified(batch, "subject").filter(val).unique().to_pylist())
        twice = listed_twice(path, np.concatenate(hashes) if hashes else np.zeros(0, np.int64))
        if twice:
            raise DataError(f"{path}: frame {twice} is listed twice: rerun the extraction that wrote it")
    return splits


def listed_twice(path: Path, hashes: np.ndarray) -> str | None:
    """A uid the table lists twice (its rows' uid hashes say where to look), or None."""
    values, counts = np.unique(hashes, return_counts=True)
    suspects = set(values[counts > 1].tolist())
    if not suspects:
        return None
    seen = set()
    for batch in read_batches(path, ["uid"]):
        for uid in batch["uid"].to_pylist():
            if hash(uid) in suspects:
                if uid in seen:
                    return uid
                seen.add(uid)
    return None


# --- which frames each task takes ---------------------------------------------------


@dataclass
class Selection:
    """One batch's decisions: a row mask per output, and the batch's labels as arrays."""

    masks: dict[str, np.ndarray]
    train: np.ndarray    # split "train" and not leaked
    leaked: np.ndarray   # split "train" but the video or subject is also in validation: dropped
    au: np.ndarray       # int8 [k, AUs of the schema]
    expr: np.ndarray     # int8 [k]
    va: np.ndarray       # float32 [k, 2]
    au_code: np.ndarray  # positive-label code of each AU row (mlros.positive_codes)
    va_cell: np.ndarray  # joint VA cell of each VA row (va_cells)


class Selector:
    """Decides, batch by batch, which frames go into which index.

    Every pass over the tables makes a new Selector, so the downsampling counters (keep
    every k-th Aff-Wild2 frame of a class, or of the VA frames) start again and each pass
    selects exactly the same rows.
    """

    def __init__(self, p: BuildParams, splits: Splits):
        self.p, self.schema = p, p.schema()
        self.columns = ["uid", "source", "video", "subject", "split", *label_columns(self.schema)]
        self.val_videos = pa.array(sorted(splits.val_videos), pa.string())
        self.val_subjects = pa.array(sorted(splits.val_subjects), pa.string())
        self.expr_every = {class_index(name, self.schema): k for name, k in p.expr_downsample.items()}
        self.expr_seen = np.zeros(len(self.schema.expressions), np.int64)  # Aff-Wild2 EXPR frames so far, per class
        self.va_seen = 0  # Aff-Wild2 VA frames so far
        self.code_dtype = mlros.code_dtype(len(self.schema.aus))

    def __call__(self, source: str, batch: pa.RecordBatch) -> Selection:
        p = self.p
        split = batch["split"]
        train = as_numpy(pc.equal(split, "train"))
        leaked = train & as_numpy(pc.or_(pc.is_in(qualified(batch, "video"), self.val_videos),
                                         pc.is_in(qualified(batch, "subject"), self.val_subjects)))
        train &= ~leaked
        au = np.stack([batch[name].to_numpy() for name in self.schema.aus], axis=1)
        expr = batch["expr"].to_numpy()
        va = np.stack([as_numpy(batch["valence"]), as_numpy(batch["arousal"])], axis=1)
        check_labels(batch["uid"], au, expr, va, self.schema)
        aw = source == VAL_SOURCE

        masks = {
            "AU": train & (au >= 0).any(axis=1) if source in p.au_sources else np.zeros(len(train), bool),
            "EXPR": train & (expr >= 0) if source in p.expr_sources else np.zeros(len(train), bool),
            "VA": train & ~np.isnan(va).any(axis=1) if source in p.va_sources else np.zeros(len(train), bool),
            "val": as_numpy(pc.equal(split, "val")) if aw else np.zeros(len(train), bool),
        }
        if aw:  # the reference's downsampling of Aff-Wild2's dominant classes and of its VA frames
            for k, every in self.expr_every.items():
                rows = np.flatnonzero(masks["EXPR"] & (expr == k))
                masks["EXPR"][rows[(self.expr_seen[k] + np.arange(len(rows))) % every != 0]] = False
                self.expr_seen[k] += len(rows)
            rows = np.flatnonzero(masks["VA"])
            masks["VA"][rows[(self.va_seen + np.arange(len(rows))) % p.va_downsample != 0]] = False
            self.va_seen += len(rows)
        au_code = mlros.positive_codes(au[masks["AU"]]).astype(self.code_dtype)
        return Selection(masks, train, leaked, au, expr, va, au_code, va_cells(va[masks["VA"]]))


def check_labels(uids: pa.Array, au: np.ndarray, expr: np.ndarray, va: np.ndarray, schema: LabelSchema) -> None:
    """Every row's labels, whatever its split and whether a task selects it: AUs 1, 0 or
    -1, classes -1..classes-1, valence and arousal in [-1, 1] or NaN (unknown); the
    first wrong value is a ValueError naming its frame."""
    classes = len(schema.expressions)
    if len(expr) and (expr.min() < -1 or expr.max() >= classes):
        i = int(np.flatnonzero((expr < -1) | (expr >= classes))[0])
        raise ValueError(f"expression classes must be -1..{classes - 1}, got {expr.min()}..{expr.max()}: frame "
                         f"{uids[i].as_py()} has {expr[i]}")
    wrong = (au != 1) & (au != 0) & (au != -1) if au.size and (au.dtype.kind not in "iub" or au.min() < -1
                                                               or au.max() > 1) else None
    if wrong is not None and wrong.any():
        i, j = (int(k[0]) for k in np.nonzero(wrong))
        raise ValueError(f"AU values must be 1, 0 or -1 (unknown), got {au[i, j]} for {schema.aus[j]} of frame "
                         f"{uids[i].as_py()}")
    bad = ~np.isnan(va) & ~((va >= VA_RANGE[0]) & (va <= VA_RANGE[1]))  # inf fails the range, NaN is unknown
    if bad.any():
        i, j = (int(k[0]) for k in np.nonzero(bad))
        raise ValueError(f"valence/arousal must lie in [-1, 1] or be unknown (NaN), got {va[i, j]} for "
                         f"{('valence', 'arousal')[j]} of frame {uids[i].as_py()}")


def class_index(name: str, schema: LabelSchema) -> int:
    if name not in schema.expressions:
        raise DataError(f"build.expr_downsample: class {name!r} is not one of schema {schema.name}: "
                        f"{', '.join(schema.expressions)}")
    return schema.expressions.index(name)


def selections(files: list[Path], sources: list[str], selector: Selector, columns: list[str] | None = None):
    """(source, batch, selection) for every batch of every frame table, in order; the
    batches hold ``columns`` (default: what the selector reads) of the selector's schema."""
    for source, path in zip(sources, files):
        for batch in read_batches(path, columns or selector.columns, selector.schema):
            try:
                selection = selector(source, batch)
            except ValueError as e:  # e.g. an AU value other than -1/0/1, VA outside [-1, 1]
                raise DataError(f"{path}: {e}") from None
            yield source, batch, selection


def va_cells(va: np.ndarray) -> np.ndarray:
    """Joint VA cell (valence bin * VA_BINS + arousal bin) of rows where both are known."""
    return va_to_bin(va[:, 0]) * VA_BINS + va_to_bin(va[:, 1])
