"""AffectNet: expression and valence/arousal of the same image, in either of its two layouts.

- The manually annotated release: ``Manually_Annotated_file_lists/training.csv`` and
  ``validation.csv`` (header ``subDirectory_filePath,face_x,face_y,face_width,face_height,
  facial_landmarks,expression,valence,arousal``; 68 landmarks as ``x1;y1;...``) over
  ``Manually_Annotated_Images/<subDirectory_filePath>``.
- The per-image release: ``train_set/images/<id>.jpg`` (and ``val_set``) with
  ``annotations/<id>_exp.npy``, ``_val.npy``, ``_aro.npy`` and ``_lnd.npy``.

Expression codes: 0 Neutral, 1 Happiness, 2 Sadness, 3 Surprise, 4 Fear, 5 Disgust, 6 Anger,
7 Contempt (Other here: the 2022 schemas' eighth class, unknown under abaw2020), 8 None and
9 Uncertain (unknown), 10 No-Face (a counted skip). Valence/arousal -2: unknown. The 68
landmarks give the alignment directly, as AFEW-VA's do (docs/formats.md).
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from pipeline.core.errors import DataError
from pipeline.core.schema import EXPRESSIONS, UNKNOWN
from pipeline.extraction.align import landmarks5_from_68
from pipeline.extraction.sources.base import IMAGE_EXTENSIONS, Job, Problems, SourceRead, absent, not_utf8, read_text

#: AffectNet's codes 0..9 as expression codes of the frame tables (None, Uncertain: unknown).
TO_EXPR = tuple(EXPRESSIONS.index(n) for n in ("Neutral", "Happiness", "Sadness", "Surprise", "Fear", "Disgust",
                                               "Anger", "Other")) + (UNKNOWN, UNKNOWN)
NO_FACE = 10
VA_UNKNOWN = -2.0
CSV_FILES = {"validation": "val", "training": "train"}  # validation first: of an image in both, its row is kept
NPY_SETS = {"train_set": "train", "val_set": "val"}
HEADER = ("subdirectory_filepath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
          "expression", "valence", "arousal")
CHUNK = 1000  # images per job of the per-image layout (its files have no folders to group by)


def labels(code: float, valence: float, arousal: float, points) -> tuple[int, tuple[float, float], np.ndarray]:
    """(expression code, (valence, arousal), five points) of one image, unknowns unknown;
    ValueError saying what is wrong (No-Face included)."""
    if not np.isfinite([code, valence, arousal]).all():
        raise ValueError(f"values must be numbers, got {code},{valence},{arousal}")
    if code != int(code) or not 0 <= code <= NO_FACE:
        raise ValueError(f"expression code must be 0..{NO_FACE}, got {code}")
    if code == NO_FACE:
        raise ValueError("No-Face (code 10): no face to learn from")
    va = (valence, arousal)
    if (valence == VA_UNKNOWN) != (arousal == VA_UNKNOWN):
        raise ValueError(f"one of valence and arousal is unknown (-2), the other not, got {valence},{arousal}")
    if valence == VA_UNKNOWN:
        va = (np.nan, np.nan)
    elif not (-1 <= valence <= 1 and -1 <= arousal <= 1):
        raise ValueError(f"valence/arousal must be in [-1, 1] or -2, got {valence},{arousal}")
    points = np.asarray(points, dtype=np.float64)
    if points.size != 136:
        raise ValueError(f"landmarks must be 68 (x, y) points, 136 numbers, got {points.size}")
    points = points.reshape(68, 2)
    if not np.isfinite(points).all() or np.ptp(points, axis=0).max() < 1:
        raise ValueError("landmarks must be 68 distinct finite (x, y) points")
    return TO_EXPR[int(code)], va, landmarks5_from_68(points)


def load_npy(path: Path) -> np.ndarray:
    """One annotation file's array, or a ValueError naming the file (never numpy's advice to
    allow pickles: a file that needs them is no annotation)."""
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as e:
        if str(e).startswith("Object arrays"):  # numpy: an array file of Python objects (pickled)
            raise ValueError(f"{path.name}: holds Python objects (a pickle), not a numeric array: refused") from None
        raise ValueError(f"{path.name}: not a NumPy array file (damaged)") from e
    except (OSError, EOFError) as e:  # EOFError: an empty file
        raise ValueError(f"{path.name}: not a NumPy array file ({'empty' if path.stat().st_size == 0 else 'damaged'})"
                         ) from e


def number(value: np.ndarray, path: Path) -> float:
    """The one number an ``_exp``/``_val``/``_aro`` file holds, or a ValueError naming it."""
    try:
        return float(np.asarray(value).reshape(-1)[0])
    except (ValueError, TypeError, IndexError):
        raise ValueError(f"{path.name}: holds {np.asarray(value).reshape(-1)[:1].tolist() or 'nothing'}, not a "
                         "number") from None


def parse_points(text: str) -> np.ndarray:
    """The numbers of a ``x1;y1;x2;...`` landmark string (parsed in C); a ValueError naming
    the first that is none, as ``float`` would."""
    try:
        points = np.fromstring(text, sep=";")
        if points.size == text.count(";") + 1:
            return points
    except ValueError:
        pass
    return np.array([float(v) for v in text.split(";")])  # raises naming the bad value


def read_csv_layout(root: Path, problems: Problems, result: SourceRead) -> dict[tuple[str, str], list]:
    """(split, subdirectory) -> [(image, expression, va, points, box)] of the file lists' good
    rows. Whether a box lies in its image is the extraction's check: it reads the image."""
    groups: dict[tuple[str, str], list] = {}
    folder, images = root / "Manually_Annotated_file_lists", root / "Manually_Annotated_Images"
    listed: dict[str, set[str]] = {}  # subdirectory -> its files, listed once (not one stat per row)
    seen: dict[str, str] = {}  # image -> the split whose row is kept, across both files
    named: set[str] = set()  # every image a row names, usable or not

    def present(name: str) -> bool:
        sub, _, base = name.rpartition("/")
        if sub not in listed:
            where = images / sub
            listed[sub] = {e.name for e in os.scandir(where) if e.is_file()} if where.is_dir() else set()
        return base in listed[sub]

    for stem, split in CSV_FILES.items():
        path = folder / f"{stem}.csv"
        if not path.exists():
            result.notes.append(f"{path}: missing: no {split} image from the file lists")
            continue
        text = read_text(path, problems)
        if text is not None and not text.strip():
            problems.reject(str(path), "empty annotation file")
        if not text or not text.strip():
            continue
        lines = text.splitlines()
        if tuple(c.strip().lower() for c in lines[0].split(",")) != HEADER:
            rows = sum(1 for line in lines[1:] if line.strip())  # every row of the file lost, counted as such
            problems.reject(str(path), f"bad header {lines[0].strip()[:80]!r}: expected {','.join(HEADER)}", line=1,
                            n=max(rows, 1))
            continue
        for lineno, row in enumerate(csv.reader(lines[1:]), start=2):
            if not row or not_utf8(",".join(row), path, lineno, problems):
                continue
            named.add(row[0].strip())

            try:
                if len(row) != len(HEADER):
                    raise ValueError(f"expected {len(HEADER)} values, got {len(row)}")
                name = row[0].strip()
                if Path(name).is_absolute() or ".." in Path(name).parts:
                    raise ValueError(f"image {name!r} leaves Manually_Annotated_Images/")
                points = parse_points(row[5])
                expr, va, five = labels(float(row[6]), float(row[7]), float(row[8]), points)
                box = [float(v) for v in row[1:5]]
            except ValueError as e:
                problems.reject(str(path), f"bad row: {e}", line=lineno)
                continue
            if expr == UNKNOWN and np.isnan(va[0]):
                result.invalid_label_rows += 1
                continue
            if not present(name):
                problems.reject(str(path), f"image {name!r} {absent(images / name)}", line=lineno)
                result.labels_without_frame += 1
                continue
            if box[2] <= 0 or box[3] <= 0:
                problems.reject(str(path), f"bad row: the face box is empty, got {','.join(row[1:5])}", line=lineno)
                continue
            if name in seen:  # one image, one face: a second row would extract it twice, or in both splits
                kept = "in both splits (validation's row kept)" if seen[name] != split else "twice (its first row is kept)"
                problems.reject(str(path), f"bad row: an image listed {kept}, got {name}", line=lineno)
                continue
            seen[name] = split
            x, y, w, h = box
            groups.setdefault((split, str(Path(name).parent)), []).append(
                (str(images / name), expr, va, five, (x, y, x + w, y + h)))
    subs = sorted(e.name for e in os.scandir(images) if e.is_dir()) if images.is_dir() else []
    for sub in ["", *subs]:  # the images no row names: counted, never read
        present(f"{sub}/")
        result.frames_without_label += sum(Path(f).suffix.lower() in IMAGE_EXTENSIONS and
                                           (f"{sub}/{f}" if sub else f) not in named for f in listed[sub])
    return groups


def read_npy_layout(root: Path, problems: Problems, result: SourceRead) -> dict[tuple[str, str], list]:
    """(split, chunk) -> [(image, expression, va, points, None)] of the per-image annotations."""
    groups: dict[tuple[str, str], list] = {}
    for folder, split in NPY_SETS.items():
        images, notes = root / folder / "images", root / folder / "annotations"
        if not images.is_dir():
            continue
        for i, image in enumerate(sorted(p for p in images.iterdir() if p.suffix.lower() in (".jpg", ".png"))):
            files = [notes / f"{image.stem}_{k}.npy" for k in ("exp", "val", "aro", "lnd")]
            missing = [f for f in files if not f.is_file()]
            if missing:
                problems.reject(str(missing[0]), "annotation file missing (that image is not read)")
                result.frames_without_label += 1
                continue
            try:
                code, valence, arousal, points = (load_npy(f) for f in files)
                expr, va, five = labels(*(number(v, f) for v, f in zip((code, valence, arousal), files)), points)
            except ValueError as e:
                problems.reject(str(notes / f"{image.stem}_*.npy"), f"bad annotation: {e}")
                continue
            if expr == UNKNOWN and np.isnan(va[0]):
                result.invalid_label_rows += 1
                continue
            groups.setdefault((split, f"{i // CHUNK:04d}"), []).append((str(image), expr, va, five, None))
    return groups


def read(root: str | Path, problems: Problems) -> SourceRead:
    root = Path(root)
    result = SourceRead(jobs=[], problems=problems)
    both = (root / "Manually_Annotated_file_lists").is_dir() and any((root / f).is_dir() for f in NPY_SETS)
    if both:  # which labels would win is not ours to guess
        raise DataError(f"{root}: holds both AffectNet layouts (Manually_Annotated_file_lists/ and "
                        f"{'/ or '.join(NPY_SETS)}/): point sources.affectnet at one of them")
    if (root / "Manually_Annotated_file_lists").is_dir():
        groups = read_csv_layout(root, problems, result)
    elif any((root / f).is_dir() for f in NPY_SETS):
        groups = read_npy_layout(root, problems, result)
    else:
        raise FileNotFoundError(f"{root}: neither Manually_Annotated_file_lists/ (with Manually_Annotated_Images/) "
                                "nor train_set/ and val_set/ (images/, annotations/): not an AffectNet layout")
    for (split, group), rows in sorted(groups.items()):
        rows.sort(key=lambda r: r[0])  # frame numbers: the images' order in their group
        video = f"{split}-{group}"  # train and val never share a name: no leak check drops either
        result.jobs.append(Job(
            source="affectnet", video=video, subject=video, split=split, mode="landmarks",
            frames=np.arange(len(rows)), images=[r[0] for r in rows],
            expr=np.array([r[1] for r in rows], dtype=np.int8), va=np.array([r[2] for r in rows], dtype=np.float32),
            landmarks=np.array([r[3] for r in rows], dtype=np.float32), labels_from=str(root),
            boxes=None if rows[0][4] is None else np.array([r[4] for r in rows], dtype=np.float32)))
    if not result.jobs:
        raise FileNotFoundError(f"{root}: no usable AffectNet image (every row skipped or no image present)")
    return result
