"""Unlabelled input for inference: a video file, or a folder of images or frames.

Every frame is wanted and every label unknown. Images in a folder are taken in sorted
name order and numbered 0, 1, ... in that order.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pipeline.core.fileio import special_file
from pipeline.extraction.sources.affwild2_layout import VIDEO_EXTENSIONS
from pipeline.extraction.sources.base import IMAGE_EXTENSIONS, Job, Problems, SourceRead


def count_frames(path: Path) -> int:
    """Frames a video really has: grabbed one by one (the container's count can lie)."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FileNotFoundError(f"{path}: cannot open as a video")
    n = 0
    while cap.grab():
        n += 1
    cap.release()
    return n


def read(root: str | Path, problems: Problems) -> SourceRead:
    root = Path(root)
    if root.is_file():
        if root.suffix.lower() not in VIDEO_EXTENSIONS:
            raise FileNotFoundError(f"{root}: not a video file ({', '.join(VIDEO_EXTENSIONS)})")
        n = count_frames(root)
        if n == 0:
            raise FileNotFoundError(f"{root}: no frame could be decoded")
        job = Job(source="input", video=root.stem, subject=root.stem, split="test", mode="detect",
                  frames=np.arange(n), video_path=str(root))
        return SourceRead(jobs=[job], problems=problems)
    if not root.is_dir():
        kind = special_file(root)
        raise FileNotFoundError(f"{root}: {kind}, neither a video nor a folder" if kind else f"{root}: no such file or folder")
    images = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not images:
        raise FileNotFoundError(f"{root}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
    job = Job(source="input", video=root.name, subject=root.name, split="test", mode="detect",
              frames=np.arange(len(images)), images=[str(p) for p in images])
    notes = not_read(root, sorted(p for p in root.iterdir() if p.is_file()), IMAGE_EXTENSIONS)
    return SourceRead(jobs=[job], problems=problems, notes=notes)


def not_read(folder: Path, files: list[Path], media: tuple[str, ...]) -> list[str]:
    """What of ``folder`` a command leaves alone, in a line (none when it reads everything):
    subfolders, files that are not ``media`` (suffixes), entries that are neither file nor folder."""
    others = [p.name for p in files if p.suffix.lower() not in media]
    subfolders = sorted(p.name for p in folder.iterdir() if p.is_dir())
    # a symbolic link to nothing or a loop of links (or a pipe) is neither: never dropped without a word
    unreadable = sorted(p.name for p in folder.iterdir() if not p.is_dir() and not p.is_file())
    parts = []
    if subfolders:
        parts.append(f"{len(subfolders)} subfolder(s) (not searched: give them as inputs), e.g. {subfolders[0]}")
    if others:
        parts.append(f"{len(others)} other file(s), e.g. {others[0]}")
    if unreadable:
        parts.append(f"{len(unreadable)} neither a file nor a folder (a symbolic link to nothing or a loop of "
                     f"links, a pipe), e.g. {unreadable[0]}")
    return [f"{folder}: not read: {'; '.join(parts)}"] if parts else []
