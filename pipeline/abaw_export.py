"""ABAW 2020 submission files from ``predict``'s tables: ``<task>_Set/<video>.txt``, a
header line, then one line per video frame (docs/formats.md, "Aff-Wild2").

Every frame needs a prediction: a frame without a face (or skipped with ``--every``) takes
the nearest earlier frame's, or the nearest later one's before the first face.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import DataError
from pipeline.fileio import write_text
from pipeline.labels import AU_NAMES, EXPR_NAMES

HEADERS = {"AU": ",".join(AU_NAMES), "EXPR": ",".join(EXPR_NAMES), "VA": "valence,arousal"}
COLUMNS = ["frame", "face", "track", *AU_NAMES, "expression", "valence", "arousal"]


def read_predictions(path: Path) -> pd.DataFrame:
    """A predict table of one video, one row per frame (the main face)."""
    try:
        rows = pd.read_parquet(path, columns=COLUMNS) if path.suffix == ".parquet" else pd.read_csv(path, usecols=COLUMNS)
    except (ValueError, KeyError, OSError) as e:
        raise DataError(f"{path}: not a table written by `mtaffect predict` ({str(e).splitlines()[0][:120]})") from None
    if rows["frame"].duplicated().any():
        raise DataError(f"{path}: several rows per frame (--all-faces): ABAW wants one face per frame; "
                        "predict without --all-faces")
    if not rows["face"].astype(bool).any():
        raise DataError(f"{path}: no face in any frame: nothing to fill the frames with")
    return rows.sort_values("frame", kind="stable").reset_index(drop=True)


def filled(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per frame 0 .. the last frame in the table; frames without a face (or
    missing) carry the nearest earlier face's predictions (the nearest later at the start)."""
    faces = rows[rows["face"].astype(bool)].set_index("frame")
    frames = np.arange(int(rows["frame"].max()) + 1)
    return faces.reindex(frames).ffill().bfill()


def export(path: Path, out: Path, tasks=("AU", "EXPR", "VA")) -> dict[str, Path]:
    """Write the submission files of one predict table; returns task -> file."""
    table = filled(read_predictions(path))
    video = path.stem
    lines = {"AU": lambda r: ",".join(str(int(r[a])) for a in AU_NAMES),
             "EXPR": lambda r: str(EXPR_NAMES.index(r["expression"])),
             "VA": lambda r: f"{r['valence']:.6f},{r['arousal']:.6f}"}
    written = {}
    for task in tasks:
        body = "\n".join(lines[task](r) for r in table.to_dict("records"))
        written[task] = out / f"{task}_Set" / f"{video}.txt"
        write_text(written[task], f"{HEADERS[task]}\n{body}\n")
    return written
