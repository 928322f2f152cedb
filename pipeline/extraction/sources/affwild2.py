"""Aff-Wild2, ABAW 2020 release: annotation sets per task and split, faces per frame.

Layout (docs/formats.md): ``annotations/{AU,EXPR,VA}_Set/{Training_Set,Validation_Set}/<video>.txt``,
one header line naming the columns, then data line i (0-based) is frame i. Faces come from
the organisers' ``cropped_aligned/<video>/NNNNN.jpg`` (1-based, already aligned) when
present, else from ``videos/<video>.*``.

The three tasks' labels are joined per frame: a frame labelled for AU only keeps its
expression and VA unknown. A frame with a label but no cropped image had no face; it is
counted, never invented.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from pipeline.core.labels import (
    AFFWILD2_HEADERS, AU_NAMES, AU_UNKNOWN, affwild2_au, affwild2_expr, affwild2_va, header_order,
)
from pipeline.extraction.sources.base import Job, Problems, SourceRead, read_text

SPLITS = {"Training_Set": "train", "Validation_Set": "val"}
TASK_DIRS = {"AU": "AU_Set", "EXPR": "EXPR_Set", "VA": "VA_Set"}
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm")


def parse_annotation(path: Path, task: str, problems: Problems) -> dict[int, object]:
    """Frame (0-based) -> unified label for one annotation file; bad lines go to ``problems``.

    Invalid markers (-1, -5) become unknown labels, kept as such: the frame still exists.
    """
    text = read_text(path, problems)
    if text is None:
        return {}
    lines = text.splitlines()
    if not lines:
        problems.reject(str(path), "empty annotation file")
        return {}
    names = AFFWILD2_HEADERS[task]
    try:
        order = header_order(lines[0], names, str(path))
    except ValueError as e:
        problems.reject(str(path), f"bad header: {e}", line=1)
        return {}
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
                k = int(k)
                out[i] = affwild2_expr(order.index(k) if 0 <= k < len(order) else k)
                continue
            if len(cells) != width:
                raise ValueError(f"expected {width} values (one per header column), got {len(cells)}")
            values = [float(cells[j]) for j in order]  # columns we do not know are not read
            out[i] = affwild2_au(values) if task == "AU" else affwild2_va(*values)
        except ValueError as e:
            problems.reject(str(path), f"bad {task} row: {e}", line=lineno)
    return out


def find_video(root: Path, video: str) -> Path | None:
    """``videos/<name>.*`` for a video, its ``_left``/``_right`` suffix removed."""
    base = re.sub(r"_(left|right)$", "", video)
    folder = root / "videos"
    for ext in VIDEO_EXTENSIONS:
        for p in (folder / f"{base}{ext}", *folder.glob(f"*/{base}{ext}")):
            if p.exists():
                return p
    return None


def read(root: str | Path, problems: Problems, use_cropped_aligned: bool = True) -> SourceRead:
    root = Path(root)
    ann = root / "annotations"
    if not ann.is_dir():
        raise FileNotFoundError(f"{ann}: missing (expected annotations/{{AU,EXPR,VA}}_Set/...)")

    # video -> task -> {frame: label}; video -> set of splits it appears in
    labels: dict[str, dict[str, dict[int, object]]] = {}
    splits: dict[str, set[str]] = {}
    for task, task_dir in TASK_DIRS.items():
        for split_dir, split in SPLITS.items():
            folder = ann / task_dir / split_dir
            if not folder.is_dir():
                continue
            for path in sorted(folder.glob("*.txt")):
                video = path.stem
                labels.setdefault(video, {})[task] = parse_annotation(path, task, problems)
                splits.setdefault(video, set()).add(split)
    if not labels:
        raise FileNotFoundError(f"{ann}: no annotation files found under *_Set/{{Training,Validation}}_Set/")

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
        au = np.full((n, len(AU_NAMES)), AU_UNKNOWN, dtype=np.int8)
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
        common = dict(source="affwild2", video=video, subject=video, split=split, side=side)
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
