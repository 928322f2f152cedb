"""s-Aff-Wild2, the multi-task challenge's static set: one annotation file per split.

Layout (docs/formats.md): ``MTL_Challenge/training_set_annotations*.txt`` and
``validation_set_annotations*.txt``, header ``image,valence,arousal,expression,aus``, then
one row per image: ``<video>/<NNNNN>.jpg``, valence, arousal, the expression (0..7, Other
7) and the 12 AUs of the 2022 schema, each unknown on its own (-5 for valence/arousal, -1
for the rest). Faces are the organisers' ``cropped_aligned/<video>/<NNNNN>.jpg`` (frame
NNNNN - 1). The files are read line by line, never whole.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from pipeline.core.labels import AFFWILD2_INVALID, AU_UNKNOWN, EXPR_UNKNOWN
from pipeline.core.schema import ABAW2022, EXPRESSIONS
from pipeline.extraction.sources.base import Job, Problems, SourceRead

SPLITS = {"training_set": "train", "validation_set": "val"}
HEADER = ("image", "valence", "arousal", "expression", "aus")
IMAGE = re.compile(r"([^/\\]+)/(\d{5})\.jpg")


def parse_row(line: str) -> tuple[str, int, np.ndarray, int, tuple[float, float]]:
    """(video, 0-based frame, 12 AUs, expression, (valence, arousal)) of one data row, unknowns
    unknown; ValueError saying what is wrong."""
    cells = [c.strip() for c in line.split(",")]
    if len(cells) != 4 + len(ABAW2022.aus):
        raise ValueError(f"expected {4 + len(ABAW2022.aus)} comma-separated values, got {len(cells)}")
    match = IMAGE.fullmatch(cells[0])
    if match is None:
        raise ValueError(f"image {cells[0]!r} is not <video>/<NNNNN>.jpg")
    if int(match.group(2)) < 1:
        raise ValueError(f"image numbers start at 00001, got {cells[0]!r}")
    valence, arousal = float(cells[1]), float(cells[2])
    if (valence == AFFWILD2_INVALID["VA"]) != (arousal == AFFWILD2_INVALID["VA"]):
        raise ValueError(f"valence {cells[1]} and arousal {cells[2]}: one is unknown (-5), the other not")
    if valence == AFFWILD2_INVALID["VA"]:
        valence = arousal = float("nan")
    elif not (-1 <= valence <= 1 and -1 <= arousal <= 1):
        raise ValueError(f"valence/arousal must be in [-1, 1] or -5, got {cells[1]},{cells[2]}")
    expr = float(cells[3])
    if expr != int(expr) or not -1 <= expr < len(EXPRESSIONS):
        raise ValueError(f"expression must be 0..{len(EXPRESSIONS) - 1} or -1, got {cells[3]}")
    aus = np.array([float(c) for c in cells[4:]])
    if np.any((aus != 0) & (aus != 1) & (aus != AU_UNKNOWN)):
        raise ValueError(f"AU values must be 0, 1 or -1, got {','.join(cells[4:])}")
    return match.group(1), int(match.group(2)) - 1, aus.astype(np.int8), int(expr), (valence, arousal)


def annotation_files(root: Path) -> list[tuple[Path, str]]:
    folder = root / "MTL_Challenge"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: missing (expected MTL_Challenge/training_set_annotations.txt)")
    files = [(p, split) for prefix, split in SPLITS.items() for p in sorted(folder.glob(f"{prefix}_annotations*.txt"))]
    if not files:
        raise FileNotFoundError(f"{folder}: no training_set_annotations*.txt or validation_set_annotations*.txt")
    return files


def read(root: str | Path, problems: Problems) -> SourceRead:
    root = Path(root)
    rows: dict[str, dict[int, tuple]] = {}  # video -> frame -> labels
    splits: dict[str, set[str]] = {}
    result = SourceRead(jobs=[], problems=problems)
    for path, split in annotation_files(root):
        try:
            with open(path, encoding="utf-8-sig", newline="") as f:
                header = f.readline()
                if tuple(c.strip().lower() for c in header.split(",")) != HEADER:
                    problems.reject(str(path), f"bad header {header.strip()!r}: expected {','.join(HEADER)}", line=1)
                    continue
                for lineno, line in enumerate(f, start=2):
                    if not line.strip():
                        continue
                    try:
                        video, frame, aus, expr, va = parse_row(line)
                        if frame in rows.get(video, {}):
                            raise ValueError(f"{video}/{frame + 1:05d}.jpg listed twice")
                    except ValueError as e:
                        problems.reject(str(path), f"bad row: {e}", line=lineno)
                        continue
                    rows.setdefault(video, {})[frame] = (aus, expr, va)
                    splits.setdefault(video, set()).add(split)
        except (OSError, UnicodeDecodeError) as e:
            problems.reject(str(path), f"unreadable annotation file ({type(e).__name__}: {str(e)[:80]})")
    for video in sorted(rows):
        if len(splits[video]) > 1:
            result.notes.append(f"{video}: listed in both splits, kept in val only")
        split = "val" if "val" in splits[video] else "train"
        frames = np.array(sorted(rows[video]), dtype=np.int32)
        labels = [rows[video][f] for f in frames]
        au = np.array([a for a, _, _ in labels], dtype=np.int8).reshape(len(frames), len(ABAW2022.aus))
        expr = np.array([e for _, e, _ in labels], dtype=np.int8)
        va = np.array([v for _, _, v in labels], dtype=np.float32).reshape(len(frames), 2)
        known = (au != AU_UNKNOWN).any(axis=1) | (expr != EXPR_UNKNOWN) | ~np.isnan(va).any(axis=1)
        result.invalid_label_rows += int((~known).sum())
        images = [root / "cropped_aligned" / video / f"{f + 1:05d}.jpg" for f in frames]
        present = np.array([p.exists() for p in images], dtype=bool) & known
        for f in frames[known & ~present]:
            problems.reject(str(root / "cropped_aligned" / video / f"{f + 1:05d}.jpg"), "image missing")
        result.labels_without_frame += int((known & ~present).sum())
        if present.any():
            result.jobs.append(Job(source="saffwild2", video=video, subject=video, split=split, mode="aligned",
                                   frames=frames[present], images=[str(p) for p, k in zip(images, present) if k],
                                   aus=ABAW2022.aus, au=au[present], expr=expr[present], va=va[present]))
    if not result.jobs:
        raise FileNotFoundError(f"{root}: no labelled image with a face crop")
    return result
