"""Aff-Wild2, every release: annotation sets per task and split, faces per frame.

Layouts (docs/formats.md): the 2020 release's
``annotations/{AU,EXPR,VA}_Set/{Training_Set,Validation_Set}/<video>.txt``, and since 2022
``<annotations>/{AU_Detection,EXPR_Classification (or EXPR_Recognition),VA_Estimation}_Challenge/
{Train_Set,Validation_Set}/<video>.txt``. Every file: one header line naming the columns,
then data line i (0-based) is frame i. The header decides what a row means: every AU it
names is kept (8 in 2020, 12 since), its classes map by name to the expression codes
(Other included). Faces come from the organisers' ``cropped_aligned/<video>/NNNNN.jpg``
(1-based, already aligned) when present, else from ``videos/<video>.*``.

The three tasks' labels are joined per frame: a frame labelled for AU only keeps its
expression and VA unknown. A frame with a label but no cropped image had no face; it is
counted, never invented.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from pipeline.core.labels import (
    AFFWILD2_INVALID, AU_UNKNOWN, EXPR_NAMES, VA_NAMES, affwild2_au, affwild2_expr, affwild2_va, header_order,
)
from pipeline.core.schema import EXPRESSIONS, au_name, au_number
from pipeline.extraction.sources.affwild2_layout import annotations_hint, find_video, task_folders, video_files
from pipeline.extraction.sources.base import Job, Problems, SourceRead, not_utf8, read_text


def header_columns(header: str, task: str, where: str) -> tuple:
    """What a header's columns are: (position, AU name) of its AU columns (AU; columns
    of other names are not ours), expression codes (EXPR), or the positions of valence and
    arousal (VA). ValueError naming the file for a header that names neither era's columns."""
    cols = [c.strip() for c in header.strip().split(",")]
    if task == "AU":
        aus = []
        for k, c in enumerate(cols):
            try:
                aus.append((k, au_name(au_number(c))))
            except ValueError:
                continue
        if not aus:
            raise ValueError(f"{where}: line 1: header {header.strip()!r} names no AU (AU1, AU2, ...)")
        if len({a for _, a in aus}) != len(aus):
            raise ValueError(f"{where}: line 1: header {header.strip()!r} names an AU twice")
        return tuple(aus)
    if task == "EXPR":
        header_order(header, EXPR_NAMES, where)  # the 7 basic classes, in any order
        lower = [e.lower() for e in EXPRESSIONS]
        unknown = [c for c in cols if c.lower() not in lower]
        if unknown or len(set(cols)) != len(cols):
            raise ValueError(f"{where}: line 1: header {header.strip()!r} names classes of neither era "
                             f"({', '.join(unknown) or 'a class twice'})")
        return tuple(lower.index(c.lower()) for c in cols)
    return tuple(header_order(header, VA_NAMES, where))


def parse_annotation(path: Path, task: str, problems: Problems) -> tuple[np.ndarray, np.ndarray, tuple]:
    """(frames, labels) of one annotation file: the 0-based frames of its good rows and their
    labels ([k, AUs] int8, [k] int8 codes or [k, 2] float32), and the AU names of its header
    (AU files); bad lines go to ``problems``.

    Invalid markers (-1, -5) become unknown labels, kept as such: the frame still exists. A
    clean file is read at once (:func:`read_clean`); one with any bad line, line by line,
    so that each bad line is named.
    """
    empty = np.zeros(0, np.int32), no_labels(task, 0), ()
    text = read_text(path, problems)
    if text is None:
        return empty
    lines = text.splitlines()
    if not lines:
        problems.reject(str(path), "empty annotation file")
        return empty
    try:
        columns = header_columns(lines[0], task, str(path))
    except ValueError as e:
        problems.reject(str(path), f"bad header: {e}", line=1)
        return empty
    names = tuple(a for _, a in columns) if task == "AU" else ()
    width = len(without_trailing_empty(lines[0].split(",")))  # the rows' columns (the header may name more than ours)
    clean = read_clean(text, task, columns, 1 if task == "EXPR" else width)
    if clean is not None:
        return (*clean, names)
    same = lambda line: line.replace(" ", "").strip().lower() == lines[0].replace(" ", "").strip().lower()  # noqa: E731
    again = next((i + 2 for i, line in enumerate(lines[1:]) if same(line)), None)
    if again is not None:  # two files joined: the frames after it would each land one or more lines late
        problems.reject(str(path), "the header line again (two files joined?): its frames cannot be placed; "
                        "file skipped", line=again)
        return empty
    while len(lines) > 1 and not lines[-1].strip():  # blank lines at the end only end the file
        lines.pop()
    out: dict[int, object] = {}
    for i, line in enumerate(lines[1:]):
        lineno = i + 2
        if not_utf8(line, path, lineno, problems):
            continue
        if not line.strip():  # a frame without a label, or a line put in: the lines after it cannot be placed
            problems.reject(str(path), "a blank line inside the file: whether it is a frame cannot be told, so "
                            "no line after it is read", line=lineno, n=len(lines) - lineno + 1)
            break
        try:
            cells = without_trailing_empty(line.split(","), width)
            if task == "EXPR":
                # One value per row: an index into the header's class list, which may be
                # in another order than ours.
                k = float(cells[0])
                if len(cells) != 1 or k != int(k):
                    raise ValueError(f"expected one integer, got {line.strip()!r}")
                out[i] = affwild2_expr(int(k), columns)
                continue
            if len(cells) != width:
                raise ValueError(f"expected {width} values (one per header column), got {len(cells)}")
            if task == "AU":
                out[i] = affwild2_au([float(cells[k]) for k, _ in columns])
            else:
                out[i] = affwild2_va(*(cells[j].strip() for j in columns))  # other columns are not ours
        except ValueError as e:
            problems.reject(str(path), f"bad {task} row: {e}", line=lineno)
    frames = np.fromiter(out, np.int32, len(out))
    labels = np.array(list(out.values()), dtype=no_labels(task, len(names)).dtype) if out else no_labels(task, len(names))
    return frames, labels, names


def without_trailing_empty(cells: list[str], keep: int = 1) -> list[str]:
    """A line's cells without the empty ones a trailing comma adds (at least ``keep`` left):
    an export with "AU25," names no 9th column."""
    while len(cells) > keep and not cells[-1].strip():
        cells = cells[:-1]
    return cells


def no_labels(task: str, n_aus: int) -> np.ndarray:
    """An empty label array of the task's shape and type."""
    return np.zeros({"AU": (0, n_aus), "EXPR": (0,), "VA": (0, 2)}[task], np.float32 if task == "VA" else np.int8)


def read_clean(text: str, task: str, columns: tuple, width: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(frames, labels) as :func:`parse_annotation` gives them, when every data line is
    ``width`` numbers making a valid label; None as soon as one is not (then the file is
    read line by line, which names it). Arrow's CSV parser makes a release's 8 million
    lines a matter of seconds; a blank line is a row of nulls there, so never skipped."""
    try:
        table = pacsv.read_csv(
            io.BytesIO(text.encode()), read_options=pacsv.ReadOptions(skip_rows=1, autogenerate_column_names=True,
                                                                      use_threads=False),
            parse_options=pacsv.ParseOptions(ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(column_types={f"f{i}": pa.float64() for i in range(width)}))
    except (pa.ArrowInvalid, ValueError):
        return None
    if table.num_columns != width or table.num_rows == 0:
        return None
    values = np.column_stack([c.combine_chunks().to_numpy(zero_copy_only=False) for c in table.columns])
    if np.isnan(values).any():
        return None
    frames = np.arange(len(values), dtype=np.int32)
    if task == "AU":
        x = values[:, [k for k, _ in columns]]
        if np.any((x != 0) & (x != 1) & (x != AFFWILD2_INVALID["AU"])):
            return None
        unknown = (x == AFFWILD2_INVALID["AU"]).any(axis=1, keepdims=True)  # one -1: the whole row
        return frames, np.where(unknown, AU_UNKNOWN, x).astype(np.int8)
    if task == "EXPR":
        k = values[:, 0]
        if np.any(k != np.floor(k)) or np.any((k != AFFWILD2_INVALID["EXPR"]) & ((k < 0) | (k >= len(columns)))):
            return None
        codes = np.asarray(columns, dtype=np.int8)[np.clip(k, 0, None).astype(np.int64)]
        return frames, np.where(k == AFFWILD2_INVALID["EXPR"], -1, codes).astype(np.int8)
    va = values[:, list(columns)]
    invalid = va == AFFWILD2_INVALID["VA"]
    unknown = invalid.all(axis=1, keepdims=True)
    if np.any(invalid[:, 0] != invalid[:, 1]) or np.any(~unknown & ((va < -1) | (va > 1))):
        return None
    return frames, np.where(unknown, np.nan, va).astype(np.float32)


def crop_names(crops: Path, problems: Problems) -> dict[int, str]:
    """0-based frame -> file name of a video's crops (``00012.jpg`` is frame 11; ``12.jpg``
    too); any other file, or a frame's second file, is a counted skip."""
    names = {}
    listed = sorted(os.listdir(crops))
    numbered = [n for n in listed if n[-4:].lower() == ".jpg" and n[:-4].isdigit()]
    if any(int(n[:-4]) == 0 for n in numbered):  # counted from 0: every crop may be a frame off
        problems.reject(str(crops), "crops numbered from 00000, while Aff-Wild2 numbers frame 1 00001: which "
                        "frame each shows cannot be told, folder not read", n=len(numbered))
        return names
    for name in listed:
        stem = name[:-4]
        if name[-4:].lower() == ".jpg" and stem.isdigit() and int(stem) - 1 not in names:
            names[int(stem) - 1] = name
        else:
            problems.reject(str(crops / name), "not read: no frame image <NNNNN>.jpg, or a frame's second one")
    return names


def read(root: str | Path, problems: Problems, use_cropped_aligned: bool = True,
         annotations: str | Path | None = None) -> SourceRead:
    """``annotations``: the annotations folder, when it is not ``<root>/annotations`` (the
    2022+ releases name it e.g. ``5th ABAW Annotations``); relative to ``root``."""
    root = Path(root)
    ann = root / (annotations or "annotations")
    if not ann.is_dir():
        raise FileNotFoundError(f"{ann}: missing (the annotations folder: AU_Set/... or AU_Detection_Challenge/...)"
                                + annotations_hint(root))

    # video -> task -> (frames, labels); video -> the AUs its AU file names; video -> its splits
    labels: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    video_aus: dict[str, tuple[str, ...]] = {}
    splits: dict[str, set[str]] = {}
    folders, notes = task_folders(ann)
    for task, folder, split in folders:
        entries = sorted(folder.iterdir())
        files = [p for p in entries if p.suffix.lower() == ".txt" and p.is_file()]  # v.TXT from a case-blind copy too
        others = [p.name + ("/" if p.is_dir() else "") for p in entries if p not in files]
        if others:
            notes.append(f"{folder}: not read: {len(others)} entries that are no <video>.txt (a subfolder's files "
                         f"are not searched), e.g. {others[0]}")
        for path in files:
            video = path.stem
            frames, values, names = parse_annotation(path, task, problems)
            labels.setdefault(video, {})[task] = frames, values
            if task == "AU":
                video_aus[video] = names
            splits.setdefault(video, set()).add(split)
    if not labels:
        raise FileNotFoundError(f"{ann}: no annotation files (<video>.txt) in its task folders")

    read_result = SourceRead(jobs=[], problems=problems, notes=notes)
    videos: dict[str, list[str]] | None = None  # listed when a video has no crops
    for video in sorted(labels):
        if len(splits[video]) > 1:
            # A video on both sides would leak into validation: it is validation only.
            read_result.notes.append(f"{video}: listed in both splits, kept in val only")
        split = "val" if "val" in splits[video] else "train"
        by_task = labels[video]
        labelled = np.zeros(max((int(f.max()) + 1 for f, _ in by_task.values() if len(f)), default=0), bool)
        for task_frames, _ in by_task.values():
            labelled[task_frames] = True
        frames = np.flatnonzero(labelled).astype(np.int32)
        row_of = np.cumsum(labelled) - 1  # a labelled frame's row in ``frames``
        n = len(frames)
        aus = video_aus.get(video, ())
        au = np.full((n, len(aus)), AU_UNKNOWN, dtype=np.int8)
        expr = np.full(n, -1, dtype=np.int8)
        va = np.full((n, 2), np.nan, dtype=np.float32)
        for task, target in (("AU", au), ("EXPR", expr), ("VA", va)):
            if task in by_task:  # each labelled frame's row, found by its number
                task_frames, values = by_task[task]
                target[row_of[task_frames]] = values
        # Frames whose every label is an invalid marker carry nothing to learn from.
        known = (au >= 0).any(axis=1) | (expr >= 0) | ~np.isnan(va).any(axis=1)
        read_result.invalid_label_rows += int((~known).sum())
        labelled = frames
        frames, au, expr, va = frames[known], au[known], expr[known], va[known]
        n = len(frames)
        side = next((s for s in ("left", "right") if video.endswith(f"_{s}")), None)
        crops = root / "cropped_aligned" / video
        common = dict(source="affwild2", video=video, subject=video, split=split, side=side, aus=aus,
                      labels_from=str(ann / "*" / "*" / f"{video}.txt"))
        if use_cropped_aligned and crops.is_dir():
            names = crop_names(crops, problems)
            present = np.fromiter(names, np.int64, len(names))
            keep = np.isin(frames, present)
            read_result.labels_without_frame += int((~keep).sum())
            read_result.frames_without_label += len(np.setdiff1d(present, labelled))
            images = [str(crops / names[f]) for f in frames[keep]]
            read_result.jobs.append(Job(**common, mode="aligned", frames=frames[keep], images=images,
                                        au=au[keep], expr=expr[keep], va=va[keep]))
        else:
            if videos is None:
                videos = video_files(root)
            video_path, why = find_video(root, video, videos)
            if video_path is None:
                problems.reject(str(root / "videos" / video), why, n=n)
                read_result.labels_without_frame += n
                continue
            read_result.jobs.append(Job(**common, mode="detect", frames=frames, video_path=str(video_path),
                                        au=au, expr=expr, va=va))
    return read_result
