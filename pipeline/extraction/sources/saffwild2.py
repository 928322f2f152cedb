"""s-Aff-Wild2, the multi-task challenge's static set: one annotation file per split.

Layout (docs/formats.md): ``MTL_Challenge/training_set_annotations*.txt`` and
``validation_set_annotations*.txt``, header ``image,valence,arousal,expression,aus``, then
one row per image: ``<video>/<NNNNN>.jpg``, valence, arousal, the expression (0..7, Other
7) and the 12 AUs of the 2022 schema, each unknown on its own (-5 for valence/arousal, -1
for the rest). Faces are the organisers' ``cropped_aligned/<video>/<NNNNN>.jpg`` (frame
NNNNN - 1). A clean file is streamed through Arrow's CSV reader, a block at a time; a
file with any bad row is read line by line, so that each bad row is named; both paths
take one image pattern (:data:`IMAGE_RE`) and neither reads quotes as CSV quoting (a
quoted name is a bad row on both).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from pipeline.core.labels import AFFWILD2_INVALID, AU_UNKNOWN, EXPR_UNKNOWN
from pipeline.core.schema import ABAW2022, EXPRESSIONS
from pipeline.extraction.sources.base import (
    Job, Problems, SourceRead, case_twin, not_utf8, not_utf8_text, unreadable,
)

SPLITS = {"training_set": "train", "validation_set": "val"}
HEADER = ("image", "valence", "arousal", "expression", "aus")
#: ``<video>/<NNNNN>.jpg``, the video a folder name: not ``.`` or ``..`` (nor only dots),
#: which would leave ``cropped_aligned/``. RE2 syntax too: Arrow's fast path takes it as is.
IMAGE_RE = r"(?P<video>[^/\\]*[^/\\.][^/\\]*)/(?P<n>\d{5})\.jpg"
IMAGE = re.compile(IMAGE_RE)
LABELS = [*ABAW2022.aus, "expr", "valence", "arousal"]
WIDTH = 4 + len(ABAW2022.aus)
BLOCK = 1 << 22  # bytes per block of the streaming reader


def parse_row(line: str) -> tuple[str, int, np.ndarray, int, tuple[float, float]]:
    """(video, 0-based frame, 12 AUs, expression, (valence, arousal)) of one data row, unknowns
    unknown; ValueError saying what is wrong."""
    cells = [c.strip() for c in line.split(",")]
    if len(cells) != WIDTH:
        raise ValueError(f"expected {WIDTH} comma-separated values, got {len(cells)}")
    match = IMAGE.fullmatch(cells[0])
    if match is None:
        raise ValueError(f"image {cells[0]!r} is not <video>/<NNNNN>.jpg (a video folder, not . or ..)")
    if int(match.group(2)) < 1:
        raise ValueError(f"image numbers start at 00001, got {cells[0]!r}")
    valence, arousal = float(cells[1]), float(cells[2])
    if (valence == AFFWILD2_INVALID["VA"]) != (arousal == AFFWILD2_INVALID["VA"]):
        raise ValueError(f"one of valence and arousal is unknown (-5), the other not, got {cells[1]},{cells[2]}")
    if valence == AFFWILD2_INVALID["VA"]:
        valence = arousal = float("nan")
    elif not (-1 <= valence <= 1 and -1 <= arousal <= 1):
        raise ValueError(f"valence/arousal must be in [-1, 1] or -5, got {cells[1]},{cells[2]}")
    expr = float(cells[3])
    if not -1 <= expr < len(EXPRESSIONS) or expr != int(expr):  # NaN and inf fail the range first
        raise ValueError(f"expression must be 0..{len(EXPRESSIONS) - 1} or -1, got {cells[3]}")
    aus = np.array([float(c) for c in cells[4:]])
    if np.any((aus != 0) & (aus != 1) & (aus != AU_UNKNOWN)):
        raise ValueError(f"AU values must be 0, 1 or -1, got {','.join(cells[4:])}")
    return match.group(1), int(match.group(2)) - 1, aus.astype(np.int8), int(expr), (valence, arousal)


def read_clean(path: Path) -> pd.DataFrame | None:
    """The rows of a file every row of which :func:`parse_row` accepts, as columns video,
    frame, line, AU..., expr, valence, arousal; None as soon as one row is not so."""
    names = ["image", "valence", "arousal", "expr", *ABAW2022.aus]
    parts, first_line = [], 2  # the header is line 1
    try:
        reader = pacsv.open_csv(
            path, read_options=pacsv.ReadOptions(skip_rows=1, column_names=names, block_size=BLOCK, use_threads=False),
            # A blank line: nulls, so line by line; a quote is a character as in parse_row, never CSV quoting.
            parse_options=pacsv.ParseOptions(ignore_empty_lines=False, quote_char=False),
            convert_options=pacsv.ConvertOptions(column_types={"image": pa.string(),
                                                               **{n: pa.float64() for n in names[1:]}}))
        for batch in reader:
            values = np.column_stack([batch.column(n).to_numpy(zero_copy_only=False) for n in names[1:]])
            image = pc.extract_regex(pc.utf8_trim_whitespace(batch.column("image")), f"^{IMAGE_RE}$")
            if np.isnan(values).any() or image.null_count:
                return None
            va, expr, aus = values[:, :2], values[:, 2], values[:, 3:]
            unknown = va == AFFWILD2_INVALID["VA"]
            if (np.any(unknown[:, 0] != unknown[:, 1]) or np.any(~unknown & ((va < -1) | (va > 1)))
                    or np.any(expr != np.floor(expr)) or np.any((expr < -1) | (expr >= len(EXPRESSIONS)))
                    or np.any((aus != 0) & (aus != 1) & (aus != AU_UNKNOWN))):
                return None
            frame = pc.cast(image.field("n"), pa.int64()).to_numpy() - 1
            if np.any(frame < 0):
                return None
            out = pd.DataFrame({"video": image.field("video").to_numpy(zero_copy_only=False), "frame": frame,
                                "line": first_line + np.arange(len(frame))})
            first_line += len(frame)
            out[list(ABAW2022.aus)] = aus.astype(np.int8)
            out["expr"] = expr.astype(np.int8)
            out[["valence", "arousal"]] = np.where(unknown, np.nan, va).astype(np.float32)
            parts.append(out)
    except (pa.ArrowInvalid, ValueError, UnicodeDecodeError):
        return None
    return pd.concat(parts, ignore_index=True) if parts else None


def read_lines(path: Path, problems: Problems) -> pd.DataFrame:
    """The good rows of a file read line by line, each bad one a rejection naming its line."""
    rows = []
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
        f.readline()
        for lineno, line in enumerate(f, start=2):
            if not line.strip() or not_utf8(line, path, lineno, problems):
                continue
            try:
                video, frame, aus, expr, (valence, arousal) = parse_row(line)
            except ValueError as e:
                problems.reject(str(path), f"bad row: {e}", line=lineno)
                continue
            rows.append((video, frame, lineno, *aus.tolist(), expr, valence, arousal))
    columns = ["video", "frame", "line", *ABAW2022.aus, "expr", "valence", "arousal"]
    return pd.DataFrame(rows, columns=columns)


def read_file(path: Path, problems: Problems, notes: list[str]) -> pd.DataFrame | None:
    """The rows of one annotation file, or None: an empty or unreadable file and one with a
    bad header are counted skips of the whole file, one without data rows a note."""
    try:
        with open(path, "rb") as f:
            if not_utf8_text(path, f.read(4096), problems):
                return None
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            header = f.readline()
            if tuple(c.strip().lower() for c in header.split(",")) != HEADER:  # every row of the file lost
                rows = sum(1 for line in f if line.strip())  # and the first line, when it is a row
                rows += IMAGE.fullmatch(header.split(",")[0].strip()) is not None
                if not rows and not header.strip():
                    problems.reject(str(path), "empty annotation file")
                else:
                    problems.reject(str(path), f"bad header {header.strip()!r}: expected {','.join(HEADER)}",
                                    line=1, n=max(rows, 1))
                return None
            if not any(line.strip() for line in f):
                notes.append(f"{path}: no data rows, only the header: its split has no image")
                return None
        clean = read_clean(path)
        return clean if clean is not None else read_lines(path, problems)
    except OSError as e:
        unreadable(path, e, problems, "annotation file")
        return None


def annotation_files(root: Path) -> tuple[list[tuple[Path, str]], list[str]]:
    """The annotation file of each split, and notes: with two files for one split (e.g.
    ``training_set_annotations.txt`` and ``..._22.txt``) the first by name is read, not both."""
    folder = root / "MTL_Challenge"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: missing (expected MTL_Challenge/training_set_annotations.txt)")
    files, notes = [], []
    for prefix, split in SPLITS.items():
        found = sorted(folder.glob(f"{prefix}_annotations*.txt"))
        if len(found) > 1:
            notes.append(f"{len(found)} annotation files for {prefix}: {', '.join(p.name for p in found)}: "
                         f"only {found[0].name} is read; keep one")
        files += [(p, split) for p in found[:1]]
    if not files:
        raise FileNotFoundError(f"{folder}: no training_set_annotations*.txt or validation_set_annotations*.txt")
    return files, notes


def read(root: str | Path, problems: Problems) -> SourceRead:
    root = Path(root)
    files, notes = annotation_files(root)
    result = SourceRead(jobs=[], problems=problems, notes=notes)
    tables = []
    for path, split in files:
        table = read_file(path, problems, result.notes)
        if table is not None and len(table):
            tables.append(table.assign(split=split, file=str(path)))
    if not tables:
        raise FileNotFoundError(f"{root}: no usable annotation row")
    rows = pd.concat(tables, ignore_index=True)
    # A video's split is decided by all its rows, before duplicates go: a video in both files
    # is validation's, and of an image in both its validation row counts (stable sort: val first).
    split_of = rows.groupby("video")["split"].agg(set)
    rows = rows.sort_values("split", key=lambda s: s != "val", kind="stable")
    duplicate = rows.duplicated(["video", "frame"])  # the first listing counts
    rows, again = rows[~duplicate], rows[duplicate]
    kept = rows.set_index(["video", "frame"]).loc[pd.MultiIndex.from_frame(again[["video", "frame"]])]
    a, b = again[LABELS].to_numpy(float), kept[LABELS].to_numpy(float)
    same = ((a == b) | (np.isnan(a) & np.isnan(b))).all(axis=1)
    for (_, row), (_, first), alike in zip(again.iterrows(), kept.iterrows(), same):
        image, labels = f"{row['video']}/{row['frame'] + 1:05d}.jpg", "the same labels" if alike else "other labels"
        if first["split"] != row["split"]:
            reason = (f"an image listed in both splits (validation's row kept), got {image} with {labels} "
                      f"(the validation row, {first['file']}:{first['line']}, is kept)")
        else:
            reason = f"an image listed twice with {labels}, got {image} again (the first, line {first['line']}, is kept)"
        problems.reject(row["file"], f"bad row: {reason}", line=int(row["line"]))
    au_columns = list(ABAW2022.aus)
    first_unknown = None
    folders = root / "cropped_aligned"
    listed = os.listdir(folders) if folders.is_dir() else []
    for video, group in rows.groupby("video", sort=True):
        splits = split_of[video]
        if len(splits) > 1:
            result.notes.append(f"{video}: listed in both splits, kept in val only")
        group = group.sort_values("frame")
        frames = group["frame"].to_numpy(np.int32)
        au = group[au_columns].to_numpy(np.int8)
        expr = group["expr"].to_numpy(np.int8)
        va = group[["valence", "arousal"]].to_numpy(np.float32)
        known = (au != AU_UNKNOWN).any(axis=1) | (expr != EXPR_UNKNOWN) | ~np.isnan(va).any(axis=1)
        result.invalid_label_rows += int((~known).sum())
        if not known.all() and first_unknown is None:
            first_unknown = group.iloc[int(np.flatnonzero(~known)[0])]
        crops = root / "cropped_aligned" / str(video)
        names = set(os.listdir(crops)) if crops.is_dir() else set()
        present = known & np.array([f"{f + 1:05d}.jpg" in names for f in frames], dtype=bool)
        result.frames_without_label += len({n for n in names if n.endswith(".jpg")} - {f"{f + 1:05d}.jpg" for f in frames})
        twin = None if crops.is_dir() else case_twin(str(video), listed)
        why = f"image missing (no folder {str(video)!r}; {twin!r} differs only in case)" if twin else "image missing"
        for f in frames[known & ~present]:
            problems.reject(f"{crops}/{f + 1:05d}.jpg", why)
        result.labels_without_frame += int((known & ~present).sum())
        if present.any():
            result.jobs.append(Job(source="saffwild2", video=str(video), subject=str(video),
                                   split="val" if "val" in splits else "train", mode="aligned",
                                   frames=frames[present], images=[f"{crops}/{f + 1:05d}.jpg" for f in frames[present]],
                                   aus=ABAW2022.aus, au=au[present], expr=expr[present], va=va[present]))
    for video in set(listed) - set(map(str, split_of.index)):  # a folder no row names (the test set's)
        if (folders / video).is_dir():
            result.frames_without_label += sum(n.endswith(".jpg") for n in os.listdir(folders / video))
    if first_unknown is not None:
        result.notes.append(f"{result.invalid_label_rows} row(s) with every label unknown (AUs -1, expression -1, "
                            f"valence/arousal -5) skipped, the first {first_unknown['file']}:{first_unknown['line']}")
    if not result.jobs:
        raise FileNotFoundError(f"{root}: no labelled image with a face crop")
    return result
