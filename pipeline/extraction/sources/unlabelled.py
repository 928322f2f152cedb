"""Unlabelled input for inference: a video file, or a folder of images or frames.

Every frame is wanted and every label unknown. Images in a folder are taken in sorted
name order and numbered 0, 1, ... in that order.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

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
        raise FileNotFoundError(f"{root}: no such file or folder")
    images = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not images:
        raise FileNotFoundError(f"{root}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
    job = Job(source="input", video=root.name, subject=root.name, split="test", mode="detect",
              frames=np.arange(len(images)), images=[str(p) for p in images])
    return SourceRead(jobs=[job], problems=problems)
