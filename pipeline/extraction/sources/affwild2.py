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

import re
from pathlib import Path

import numpy as np

from pipeline.core.labels import AU_UNKNOWN, EXPR_NAMES, VA_NAMES, affwild2_au, affwild2_expr, affwild2_va, header_order
from pipeline.core.schema import EXPRESSIONS, au_name, au_number
from pipeline.extraction.sources.base import Job, Problems, SourceRead, read_text

#: Per release: the folder of each task's annotations, and of each split.
LAYOUTS = {
    "2020": ({"AU": ("AU_Set",), "EXPR": ("EXPR_Set",), "VA": ("VA_Set",)},
             {"Training_Set": "train", "Validation_Set": "val"}),
    "2022": ({"AU": ("AU_Detection_Challenge",), "EXPR": ("EXPR_Classification_Challenge", "EXPR_Recognition_Challenge"),
              "VA": ("VA_Estimation_Challenge",)},
             {"Train_Set": "train", "Validation_Set": "val"}),
}
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm")


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


def parse_annotation(path: Path, task: str, problems: Problems) -> tuple[dict[int, object], tuple]:
    """Frame (0-based) -> label for one annotation file, and the header's columns
    (:func:`header_columns`); bad lines go to ``problems``.

    Invalid markers (-1, -5) become unknown labels, kept as such: the frame still exists.
    """
    text = read_text(path, problems)
    if text is None:
        return {}, ()
    lines = text.splitlines()
    if not lines:
        problems.reject(str(path), "empty annotation file")
        return {}, ()
    try:
        columns = header_columns(lines[0], task, str(path))
    except ValueError as e:
        problems.reject(str(path), f"bad header: {e}", line=1)
        return {}, ()
    width = len(lines[0].split(","))  # columns the rows carry (the header may name more than ours)
    out: dict[int, object] = {}
    for i, line in enumerate(lines[1:]):
        lineno = i + 2
        if not line.strip():
            problems.reject(str(path), "blank line", line=lineno)
            continue
        try:
            cells = line.split(",")
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
                out[i] = affwild2_va(*(float(cells[j]) for j in columns))  # other columns are not ours
        except ValueError as e:
            problems.reject(str(path), f"bad {task} row: {e}", line=lineno)
    return out, (tuple(a for _, a in columns) if task == "AU" else ())


def find_video(root: Path, video: str) -> Path | None:
    """``videos/<name>.*`` for a video, its ``_left``/``_right`` suffix removed."""
    base = re.sub(r"_(left|right)$", "", video)
    folder = root / "videos"
    for ext in VIDEO_EXTENSIONS:
        for p in (folder / f"{base}{ext}", *folder.glob(f"*/{base}{ext}")):
            if p.exists():
                return p
    return None


def task_folders(ann: Path) -> list[tuple[str, Path, str]]:
    """(task, folder, split) of every annotation folder under ``ann``, in one release's
    layout; an error naming ``ann`` when it holds none, or both releases'."""
    found = {}
    for release, (task_dirs, split_dirs) in LAYOUTS.items():
        folders = [(task, ann / d / s, split) for task, names in task_dirs.items() for d in names
                   for s, split in split_dirs.items() if (ann / d / s).is_dir()]
        if folders:
            found[release] = folders
    if not found:
        raise FileNotFoundError(f"{ann}: no annotation folders of either release (AU_Set/Training_Set/... "
                                f"or AU_Detection_Challenge/Train_Set/...)")
    if len(found) > 1:
        raise FileNotFoundError(f"{ann}: holds the 2020 and the 2022 layouts: point 'annotations' at one of them")
    return next(iter(found.values()))


def read(root: str | Path, problems: Problems, use_cropped_aligned: bool = True,
         annotations: str | Path | None = None) -> SourceRead:
    """``annotations``: the annotations folder, when it is not ``<root>/annotations`` (the
    2022+ releases name it e.g. ``5th ABAW Annotations``); relative to ``root``."""
    root = Path(root)
    ann = root / (annotations or "annotations")
    if not ann.is_dir():
        raise FileNotFoundError(f"{ann}: missing (the annotations folder: AU_Set/... or AU_Detection_Challenge/...)")

    # video -> task -> {frame: label}; video -> the AUs its AU file names; video -> its splits
    labels: dict[str, dict[str, dict[int, object]]] = {}
    video_aus: dict[str, tuple[str, ...]] = {}
    splits: dict[str, set[str]] = {}
    for task, folder, split in task_folders(ann):
        for path in sorted(folder.glob("*.txt")):
            video = path.stem
            labels.setdefault(video, {})[task], columns = parse_annotation(path, task, problems)
            if task == "AU":
                video_aus[video] = columns
            splits.setdefault(video, set()).add(split)
    if not labels:
        raise FileNotFoundError(f"{ann}: no annotation files (<video>.txt) in its task folders")

    read_result = SourceRead(jobs=[], problems=problems)
    for video in sorted(labels):
        if len(splits[video]) > 1:
            # A video on both sides would leak into validation: it is validation only.
            read_result.notes.append(f"{video}: listed in both splits, kept in val only")
        split = "val" if "val" in splits[video] else "train"
        by_task = labels[video]
        labelled = set().union(*(set(d) for d in by_task.values()))
        frames = np.array(sorted(labelled), dtype=np.int32)
        n = len(frames)
        aus = video_aus.get(video, ())
        au = np.full((n, len(aus)), AU_UNKNOWN, dtype=np.int8)
        expr = np.full(n, -1, dtype=np.int8)
        va = np.full((n, 2), np.nan, dtype=np.float32)
        for i, f in enumerate(frames):
            if f in by_task.get("AU", {}):
                au[i] = by_task["AU"][f]
            if f in by_task.get("EXPR", {}):
                expr[i] = by_task["EXPR"][f]
            if f in by_task.get("VA", {}):
                va[i] = by_task["VA"][f]
        # Frames whose every label is an invalid marker carry nothing to learn from.
        known = (au >= 0).any(axis=1) | (expr >= 0) | ~np.isnan(va).any(axis=1)
        read_result.invalid_label_rows += int((~known).sum())
        frames, au, expr, va = frames[known], au[known], expr[known], va[known]
        n = len(frames)
        side = next((s for s in ("left", "right") if video.endswith(f"_{s}")), None)
        crops = root / "cropped_aligned" / video
        common = dict(source="affwild2", video=video, subject=video, split=split, side=side, aus=aus)
        if use_cropped_aligned and crops.is_dir():
            present = {int(p.stem) - 1 for p in crops.glob("*.jpg") if p.stem.isdigit()}
            keep = np.array([f in present for f in frames], dtype=bool)
            read_result.labels_without_frame += int((~keep).sum())
            read_result.frames_without_label += len(present - labelled)
            images = [str(crops / f"{f + 1:05d}.jpg") for f in frames[keep]]
            read_result.jobs.append(Job(**common, mode="aligned", frames=frames[keep], images=images,
                                        au=au[keep], expr=expr[keep], va=va[keep]))
        else:
            video_path = find_video(root, video)
            if video_path is None:
                problems.reject(str(root / "videos" / video), "no cropped_aligned folder and no video file",
                                n=n)
                read_result.labels_without_frame += n
                continue
            read_result.jobs.append(Job(**common, mode="detect", frames=frames, video_path=str(video_path),
                                        au=au, expr=expr, va=va))
    return read_result
