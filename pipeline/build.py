"""The build stage: per-task training sets and the validation set (paper III-A).

Joins the per-source frame tables per task, applies the configured downsampling and
balancing, and writes indexes into the face shards (no image is copied):

- ``train_AU.parquet``, ``train_EXPR.parquet``, ``train_VA.parquet``: one row per distinct
  frame with ``uid``, ``shard``, ``row``, ``weight`` (expected draws per epoch; 1.0 when
  balancing is off) and the frame's labels;
- ``val.parquet``: the Aff-Wild2 validation frames (all three label sets), weight 1;
- the statistics that show what balancing did (``reports/build.json`` and plot data).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline import balance
from pipeline.config import BuildParams
from pipeline.labels import AU_NAMES, EXPR_NAMES, VA_BIN_CENTRES
from pipeline.sources.base import DataError
from pipeline.store import write_parquet

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


def load_frames(faces_dir: str | Path, sources: list[str]) -> pd.DataFrame:
    """The frame tables of ``sources`` (only the columns the build needs), in source order."""
    tables = []
    for source in sources:
        path = Path(faces_dir) / source / "frames.parquet"
        if not path.exists():
            raise DataError(f"{path}: missing: source '{source}' has not been extracted "
                            f"(run `dvc repro extract@{source}` or remove it from build.*_sources)")
        tables.append(pd.read_parquet(path, columns=[*INDEX_COLUMNS, "split"]))
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=[*INDEX_COLUMNS, "split"])


@dataclass
class TaskSet:
    """One task's training rows and their per-epoch weights."""

    frames: pd.DataFrame
    weight: np.ndarray
    stats: dict


def check_splits(frames: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Drop training frames whose video or subject is also in validation; report them."""
    val = frames[frames["split"] == "val"]
    val_videos = set(zip(val["source"], val["video"]))
    val_subjects = set(zip(val["source"], val["subject"]))
    train = frames["split"] == "train"
    leak = train & (pd.Series(list(zip(frames["source"], frames["video"]))).isin(val_videos).to_numpy()
                    | pd.Series(list(zip(frames["source"], frames["subject"]))).isin(val_subjects).to_numpy())
    report = {
        "train_videos": int(frames.loc[train, ["source", "video"]].drop_duplicates().shape[0]),
        "val_videos": len(val_videos),
        "overlap_frames_dropped": int(leak.sum()),
        "overlap_videos": sorted({f"{s}/{v}" for s, v in frames.loc[leak, ["source", "video"]].itertuples(index=False)}),
    }
    if leak.any():
        log.warning("%d training frames share a video or subject with validation: dropped", int(leak.sum()))
    return frames[~leak].reset_index(drop=True), report


def sizes_by_source(frames: pd.DataFrame, weight: np.ndarray | None = None) -> dict:
    out = {}
    for source, group in frames.groupby("source", sort=True):
        entry = {"frames": int(len(group))}
        if weight is not None:
            entry["expected_draws"] = float(weight[group.index.to_numpy()].sum())
        out[source] = entry
    return out


def build_au(frames: pd.DataFrame, p: BuildParams) -> TaskSet:
    rows = frames[frames["source"].isin(p.au_sources) & (frames["split"] == "train")]
    rows = rows[(rows[list(AU_NAMES)].to_numpy() >= 0).any(axis=1)].reset_index(drop=True)
    if rows.empty:
        raise DataError(f"AU: no labelled training frame in sources {p.au_sources}")
    labels = rows[list(AU_NAMES)].to_numpy()
    try:
        before = balance.irlbl(labels, names=AU_NAMES)
        mean_before = float(before.mean())
        clones = (balance.ml_ros(labels, budget_pct=p.au_clone_budget, mean_ir=p.au_mean_ir, seed=p.seed,
                                 names=AU_NAMES) if p.au_balance else np.zeros(len(rows), np.int64))
    except balance.NoPositiveLabelError as e:
        raise DataError(f"AU training set (sources {p.au_sources}): {e}") from None
    weight = 1.0 + clones.astype(np.float64)
    after = balance.irlbl_weighted(labels, weight, names=AU_NAMES)
    stats = {
        "balanced": p.au_balance,
        "sizes": sizes_by_source(rows, weight),
        "frames": int(len(rows)),
        "clones": int(clones.sum()),
        "positives_before": dict(zip(AU_NAMES, (labels == 1).sum(axis=0).astype(int).tolist())),
        "positives_after": dict(zip(AU_NAMES, ((labels == 1) * weight[:, None]).sum(axis=0).tolist())),
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


def build_expr(frames: pd.DataFrame, p: BuildParams, warnings: list) -> TaskSet:
    rows = frames[frames["source"].isin(p.expr_sources) & (frames["split"] == "train") & (frames["expr"] >= 0)]
    rows = rows.reset_index(drop=True)
    # Downsample the dominant classes of Aff-Wild2 only (the other sources are small).
    is_aw = (rows["source"] == VAL_SOURCE).to_numpy()
    every = {_class_index(k): v for k, v in p.expr_downsample.items()}
    aw_pos = np.flatnonzero(is_aw)
    keep_aw = aw_pos[balance.downsample_classes(rows["expr"].to_numpy()[aw_pos], every)]
    keep = np.sort(np.concatenate([keep_aw, np.flatnonzero(~is_aw)]))
    downsampled_away = len(rows) - len(keep)
    rows = rows.iloc[keep].reset_index(drop=True)
    if rows.empty:
        raise DataError(f"EXPR: no labelled training frame in sources {p.expr_sources}")
    classes = rows["expr"].to_numpy()
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
        "sizes": sizes_by_source(rows, weight),
        "frames": int(len(rows)),
        "downsampled_away": int(downsampled_away),
        "class_counts_before": dict(zip(EXPR_NAMES, balance.class_histogram(classes).astype(int).tolist())),
        "class_counts_after": dict(zip(EXPR_NAMES, balance.class_histogram(classes, weights=weight).tolist())),
    }
    return TaskSet(rows, weight, stats)


def build_va(frames: pd.DataFrame, p: BuildParams) -> TaskSet:
    rows = frames[frames["source"].isin(p.va_sources) & (frames["split"] == "train")
                  & frames["valence"].notna() & frames["arousal"].notna()].reset_index(drop=True)
    is_aw = (rows["source"] == VAL_SOURCE).to_numpy()
    aw_pos = np.flatnonzero(is_aw)
    keep = np.sort(np.concatenate([aw_pos[balance.downsample_by(len(aw_pos), p.va_downsample)],
                                   np.flatnonzero(~is_aw)]))
    downsampled_away = len(rows) - len(keep)
    rows = rows.iloc[keep].reset_index(drop=True)
    if rows.empty:
        raise DataError(f"VA: no labelled training frame in sources {p.va_sources}")
    va = rows[["valence", "arousal"]].to_numpy(np.float64)
    weight = balance.va_balanced_weights(va, mode=p.va_bins) if p.va_balance else np.ones(len(rows))
    stats = {
        "balanced": p.va_balance,
        "mode": p.va_bins,
        "sizes": sizes_by_source(rows, weight),
        "frames": int(len(rows)),
        "downsampled_away": int(downsampled_away),
        "bin_centres": np.round(VA_BIN_CENTRES, 4).tolist(),
        "bin_counts_before": balance.bin_histogram(va, mode="marginal").astype(int).tolist(),
        "bin_counts_after": np.round(balance.bin_histogram(va, mode="marginal", weights=weight), 6).tolist(),
        "joint_counts_before": balance.bin_histogram(va, mode="joint").astype(int).tolist(),
        "joint_counts_after": np.round(balance.bin_histogram(va, mode="joint", weights=weight), 6).tolist(),
    }
    return TaskSet(rows, weight, stats)


def index_table(rows: pd.DataFrame, weight: np.ndarray) -> pa.Table:
    df = rows[INDEX_COLUMNS].copy()
    df["weight"] = np.asarray(weight, dtype=np.float64)
    return pa.Table.from_pandas(df, schema=INDEX_SCHEMA, preserve_index=False)


def build(faces_dir: str | Path, out: str | Path, p: BuildParams) -> dict:
    """Write the three training indexes and the validation index; return the report."""
    out = Path(out)
    sources = sorted(set(p.au_sources) | set(p.expr_sources) | set(p.va_sources) | {VAL_SOURCE})
    frames, split_report = check_splits(load_frames(faces_dir, sources))
    warnings: list[str] = []
    tasks = {"AU": build_au(frames, p), "EXPR": build_expr(frames, p, warnings), "VA": build_va(frames, p)}
    val = frames[(frames["source"] == VAL_SOURCE) & (frames["split"] == "val")].reset_index(drop=True)
    if val.empty:
        raise DataError(f"validation: no '{VAL_SOURCE}' frame with split 'val' (Aff-Wild2 Validation_Set)")
    val_counts = {
        "frames": int(len(val)),
        "videos": int(val["video"].nunique()),
        "AU": int((val[list(AU_NAMES)].to_numpy() >= 0).any(axis=1).sum()),
        "EXPR": int((val["expr"] >= 0).sum()),
        "VA": int(val[["valence", "arousal"]].notna().all(axis=1).sum()),
    }
    for task, n in val_counts.items():
        if task in ("AU", "EXPR", "VA") and n == 0:
            warnings.append(f"validation set has no {task} label: {task} metrics will be reported as missing")
    for task, ts in tasks.items():
        write_parquet(index_table(ts.frames, ts.weight), out / f"train_{task}.parquet")
    write_parquet(index_table(val, np.ones(len(val))), out / "val.parquet")
    report = {
        "sources": sources,
        "splits": split_report,
        "AU": tasks["AU"].stats,
        "EXPR": tasks["EXPR"].stats,
        "VA": tasks["VA"].stats,
        "val": val_counts,
        "warnings": warnings,
    }
    return report
