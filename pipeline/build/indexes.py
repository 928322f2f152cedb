"""The build stage: per-task training sets and the validation set (paper III-A).

Joins the per-source frame tables per task, applies the configured downsampling and
balancing, and writes indexes into the face shards (no image is copied):

- ``train_AU.parquet``, ``train_EXPR.parquet``, ``train_VA.parquet``: one row per distinct
  frame with ``uid``, ``shard``, ``row``, ``weight`` (expected draws per epoch; 1.0 when
  balancing is off) and the frame's labels;
- ``val.parquet``: the Aff-Wild2 validation frames (all three label sets), weight 1;
- the statistics that show what balancing did (``reports/build.json`` and plot data).

The frame tables are streamed three times, one record batch at a time:

1. ``scan_splits``: which videos and subjects are in validation (a set of names);
2. ``scan_tasks``: which frames each task takes (``pipeline.build.selection.Selector``, the same
   decisions on every pass) and the counts that balancing needs: class counts (EXPR), VA-bin counts (VA) and,
   for AU, each selected frame's positive labels as a one-byte code for ML-ROS;
3. ``write_indexes``: the selected rows with their weights, looked up per class, per VA
   cell or, for AU, from ML-ROS's clone counts.

Memory holds a batch, a row group per index and the AU codes and clone counts (9 bytes
per AU frame: ML-ROS needs all at once), whatever the data set's size.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline.build import balance
from pipeline.build.inputs import check_aus_labelled, check_shards
from pipeline.build import mlros
from pipeline.build.params import BuildParams
from pipeline.core.errors import DataError
from pipeline.core.fileio import check_output_folder, replacing_folder, temp_path
from pipeline.core.labels import TASKS, VA_BIN_CENTRES, VA_BINS
from pipeline.build.selection import (OUTPUTS, VAL_SOURCE, Selector, Splits, frame_table_paths, qualified,
                                      scan_splits, schema_report, selections)
from pipeline.core.index import index_columns, index_schema
from pipeline.core.tables import FrameTableWriter, check_own_tables

log = logging.getLogger("mtaffect.build")

INDEX_NAMES = {"AU": "train_AU", "EXPR": "train_EXPR", "VA": "train_VA", "val": "val"}
# --- pass 2: what each task takes, counted ------------------------------------------


@dataclass
class TaskCounts:
    """What pass 2 learns: enough to balance every task and to write the report."""

    frames: dict[str, dict[str, int]] = field(default_factory=lambda: {out: {} for out in OUTPUTS})
    au_codes: list[np.ndarray] = field(default_factory=list)  # per batch, of the AU frames
    expr_classes: dict[str, np.ndarray] = field(default_factory=dict)  # per source, [classes]
    va_table: dict[str, np.ndarray] = field(default_factory=dict)  # per source, [20 * 20]
    expr_labelled_aw: int = 0  # Aff-Wild2 EXPR frames before downsampling
    va_labelled_aw: int = 0
    leaked: int = 0
    leaked_videos: set[str] = field(default_factory=set)
    val_videos: set[str] = field(default_factory=set)
    val_labelled: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TASKS, 0))


def scan_tasks(files: list[Path], sources: list[str], p: BuildParams, splits: Splits) -> TaskCounts:
    counts = TaskCounts()
    for source, batch, s in selections(files, sources, Selector(p, splits)):
        for out in OUTPUTS:
            counts.frames[out][source] = counts.frames[out].get(source, 0) + int(s.masks[out].sum())
        counts.au_codes.append(s.au_code)
        counts.expr_classes[source] = counts.expr_classes.get(source, 0) + np.bincount(
            s.expr[s.masks["EXPR"]], minlength=len(p.schema().expressions))
        counts.va_table[source] = counts.va_table.get(source, 0) + np.bincount(s.va_cell,
                                                                               minlength=VA_BINS * VA_BINS)
        if source == VAL_SOURCE:
            if VAL_SOURCE in p.expr_sources:
                counts.expr_labelled_aw += int((s.train & (s.expr >= 0)).sum())
            if VAL_SOURCE in p.va_sources:
                counts.va_labelled_aw += int((s.train & ~np.isnan(s.va).any(axis=1)).sum())
            val = s.masks["val"]
            counts.val_videos.update(batch["video"].filter(pa.array(val)).unique().to_pylist())
            counts.val_labelled["AU"] += int((s.au[val] >= 0).any(axis=1).sum())
            counts.val_labelled["EXPR"] += int((s.expr[val] >= 0).sum())
            counts.val_labelled["VA"] += int((~np.isnan(s.va[val])).all(axis=1).sum())
        if s.leaked.any():
            counts.leaked += int(s.leaked.sum())
            counts.leaked_videos.update(qualified(batch, "video").filter(pa.array(s.leaked)).unique().to_pylist())
    return counts


# --- balancing: the weights of each task --------------------------------------------


@dataclass
class Weights:
    """How pass 3 weighs a selected row: by its AU frame's clones, class or VA cell."""

    au_clones: np.ndarray  # int64 per AU frame, in selection order
    expr_class: np.ndarray  # [classes]
    va_cell: np.ndarray  # [20 * 20]


def sizes(frames: dict[str, int], draws: dict[str, float]) -> dict:
    return {s: {"frames": frames[s], "expected_draws": float(draws[s])} for s in sorted(frames) if frames[s]}


def balance_au(counts: TaskCounts, p: BuildParams) -> tuple[np.ndarray, dict]:
    codes = np.concatenate(counts.au_codes)
    counts.au_codes = []
    n = len(codes)
    if n == 0:
        raise DataError(f"AU: no labelled training frame in sources {p.au_sources}")
    names = p.schema().aus
    positives = mlros.label_counts(codes, len(names))
    try:
        before = mlros.irlbl_from_counts(positives, names)
        clones = (mlros.ml_ros(codes, len(names), budget_pct=p.au_clone_budget, mean_ir=p.au_mean_ir,
                                       seed=p.seed, names=names)
                  if p.au_balance else np.zeros(n, np.int64))
    except mlros.NoPositiveLabelError as e:
        raise DataError(f"AU training set (sources {p.au_sources}): {e}") from None
    positives_after = positives + mlros.label_counts(codes, len(names), clones)
    after = mlros.irlbl_from_counts(positives_after, names)
    # AU frames come source by source, so each source's clones are one slice.
    frames = counts.frames["AU"]
    ends = np.cumsum([frames[s] for s in frames])
    draws = {s: frames[s] + int(clones[end - frames[s]:end].sum()) for s, end in zip(frames, ends)}
    stats = {
        "balanced": p.au_balance,
        "sizes": sizes(frames, draws),
        "frames": n,
        "clones": int(clones.sum()),
        "positives_before": dict(zip(names, positives.astype(int).tolist())),
        "positives_after": dict(zip(names, positives_after.tolist())),
        "irlbl_before": dict(zip(names, before.tolist())),
        "irlbl_after": dict(zip(names, after.tolist())),
        "meanir_before": float(before.mean()),
        "meanir_after": float(after.mean()),
        "meanir_target": float(p.au_mean_ir) if p.au_mean_ir is not None else float(before.mean()),
    }
    return clones, stats


def balance_expr(counts: TaskCounts, p: BuildParams, warnings: list) -> tuple[np.ndarray, dict]:
    frames = counts.frames["EXPR"]
    n = sum(frames.values())
    if n == 0:
        raise DataError(f"EXPR: no labelled training frame in sources {p.expr_sources}")
    names = p.schema().expressions
    classes = sum(counts.expr_classes.values())
    absent = [names[c] for c in np.flatnonzero(classes == 0)]
    if absent:
        message = f"EXPR training set has no example of {', '.join(absent)}"
        if p.missing_class == "error":
            raise DataError(message + " (set build.missing_class: warn to go on without them)")
        warnings.append(message)
        log.warning(message)
    weight = balance.class_weights(classes) if p.expr_balance else np.ones(len(names))
    draws = {s: float(counts.expr_classes[s] @ weight) for s in frames}
    stats = {
        "balanced": p.expr_balance,
        "sizes": sizes(frames, draws),
        "frames": n,
        "downsampled_away": counts.expr_labelled_aw - frames.get(VAL_SOURCE, 0),
        "class_counts_before": dict(zip(names, classes.astype(int).tolist())),
        "class_counts_after": dict(zip(names, (classes * weight).tolist())),
    }
    return weight, stats


def balance_va(counts: TaskCounts, p: BuildParams) -> tuple[np.ndarray, dict]:
    frames = counts.frames["VA"]
    n = sum(frames.values())
    if n == 0:
        raise DataError(f"VA: no labelled training frame in sources {p.va_sources}")
    table = sum(counts.va_table.values())
    weight = (balance.va_cell_weights(table.reshape(VA_BINS, VA_BINS), mode=p.va_bins).reshape(-1)
              if p.va_balance else np.ones(VA_BINS * VA_BINS))
    draws = {s: float(counts.va_table[s] @ weight) for s in frames}
    joint_before, joint_after = table.reshape(VA_BINS, VA_BINS), (table * weight).reshape(VA_BINS, VA_BINS)

    def marginals(joint):
        return np.stack([joint.sum(axis=1), joint.sum(axis=0)])

    stats = {
        "balanced": p.va_balance,
        "mode": p.va_bins,
        "sizes": sizes(frames, draws),
        "frames": n,
        "downsampled_away": counts.va_labelled_aw - frames.get(VAL_SOURCE, 0),
        "bin_centres": np.round(VA_BIN_CENTRES, 4).tolist(),
        "bin_counts_before": marginals(joint_before).astype(int).tolist(),
        "bin_counts_after": np.round(marginals(joint_after), 6).tolist(),
        "joint_counts_before": joint_before.astype(int).tolist(),
        "joint_counts_after": np.round(joint_after, 6).tolist(),
    }
    return weight, stats


# --- pass 3: writing the indexes ----------------------------------------------------


def relative_shards(shards: pa.Array, table_folder: Path, out: Path) -> pa.Array:
    """Shard paths of a frame table (relative to its folder) made relative to the index
    folder ``out``, so the data folders can move together (docs/architecture.md)."""
    encoded = shards.dictionary_encode()
    moved = [os.path.relpath(os.path.join(table_folder, s), out) for s in encoded.dictionary.to_pylist()]
    return pa.array(moved, pa.string()).take(encoded.indices)


def write_indexes(files: list[Path], sources: list[str], p: BuildParams, splits: Splits, weights: Weights,
                  out: Path, work: Path) -> None:
    """Stream the selected rows of every batch, with their weights, into the four indexes
    of the folder ``out``, written in ``work`` (shard paths relative to ``out``). The row
    groups have a fixed size, so the bytes depend on the rows only."""
    columns = index_columns(p.schema())
    writers = {o: FrameTableWriter(work / f"{INDEX_NAMES[o]}.parquet", schema=index_schema(p.schema(), INDEX_NAMES[o]))
               for o in OUTPUTS}
    au_at = 0
    try:
        tables = dict(zip(sources, files))
        for source, batch, s in selections(files, sources, Selector(p, splits), [*columns, "split"]):
            indexed = batch.select(columns)
            indexed = indexed.set_column(columns.index("shard"), "shard",
                                         relative_shards(indexed["shard"], tables[source].parent, out))
            for o in OUTPUTS:
                rows = np.flatnonzero(s.masks[o])
                if len(rows) == 0:
                    continue
                if o == "AU":
                    weight = 1.0 + weights.au_clones[au_at:au_at + len(rows)]
                    au_at += len(rows)
                elif o == "EXPR":
                    weight = weights.expr_class[s.expr[rows]]
                elif o == "VA":
                    weight = weights.va_cell[s.va_cell]
                else:
                    weight = np.ones(len(rows))
                picked = indexed.take(pa.array(rows))
                writers[o].add({**dict(zip(picked.schema.names, picked.columns)), "weight": weight})
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    for writer in writers.values():
        writer.close()


def input_tables(faces_dir: str | Path, p: BuildParams) -> dict[str, Path]:
    """The frame table of every source the build reads (source -> path), and the face
    shards they name checked (:func:`pipeline.build.inputs.check_shards`)."""
    sources = sorted(set(p.au_sources) | set(p.expr_sources) | set(p.va_sources) | {VAL_SOURCE})
    paths = frame_table_paths(faces_dir, sources)
    check_shards(paths)
    return dict(zip(sources, paths))


def build(faces_dir: str | Path, out: str | Path, p: BuildParams) -> dict:
    """Write the three training indexes and the validation index; return the report."""
    names = [f"{n}.parquet" for n in INDEX_NAMES.values()]
    check_own_tables(out, names, index_schema(p.schema()), any_aus=True)  # an earlier build of any schema
    check_output_folder(out, f"{INDEX_NAMES['val']}.parquet", own=[*names, *(temp_path(n).name for n in names)])
    tables = input_tables(faces_dir, p)
    sources, files = list(tables), list(tables.values())
    check_aus_labelled({s: tables[s] for s in p.au_sources if s in tables}, p.schema())
    splits = scan_splits(files)
    counts = scan_tasks(files, sources, p, splits)
    split_report = {"train_videos": len(splits.train_videos), "val_videos": len(splits.val_videos),
                    "overlap_frames_dropped": counts.leaked, "overlap_videos": sorted(counts.leaked_videos)}
    if counts.leaked:
        log.warning("%d training frames share a video or subject with validation: dropped", counts.leaked)

    warnings: list[str] = []
    au_clones, au_stats = balance_au(counts, p)
    expr_weight, expr_stats = balance_expr(counts, p, warnings)
    va_weight, va_stats = balance_va(counts, p)
    n_val = counts.frames["val"].get(VAL_SOURCE, 0)
    if n_val == 0:
        raise DataError(f"validation: no '{VAL_SOURCE}' frame with split 'val' (Aff-Wild2 Validation_Set)")
    val_counts = {"frames": n_val, "videos": len(counts.val_videos), **counts.val_labelled}
    for task in TASKS:
        if val_counts[task] == 0:
            warnings.append(f"validation set has no {task} label: {task} metrics will be reported as missing")
    # Everything is checked before the first file is written: a failed build writes nothing.
    with replacing_folder(out) as work:  # swapped in at once: interrupted, the earlier four stay
        write_indexes(files, sources, p, splits, Weights(au_clones, expr_weight, va_weight), Path(out), work)
    return {
        "sources": sources,
        "label_schema": schema_report(files, sources, p.schema()),
        "splits": split_report,
        "AU": au_stats,
        "EXPR": expr_stats,
        "VA": va_stats,
        "val": val_counts,
        "warnings": warnings,
    }
