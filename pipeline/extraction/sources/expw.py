"""ExpW: still images with one line per face in ``label/label.lst``.

Line format: ``image_name face_id top left right bottom confidence label`` (label 0..6 in
ExpW's order, mapped to the unified one). Every face of an image is its own row (the
authors' code kept only the last face of each image). Expression labels only.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.core.labels import expw_to_expr
from pipeline.extraction.sources.base import IMAGE_EXTENSIONS, Job, Problems, SourceRead, absent, not_utf8, read_text


def read(root: str | Path, problems: Problems) -> SourceRead:
    root = Path(root)
    label_file = root / "label" / "label.lst"
    images_dir = root / "image" / "origin"
    if not label_file.exists():
        raise FileNotFoundError(f"{label_file}: missing")
    if not images_dir.is_dir():
        raise FileNotFoundError(f"{images_dir}: missing")
    by_image: dict[str, list[tuple[int, list[float], int]]] = {}
    result = SourceRead(jobs=[], problems=problems)
    text = read_text(label_file, problems)
    named: set[str] = set()  # every image a line names, usable or not
    for lineno, line in enumerate((text or "").splitlines(), start=1):
        if not line.strip() or not_utf8(line, label_file, lineno, problems):
            continue
        cells = line.split()
        named.add(cells[0])
        try:
            if len(cells) < 8:  # further fields are not ours
                raise ValueError(f"expected 8 space-separated fields, got {len(cells)}")
            if not cells[1].lstrip("-").isdigit():
                raise ValueError(f"face number {cells[1]!r} is not a whole number (an image name with a space? "
                                 "ExpW's names have none: rename the image)")
            name, face_id = cells[0], int(cells[1])
            if Path(name).is_absolute() or ".." in Path(name).parts:
                raise ValueError(f"image name {name!r} leaves image/origin/")
            try:
                top, left, right, bottom = (float(c) for c in cells[2:6])
            except ValueError:
                raise ValueError(f"the box {' '.join(cells[2:6])!r} is not four numbers (an image name with a "
                                 "space?)") from None
            if not all(abs(v) < 1e6 for v in (top, left, right, bottom)):
                raise ValueError(f"a box beyond any image, got {' '.join(cells[2:6])}")
            try:
                float(cells[6])  # the face's confidence: not used, but a word here is another layout
            except ValueError:
                raise ValueError(f"confidence {cells[6]!r} is not a number") from None
            if not cells[7].isdigit():
                raise ValueError(f"label {cells[7]!r} is not a whole number 0..6")
            label = int(cells[7])
            expr = int(expw_to_expr([label])[0])
            if right <= left or bottom <= top:
                raise ValueError(f"an empty box, got top={top} left={left} right={right} bottom={bottom}")
            if any(fid == face_id for fid, _, _ in by_image.get(name, [])):
                raise ValueError(f"a face listed twice, got face {face_id} of {name!r}")
        except ValueError as e:
            problems.reject(str(label_file), f"bad label line: {e}", line=lineno)
            continue
        if not (images_dir / name).exists():
            problems.reject(str(label_file), f"image {name!r} {absent(images_dir / name)}", line=lineno)
            result.labels_without_frame += 1
            continue
        by_image.setdefault(name, []).append((face_id, [left, top, right, bottom], expr))
    result.frames_without_label += sum(1 for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS
                                       and p.name not in named)
    for name in sorted(by_image):
        faces = sorted(by_image[name])
        result.jobs.append(Job(
            source="expw", video=Path(name).stem, subject=Path(name).stem, split="train", mode="boxes",
            frames=np.array([f for f, _, _ in faces]),
            images=[str(images_dir / name)] * len(faces),
            expr=np.array([e for _, _, e in faces], dtype=np.int8),
            boxes=np.array([b for _, b, _ in faces], dtype=np.float32), labels_from=str(label_file),
        ))
    if not result.jobs:
        raise FileNotFoundError(f"{label_file}: no usable face")
    return result
