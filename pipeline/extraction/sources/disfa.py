"""DISFA: per-subject AU intensity files and the left-camera video.

``ActionUnit_Labels/<SN>/<SN>_au<N>.txt`` holds ``frame,intensity`` lines (frame 1-based,
intensity 0..5) for the 12 DISFA AUs; ``Videos_LeftCamera/LeftVideo<SN>_comp.avi`` is the
video. Lines are joined on the frame number, never on their position, so a missing or
out-of-order line cannot shift labels against frames; an AU without a line for a frame is
unknown for that frame. All 12 AUs are kept (the build takes those of the run's label
schema). Only AU labels: expression and VA stay unknown.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.core.labels import AU_UNKNOWN, DISFA_AUS, MAX_FRAMES, disfa_to_au
from pipeline.core.schema import au_name
from pipeline.extraction.sources.base import Job, Problems, SourceRead, case_twin, not_utf8, read_text


def parse_au_file(path: Path, problems: Problems, extra: list[str] | None = None) -> dict[int, int]:
    """0-based frame -> intensity for one ``<SN>_au<N>.txt``; bad lines go to ``problems``,
    the places of lines with columns after ``frame,intensity`` (ignored) to ``extra``."""
    out: dict[int, int] = {}
    zero = None  # the line of a frame 0, if any
    text = read_text(path, problems)
    if text is not None and not text.strip():
        problems.reject(str(path), "empty label file (that AU stays unknown)")
    lines = (text or "").splitlines()
    while lines and not lines[-1].strip():  # a trailing blank line is only the end of the file
        lines.pop()
    for lineno, line in enumerate(lines, start=1):
        if not_utf8(line, path, lineno, problems):
            continue
        if not line.strip():
            problems.reject(str(path), "blank line (that frame's AU stays unknown)", line=lineno)
            continue
        try:
            cells = [c.strip() for c in line.split(",")]
            if len(cells) < 2:
                raise ValueError(f"expected frame,intensity, got {line.strip()!r}")
            if len(cells) > 2 and extra is not None:  # further columns are not ours: said, not silent
                extra.append(f"{path}:{lineno}")
            frame_s, value_s = cells[:2]
            frame, number = int(frame_s), float(value_s)
            if frame == 0:  # the file counts from 0: each of its labels may be a frame off
                zero = zero or lineno
                continue
            if not 1 <= frame < MAX_FRAMES:
                raise ValueError(f"frame numbers run from 1 to {MAX_FRAMES - 1:,}, got {frame}")
            if not (number == int(number) and 0 <= number <= 5):  # 1.9 is no intensity: never rounded
                raise ValueError(f"intensity must be a whole number 0..5, got {value_s}")
            value = int(number)
            if frame - 1 in out:
                raise ValueError(f"a frame listed twice, got frame {frame}")
        except ValueError as e:
            problems.reject(str(path), f"bad DISFA line: {e}", line=lineno)
            continue
        out[frame - 1] = value
    if zero:
        problems.reject(str(path), f"a frame 0 (line {zero}): DISFA counts frames from 1, so every label of this "
                        "file may be a frame off: file not read (that AU stays unknown)", n=len(out) + 1)
        return {}
    return out


def read(root: str | Path, problems: Problems) -> SourceRead:
    root = Path(root)
    labels_dir = root / "ActionUnit_Labels"
    if not labels_dir.is_dir():
        raise FileNotFoundError(f"{labels_dir}: missing (expected ActionUnit_Labels/<SN>/<SN>_au<N>.txt)")
    subjects = sorted(p.name for p in labels_dir.iterdir() if p.is_dir())
    if not subjects:
        raise FileNotFoundError(f"{labels_dir}: no subject folders")
    result = SourceRead(jobs=[], problems=problems)
    folder = root / "Videos_LeftCamera"
    videos = sorted(folder.iterdir()) if folder.is_dir() else []
    extra: list[str] = []
    ignored: list[Path] = []  # files of a subject folder that are none of its 12 label files
    for sn in subjects:
        expected = {f"{sn}_au{au}.txt" for au in DISFA_AUS}
        ignored += sorted(p for p in (labels_dir / sn).iterdir() if p.name not in expected)
        per_au: dict[int, dict[int, int]] = {}
        for au in DISFA_AUS:
            path = labels_dir / sn / f"{sn}_au{au}.txt"
            if path.exists():
                per_au[au] = parse_au_file(path, problems, extra)
            else:
                problems.reject(str(path), "AU label file missing (that AU stays unknown)")
        frames = np.array(sorted(set().union(*(set(d) for d in per_au.values()))), dtype=np.int32)
        if len(frames) == 0:
            problems.reject(str(labels_dir / sn), "no label lines")
            continue
        au = np.full((len(frames), len(DISFA_AUS)), AU_UNKNOWN, dtype=np.int8)
        for j, number in enumerate(DISFA_AUS):
            labels = per_au.get(number, {})
            intensity = np.array([labels.get(int(f), -1) for f in frames])
            au[:, j] = disfa_to_au(intensity)
        video = root / "Videos_LeftCamera" / f"LeftVideo{sn}_comp.avi"
        if not video.exists():  # a copy from a case-blind file system: LeftVideoSN001_comp.AVI
            video = folder / (case_twin(video.name, [v.name for v in videos]) or video.name)
        if not video.exists():
            problems.reject(str(video), "video missing", n=len(frames))
            result.labels_without_frame += len(frames)
            continue
        result.jobs.append(Job(source="disfa", video=sn, subject=sn, split="train", mode="detect",
                               frames=frames, video_path=str(video), aus=tuple(map(au_name, DISFA_AUS)), au=au,
                               labels_from=str(labels_dir / sn / f"{sn}_au*.txt")))
    if ignored:
        result.notes.append(f"{len(ignored)} files in the subject folders are none of DISFA's 12 AU label files "
                            f"(<SN>_au<N>.txt, N in {', '.join(map(str, DISFA_AUS))}), not read (first: {ignored[0]})")
    if extra:
        result.notes.append(f"{len(extra)} label lines carry columns after frame,intensity, not read (first: "
                            f"{extra[0]})")
    return result
