"""ABAW submission files from ``predict``'s tables: ``<task>_Set/<video>.txt``, a header
line, then one line per video frame (docs/formats.md, "Aff-Wild2"). The AUs and classes
are the table's (its bundle's label schema): the 2020 files of a 2020 model, the 2022+
files (12 AUs, 8 classes with Other) of a 2022 one.

Every frame needs a prediction: a frame without a face (a row with ``face`` false) takes
the nearest earlier frame's, or the nearest later one's before the first face. A frame
without a row (a table of ``predict --every N``, or cut at its start) is refused: filling
it would be a guess ABAW scores as a prediction. A row with a face must carry every
prediction, each in its range: a value edited by hand into nonsense, or a missing cell, is
refused naming the row, never filled or written as given. A table of a video predict could
not decode whole is refused (its ``frames_not_decoded`` column, or its outputs list, says
so): its frame numbers may be shifted after the damage.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.errors import DataError
from pipeline.core.fileio import atomic_write, require_regular
from pipeline.core.labels import MAX_FRAMES, TASKS
from pipeline.core.schema import ABAW2022, SCHEMAS
from pipeline.predict.outputs import recorded
from pipeline.predict.rows import lost_frames, table_labels

#: More frames than any video holds (3.9 days at 30 frames/s): a frame number beyond it is
#: a damaged table, whose filling would write billions of lines.


def shown(value) -> str:
    """A cell as the user wrote it (numpy's scalars without their type name)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def row_line(path: Path):
    """``row -> "<path>: row <n>"`` as the user counts a table's rows (a CSV's header is row 1)."""
    return lambda i: f"{path}: row {int(i) + 2}" if path.suffix != ".parquet" else f"{path}: row {int(i)}"


def face_flags(rows: pd.DataFrame, line) -> pd.Series:
    """The ``face`` column as booleans (a CSV edited by hand may spell them); anything else
    is refused naming its row."""
    face = rows["face"].map({True: True, False: False, "True": True, "False": False, "true": True, "false": False})
    if face.isna().any():
        i = face.isna().idxmax()
        raise DataError(f"{line(i)}: face {shown(rows['face'][i])} is not true or false")
    return face.astype(bool)


def read_predictions(path: Path, tasks=TASKS) -> tuple[pd.DataFrame, list[str], list[str]]:
    """A predict table of one video, one row per frame (the main face), checked; and the
    AUs and expression classes it has columns for. For the AU files (in ``tasks``) they
    must be all of one era's AUs: ABAW scores those columns."""
    require_regular(path, "a predict table")
    try:
        aus, classes = table_labels(path)
        columns = ["frame", "file", "face", "track", *aus, "expression", "valence", "arousal"]
        if not aus:
            raise ValueError("no AU column (AU1, AU2, ...)")
        rows = pd.read_parquet(path, columns=columns) if path.suffix == ".parquet" else pd.read_csv(path, usecols=columns)
        lost = recorded(path, "predict").get("frames_not_decoded") or lost_frames(path)  # the table says so too
    except (ValueError, KeyError, OSError) as e:
        raise DataError(f"{path}: not a table written by `mtaffect predict` ({str(e).splitlines()[0][:120]})") from None
    if lost:  # predict numbers frames in decoding order: after a lost one, every label would be shifted
        raise DataError(f"{path}: predict could not decode {lost} frame(s) of its video (truncated or damaged), so "
                        "its frame numbers may not be the video's: not exported (predict on an undamaged copy)")
    era = next((s for s in SCHEMAS.values() if s.expressions == tuple(classes)), None)
    if era is None:
        raise DataError(f"{path}: probabilities of the classes {', '.join(classes)}: neither the 7 basic expressions "
                        "nor those and Other (a column removed?)")
    if sorted(aus) == sorted(era.aus):  # the columns are named: their order in the table does not matter
        aus = list(era.aus)
    if "AU" in tasks and tuple(aus) != era.aus:
        raise DataError(f"{path}: predicts the AUs {', '.join(aus)} (a model of another AU set), not the "
                        f"{len(era.aus)} of the {era.name} ABAW files ({', '.join(era.aus)}): export only its "
                        "other tasks (--task EXPR --task VA)")
    if not len(rows):
        raise DataError(f"{path}: the table has no rows (its header only): nothing to export")
    line = row_line(path)
    frame = pd.to_numeric(rows["frame"], errors="coerce")
    bad = frame.isna() | (frame < 0) | (frame != frame.round()) | (frame >= MAX_FRAMES)
    if bad.any():
        i = bad.idxmax()
        raise DataError(f"{line(i)}: frame {shown(rows['frame'][i])} is not a frame number (0 .. {MAX_FRAMES - 1:,})")
    rows["frame"] = frame.astype(np.int64)
    if rows["file"].notna().any() and (rows["file"].astype(str) != "").any():
        raise DataError(f"{path}: rows of images (a folder's table), not of a video's frames: ABAW's per-task "
                        "submissions are per video (s-Aff-Wild2's multi-task file of images: --mtl)")
    twice = rows["frame"].duplicated()
    if twice.any():
        i = twice.idxmax()
        first = rows.index[(rows["frame"] == rows["frame"][i]) & ~twice][0]
        why = ("a table of every face (--all-faces): predict without it" if rows["track"].nunique() > 1
               else "the table was edited or joined?")
        raise DataError(f"{line(i)}: frame {rows['frame'][i]} again (first at {line(first).rsplit(': ', 1)[1]}): "
                        f"ABAW wants one row per frame; {why}")
    present = np.unique(rows["frame"].to_numpy())
    if present[0] > 0:  # predict writes frame 0 on: a table cut at its start
        raise DataError(f"{path}: no row for frames 0..{present[0] - 1} (its first row is frame {present[0]}): ABAW "
                        "wants a row for every frame from 0: export the whole table predict wrote")
    gap = np.flatnonzero(np.diff(present) > 1)
    if len(gap):
        raise DataError(f"{path}: no row for frame {present[gap[0]] + 1} (between frames {present[gap[0]]} and "
                        f"{present[gap[0] + 1]}): ABAW wants a row for every frame: predict without --every")
    rows["face"] = face_flags(rows, line)
    if not rows["face"].any():
        raise DataError(f"{path}: no face in any frame: nothing to fill the frames with")
    _check_face_rows(rows[rows["face"]], line, aus, classes)
    return rows.sort_values("frame", kind="stable").reset_index(drop=True), aus, classes


def _check_face_rows(faces: pd.DataFrame, line, aus: list[str], classes: list[str]) -> None:
    """Every prediction of a row with a face is there and in its range."""
    for column in [*aus, "expression", "valence", "arousal"]:
        missing = faces[column].isna()
        if missing.all():
            raise DataError(f"{line(faces.index[0])}: column {column} is empty in every row with a face")
        if missing.any():
            raise DataError(f"{line(missing.idxmax())}: {column} is missing in a row with a face")
    for column in aus:
        bad = ~faces[column].isin([0, 1])
        if bad.any():
            raise DataError(f"{line(bad.idxmax())}: {column} = {shown(faces[column][bad.idxmax()])}, not 0 or 1")
    bad = ~faces["expression"].isin(classes)
    if bad.any():
        raise DataError(f"{line(bad.idxmax())}: expression {shown(faces['expression'][bad.idxmax()])} is none of "
                        f"{', '.join(classes)}")
    for column in ("valence", "arousal"):
        value = pd.to_numeric(faces[column], errors="coerce")
        bad = value.isna() | (value.abs() > 1)
        if bad.any():
            raise DataError(f"{line(bad.idxmax())}: {column} {shown(faces[column][bad.idxmax()])} is not a number in [-1, 1]")


def filled(rows: pd.DataFrame):
    """(frame, face row) for every frame 0 .. the last frame in the table, streamed: frames
    without a face carry the nearest earlier face's predictions (the nearest later at the
    start)."""
    faces = rows[rows["face"]].to_dict("records")
    k = 0
    for frame in range(int(rows["frame"].max()) + 1):
        while k + 1 < len(faces) and faces[k + 1]["frame"] <= frame:
            k += 1
        yield frame, faces[k]


def header(task: str, aus: list[str], classes: list[str]) -> str:
    return {"AU": ",".join(aus), "EXPR": ",".join(classes), "VA": "valence,arousal"}[task]


def line(task: str, row: dict, aus: list[str], classes: list[str]) -> str:
    if task == "AU":
        return ",".join(str(int(row[a])) for a in aus)
    if task == "EXPR":
        return str(classes.index(row["expression"]))
    return f"{float(row['valence']):.6f},{float(row['arousal']):.6f}"


def output_paths(path: Path, out: Path, tasks) -> dict[str, Path]:
    """task -> the submission file of the table ``path`` (named after its video)."""
    return {task: out / f"{task}_Set" / f"{Path(path).stem}.txt" for task in tasks}


def export(path: Path, out: Path, tasks=TASKS, done=lambda path: None) -> dict[str, Path]:
    """Write the submission files of one predict table, calling ``done`` with each once it
    is complete; returns task -> file."""
    rows, aus, classes = read_predictions(path, tasks)
    written = output_paths(path, out, tasks)
    for task, target in written.items():
        with atomic_write(target) as tmp, open(tmp, "w") as f:
            f.write(header(task, aus, classes) + "\n")
            for _, row in filled(rows):
                f.write(line(task, row, aus, classes) + "\n")
        done(target)
    return written


# --- s-Aff-Wild2's multi-task file ---------------------------------------------------------

#: The multi-task file's name in ``--out`` and its header (docs/formats.md, "s-Aff-Wild2").
MTL_FILE, MTL_HEADER = "MTL_predictions.txt", "image,valence,arousal,expression,aus"

#: Characters a multi-task file's ``<video>/<image>`` cannot hold: its fields are comma-separated
#: and the slash separates the video from the image.
MTL_ODD = r"[,/\\\n\"]"
MTL_ODD_NAMES = {",": "a comma", "/": "a slash", "\\": "a backslash", "\n": "a line break", '"': "a quote"}


def odd_character(name: str) -> str | None:
    """The character of ``name`` (a table's video, an image) the multi-task file cannot hold,
    said in words, or None."""
    odd = re.search(MTL_ODD, name)
    return f"{MTL_ODD_NAMES[odd.group()]} ({odd.group()!r})" if odd else None


def read_image_predictions(path: Path) -> pd.DataFrame:
    """A predict table of one folder of aligned crops (``predict --aligned``), checked: one
    row per image, each with a face and every prediction of the abaw2022 schema."""
    require_regular(path, "a predict table")
    stem = path.stem  # the video field of every line (".csv" is a hidden file's name, no video's)
    if not stem or stem.startswith(".") or odd_character(stem):
        why = f"holds {odd_character(stem)}" if odd_character(stem) else "is empty or starts with a dot"
        raise DataError(f"{path}: the table's name {stem!r} {why}: it names the video in the multi-task file's "
                        "<video>/<image>: rename the table after its video")
    try:
        aus, classes = table_labels(path)
        columns = ["file", "face", *aus, "expression", "valence", "arousal"]
        rows = pd.read_parquet(path, columns=columns) if path.suffix == ".parquet" else pd.read_csv(path, usecols=columns)
    except (ValueError, KeyError, OSError) as e:
        raise DataError(f"{path}: not a table written by `mtaffect predict` ({str(e).splitlines()[0][:120]})") from None
    if sorted(aus) == sorted(ABAW2022.aus):  # named columns, in any order
        aus = list(ABAW2022.aus)
    if (tuple(aus), tuple(classes)) != (ABAW2022.aus, ABAW2022.expressions):
        raise DataError(f"{path}: predicts the AUs {', '.join(aus) or 'none'} and {len(classes)} classes; the "
                        f"multi-task file lists abaw2022's, in its order ({', '.join(ABAW2022.aus)}; the 7 basic "
                        "expressions and Other): a model of that schema")
    if rows.empty:
        raise DataError(f"{path}: no row: nothing to export")
    line = row_line(path)
    files = rows["file"].astype("string")
    unnamed = files.isna() | (files == "").fillna(False)
    if unnamed.any():
        raise DataError(f"{line(unnamed.idxmax())}: no image name: a video's table (the multi-task file is per "
                        "image: predict --aligned on the crops' folders)")
    faults = files.map(odd_character)
    if faults.notna().any():
        i = faults.notna().idxmax()
        raise DataError(f"{line(i)}: image name {files[i]!r} holds {faults[i]}: it cannot be written as "
                        "<video>/<image> in the multi-task file")
    source = recorded(path, "predict").get("input")  # "image" or "folder", when predict wrote this file
    if source == "image" or (source is None and len(files) == 1 and Path(files[0]).stem == path.stem):
        # without predict's record, a table of one image named after it is taken for an image's
        raise DataError(f"{path}: the table of one image, named after it (predict was given image files): the "
                        "multi-task file names each image by its video: predict --aligned on the video's folder")
    if files.duplicated().any():
        i = files.duplicated().idxmax()
        raise DataError(f"{line(i)}: image {files[i]} again: one row per image (predict without --all-faces)")
    face = face_flags(rows, line)
    if not face.all():
        i = (~face).idxmax()
        raise DataError(f"{line(i)}: no face in {files[i]}: the multi-task file needs a prediction per image "
                        "(predict --aligned on the organisers' aligned crops)")
    _check_face_rows(rows, line, aus, classes)
    return rows.assign(file=files)


def export_mtl(tables: list[Path], out: Path) -> Path:
    """``out/MTL_predictions.txt``: the header, then per image of each table (a folder of
    crops, named after its video) ``<video>/<image>,valence,arousal,expression,12 AUs``,
    the expression as its class index (7: Other), sorted by image."""
    lines = []
    for path in tables:
        rows = read_image_predictions(path)
        for row in rows.to_dict("records"):
            aus = ",".join(str(int(row[a])) for a in ABAW2022.aus)
            lines.append(f"{path.stem}/{row['file']},{float(row['valence']):.6f},{float(row['arousal']):.6f},"
                         f"{ABAW2022.expressions.index(row['expression'])},{aus}")
    target = out / MTL_FILE
    with atomic_write(target) as tmp, open(tmp, "w") as f:
        f.write("\n".join([MTL_HEADER, *sorted(lines)]) + "\n")
    return target
