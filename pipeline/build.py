"""The build stage: per-task training sets and the validation set (paper III-A).

Joins the per-source frame tables per task, applies the configured downsampling and
balancing, and writes indexes into the face shards (no image is copied):

- ``train_AU.parquet``, ``train_EXPR.parquet``, ``train_VA.parquet``: one row per distinct
  frame with ``uid``, ``shard``, ``row``, ``weight`` (expected draws per epoch; 1.0 when
  balancing is off) and the frame's labels;
- ``val.parquet``: the Aff-Wild2 validation frames (all three label sets), weight 1;
- the statistics that show what balancing did (``reports/build.json`` and plot data).

Memory does not grow with the strings of the data set: the selection and balancing work
on compact per-frame arrays (labels, and integer codes for source, video, subject), and
each index is written by streaming the selected rows back out of the frame tables.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import balance
from pipeline.config import BuildParams
from pipeline.labels import AU_NAMES, EXPR_NAMES, VA_BIN_CENTRES
from pipeline.sources.base import DataError
from pipeline.store import FrameTableWriter

log = logging.getLogger("mtaffect.build")

LABEL_COLUMNS = [*AU_NAMES, "expr", "valence", "arousal"]
INDEX_COLUMNS = ["uid", "source", "video", "subject", "frame", "shard", "row", *LABEL_COLUMNS]
VAL_SOURCE = "affwild2"  # the paper validates on Aff-Wild2's validation videos only

INDEX_SCHEMA = pa.schema(
    [("uid", pa.string()), ("source", pa.string()), ("video", pa.string()), ("subject", pa.string()),
     ("frame", pa.int32()), ("shard", pa.string()), ("row", pa.int32()),
     *[(au, pa.int8()) for au in AU_NAMES], ("expr", pa.int8()), ("valence", pa.float32()),
     ("arousal", pa.float32()), ("weight", pa.float64())]
)

#: Frame tables are read this many rows at a time, on the calling thread: what the reader
#: holds (and what the allocator keeps cached of it) stays a few MB, whatever the size of
#: the table. Larger batches or reader threads measured tens of MB more, no faster.
READ_BATCH = 8192


# --- the frames, as compact arrays --------------------------------------------------


class Vocabulary:
    """Integer codes for the distinct values of a string column, in first-seen order."""

    def __init__(self):
        self.codes: dict[str, int] = {}

    def encode(self, column: pa.Array) -> np.ndarray:
        # Each distinct value of the batch is looked up once, then the batch maps through.
        column = column.dictionary_encode()
        lookup = np.array([self.codes.setdefault(v, len(self.codes)) for v in column.dictionary.to_pylist()],
                          dtype=np.int32)
        return lookup[column.indices.to_numpy()]

    @property
    def names(self) -> list[str]:
        return list(self.codes)


@dataclass
class Frames:
    """Every frame of the build's sources, in source order then frame-table order.

    Position i is the i-th row of the concatenated frame tables: ``files[k]`` holds
    positions ``starts[k]`` to ``starts[k + 1] - 1``. Only numbers are kept; the index
    files get their strings by reading the selected positions back (``write_index``).
    """

    files: list[Path]
    starts: np.ndarray
    source: np.ndarray   # int32 code into source_names
    video: np.ndarray    # int32 code of "source/video" into video_names
    subject: np.ndarray  # int32 code of "source/subject"
    train: np.ndarray    # bool: split "train" (cleared for frames that leak into validation)
    val: np.ndarray      # bool: split "val"
    au: np.ndarray       # int8 [N, len(AU_NAMES)]: 1, 0, -1 unknown
    expr: np.ndarray     # int8: class, -1 unknown
    va: np.ndarray       # float32 [N, 2]: valence, arousal, NaN unknown
    source_names: list[str]
    video_names: list[str]

    def in_sources(self, names: list[str], rows=slice(None)) -> np.ndarray:
        """Mask of ``rows`` (all frames by default) whose source is one of ``names``."""
        codes = [code for code, name in enumerate(self.source_names) if name in names]
        return np.isin(self.source[rows], codes)


def frame_table_paths(faces_dir: str | Path, sources: list[str]) -> list[Path]:
    paths = [Path(faces_dir) / source / "frames.parquet" for source in sources]
    for source, path in zip(sources, paths):
        if not path.exists():
            raise DataError(f"{path}: missing: source '{source}' has not been extracted "
                            f"(run `dvc repro extract@{source}` or remove it from build.*_sources)")
    return paths


def read_batches(path: Path, columns: list[str]):
    """The record batches of a frame table (only ``columns``), in row order."""
    with pq.ParquetFile(path) as table:
        yield from table.iter_batches(batch_size=READ_BATCH, columns=columns, use_threads=False)


def load_frames(faces_dir: str | Path, sources: list[str]) -> Frames:
    """The columns the selection needs, from the frame tables of ``sources`` (in order).

    Read in record batches into arrays allocated once from the tables' row counts, so
    the only per-frame memory is the arrays themselves (31 bytes a frame) and the
    distinct video and subject names.
    """
    files = frame_table_paths(faces_dir, sources)
    starts = np.cumsum([0] + [pq.read_metadata(f).num_rows for f in files])
    n = int(starts[-1])
    vocabulary = {"source": Vocabulary(), "video": Vocabulary(), "subject": Vocabulary()}
    columns = dict(source=np.empty(n, np.int32), video=np.empty(n, np.int32), subject=np.empty(n, np.int32),
                   train=np.empty(n, bool), val=np.empty(n, bool), au=np.empty((n, len(AU_NAMES)), np.int8),
                   expr=np.empty(n, np.int8), va=np.empty((n, 2), np.float32))
    at = 0
    for path in files:
        for batch in read_batches(path, ["source", "video", "subject", "split", *LABEL_COLUMNS]):
            rows = slice(at, at + batch.num_rows)
            columns["source"][rows] = vocabulary["source"].encode(batch["source"])
            # Videos and subjects are only unique within a source.
            for key in ("video", "subject"):
                qualified = pc.binary_join_element_wise(batch["source"], batch[key], "/")
                columns[key][rows] = vocabulary[key].encode(qualified)
            columns["train"][rows] = pc.equal(batch["split"], "train").to_numpy(zero_copy_only=False)
            columns["val"][rows] = pc.equal(batch["split"], "val").to_numpy(zero_copy_only=False)
            for j, au in enumerate(AU_NAMES):
                columns["au"][rows, j] = batch[au].to_numpy()
            columns["expr"][rows] = batch["expr"].to_numpy()
            # Unknown VA is stored as null; to_numpy turns it into NaN.
            columns["va"][rows, 0] = batch["valence"].to_numpy(zero_copy_only=False)
            columns["va"][rows, 1] = batch["arousal"].to_numpy(zero_copy_only=False)
            at += batch.num_rows
    # Give back what the allocator keeps cached of the batches (mimalloc holds on to it).
    pa.default_memory_pool().release_unused()
    return Frames(files, starts, **columns, source_names=vocabulary["source"].names,
                  video_names=vocabulary["video"].names)


def check_splits(frames: Frames) -> dict:
    """Drop training frames whose video or subject is also in validation; report them.

    Dropping clears their ``train`` flag, so no task selects them.
    """
    leak = frames.train & (np.isin(frames.video, frames.video[frames.val])
                           | np.isin(frames.subject, frames.subject[frames.val]))
    report = {
        "train_videos": len(np.unique(frames.video[frames.train])),
        "val_videos": len(np.unique(frames.video[frames.val])),
        "overlap_frames_dropped": int(leak.sum()),
        "overlap_videos": sorted(frames.video_names[code] for code in np.unique(frames.video[leak])),
    }
    if leak.any():
        log.warning("%d training frames share a video or subject with validation: dropped", int(leak.sum()))
    frames.train &= ~leak
    return report


# --- the task sets: positions into Frames and their weights -------------------------


@dataclass
class TaskSet:
    """One task's training rows (sorted positions into Frames) and their per-epoch weights."""

    rows: np.ndarray
    weight: np.ndarray
    stats: dict


def training_rows(frames: Frames, sources: list[str]) -> np.ndarray:
    return np.flatnonzero(frames.in_sources(sources) & frames.train)


def sizes_by_source(frames: Frames, rows: np.ndarray, weight: np.ndarray) -> dict:
    source = frames.source[rows]
    out = {}
    for name in sorted(frames.source_names[code] for code in np.unique(source)):
        mine = source == frames.source_names.index(name)
        out[name] = {"frames": int(mine.sum()), "expected_draws": float(weight[mine].sum())}
    return out


def build_au(frames: Frames, p: BuildParams) -> TaskSet:
    rows = training_rows(frames, p.au_sources)
    rows = rows[(frames.au[rows] >= 0).any(axis=1)]
    if len(rows) == 0:
        raise DataError(f"AU: no labelled training frame in sources {p.au_sources}")
    labels = frames.au[rows]
    try:
        before = balance.irlbl(labels, names=AU_NAMES)
        mean_before = float(before.mean())
        clones = (balance.ml_ros(labels, budget_pct=p.au_clone_budget, mean_ir=p.au_mean_ir, seed=p.seed,
                                 names=AU_NAMES) if p.au_balance else np.zeros(len(rows), np.int64))
    except balance.NoPositiveLabelError as e:
        raise DataError(f"AU training set (sources {p.au_sources}): {e}") from None
    weight = 1.0 + clones.astype(np.float64)
    after = balance.irlbl_weighted(labels, weight, names=AU_NAMES)
    positive = [labels[:, j] == 1 for j in range(len(AU_NAMES))]  # per column: no [N, L] float copy
    stats = {
        "balanced": p.au_balance,
        "sizes": sizes_by_source(frames, rows, weight),
        "frames": int(len(rows)),
        "clones": int(clones.sum()),
        "positives_before": dict(zip(AU_NAMES, [int(pos.sum()) for pos in positive])),
        "positives_after": dict(zip(AU_NAMES, [float(weight[pos].sum()) for pos in positive])),
        "irlbl_before": dict(zip(AU_NAMES, before.tolist())),
        "irlbl_after": dict(zip(AU_NAMES, after.tolist())),
        "meanir_before": mean_before,
        "meanir_after": float(after.mean()),
        "meanir_target": float(p.au_mean_ir) if p.au_mean_ir is not None else mean_before,
    }
    return TaskSet(rows, weight, stats)


def _class_index(name: str) -> int:
    if name not in EXPR_NAMES:
        raise DataError(f"build.expr_downsample: unknown class {name!r}; classes are {', '.join(EXPR_NAMES)}")
    return EXPR_NAMES.index(name)


def build_expr(frames: Frames, p: BuildParams, warnings: list) -> TaskSet:
    rows = training_rows(frames, p.expr_sources)
    rows = rows[frames.expr[rows] >= 0]
    # Downsample the dominant classes of Aff-Wild2 only (the other sources are small).
    is_aw = frames.in_sources([VAL_SOURCE], rows)
    every = {_class_index(k): v for k, v in p.expr_downsample.items()}
    aw_pos = np.flatnonzero(is_aw)
    keep_aw = aw_pos[balance.downsample_classes(frames.expr[rows][aw_pos], every)]
    keep = np.sort(np.concatenate([keep_aw, np.flatnonzero(~is_aw)]))
    downsampled_away = len(rows) - len(keep)
    rows = rows[keep]
    if len(rows) == 0:
        raise DataError(f"EXPR: no labelled training frame in sources {p.expr_sources}")
    classes = frames.expr[rows]
    absent = [EXPR_NAMES[c] for c in balance.absent_classes(classes)]
    if absent:
        message = f"EXPR training set has no example of {', '.join(absent)}"
        if p.missing_class == "error":
            raise DataError(message + " (set build.missing_class: warn to go on without them)")
        warnings.append(message)
        log.warning(message)
    weight = balance.class_balanced_weights(classes) if p.expr_balance else np.ones(len(rows))
    stats = {
        "balanced": p.expr_balance,
        "sizes": sizes_by_source(frames, rows, weight),
        "frames": int(len(rows)),
        "downsampled_away": int(downsampled_away),
        "class_counts_before": dict(zip(EXPR_NAMES, balance.class_histogram(classes).astype(int).tolist())),
        "class_counts_after": dict(zip(EXPR_NAMES, balance.class_histogram(classes, weights=weight).tolist())),
    }
    return TaskSet(rows, weight, stats)


def build_va(frames: Frames, p: BuildParams) -> TaskSet:
    rows = training_rows(frames, p.va_sources)
    rows = rows[~np.isnan(frames.va[rows]).any(axis=1)]
    is_aw = frames.in_sources([VAL_SOURCE], rows)
    aw_pos = np.flatnonzero(is_aw)
    keep = np.sort(np.concatenate([aw_pos[balance.downsample_by(len(aw_pos), p.va_downsample)],
                                   np.flatnonzero(~is_aw)]))
    downsampled_away = len(rows) - len(keep)
    rows = rows[keep]
    if len(rows) == 0:
        raise DataError(f"VA: no labelled training frame in sources {p.va_sources}")
    va = frames.va[rows].astype(np.float64)
    weight = balance.va_balanced_weights(va, mode=p.va_bins) if p.va_balance else np.ones(len(rows))
    stats = {
        "balanced": p.va_balance,
        "mode": p.va_bins,
        "sizes": sizes_by_source(frames, rows, weight),
        "frames": int(len(rows)),
        "downsampled_away": int(downsampled_away),
        "bin_centres": np.round(VA_BIN_CENTRES, 4).tolist(),
        "bin_counts_before": balance.bin_histogram(va, mode="marginal").astype(int).tolist(),
        "bin_counts_after": np.round(balance.bin_histogram(va, mode="marginal", weights=weight), 6).tolist(),
        "joint_counts_before": balance.bin_histogram(va, mode="joint").astype(int).tolist(),
        "joint_counts_after": np.round(balance.bin_histogram(va, mode="joint", weights=weight), 6).tolist(),
    }
    return TaskSet(rows, weight, stats)


# --- writing the indexes ------------------------------------------------------------


def write_index(frames: Frames, rows: np.ndarray, weight: np.ndarray, path: Path) -> None:
    """Write the frames at ``rows`` (sorted positions) with their ``weight`` to ``path``.

    Each frame table is read one record batch at a time and only the batch's selected
    rows go on to the writer, whose row groups have a fixed size: memory holds a batch
    and a row group whatever the data set's size, and the bytes depend on the rows only.
    """
    writer = FrameTableWriter(path, schema=INDEX_SCHEMA)
    try:
        for k, file in enumerate(frames.files):
            start = frames.starts[k]
            if np.searchsorted(rows, start) == np.searchsorted(rows, frames.starts[k + 1]):
                continue  # nothing selected from this source: don't read it
            for batch in read_batches(file, INDEX_COLUMNS):
                lo, hi = np.searchsorted(rows, [start, start + batch.num_rows])
                if hi > lo:
                    picked = batch.take(pa.array(rows[lo:hi] - start))
                    writer.add({**dict(zip(picked.schema.names, picked.columns)), "weight": weight[lo:hi]})
                start += batch.num_rows
    except BaseException:
        writer.abort()
        raise
    writer.close()
    pa.default_memory_pool().release_unused()  # as in load_frames


def build(faces_dir: str | Path, out: str | Path, p: BuildParams) -> dict:
    """Write the three training indexes and the validation index; return the report."""
    out = Path(out)
    sources = sorted(set(p.au_sources) | set(p.expr_sources) | set(p.va_sources) | {VAL_SOURCE})
    frames = load_frames(faces_dir, sources)
    split_report = check_splits(frames)
    warnings: list[str] = []
    tasks = {"AU": build_au(frames, p), "EXPR": build_expr(frames, p, warnings), "VA": build_va(frames, p)}
    val = np.flatnonzero(frames.in_sources([VAL_SOURCE]) & frames.val)
    if len(val) == 0:
        raise DataError(f"validation: no '{VAL_SOURCE}' frame with split 'val' (Aff-Wild2 Validation_Set)")
    val_counts = {
        "frames": int(len(val)),
        "videos": len(np.unique(frames.video[val])),
        "AU": int((frames.au[val] >= 0).any(axis=1).sum()),
        "EXPR": int((frames.expr[val] >= 0).sum()),
        "VA": int((~np.isnan(frames.va[val])).all(axis=1).sum()),
    }
    for task in ("AU", "EXPR", "VA"):
        if val_counts[task] == 0:
            warnings.append(f"validation set has no {task} label: {task} metrics will be reported as missing")
    # Everything is checked before the first file is written: a failed build writes nothing.
    for task, ts in tasks.items():
        write_index(frames, ts.rows, ts.weight, out / f"train_{task}.parquet")
    write_index(frames, val, np.ones(len(val)), out / "val.parquet")
    return {
        "sources": sources,
        "splits": split_report,
        "AU": tasks["AU"].stats,
        "EXPR": tasks["EXPR"].stats,
        "VA": tasks["VA"].stats,
        "val": val_counts,
        "warnings": warnings,
    }
