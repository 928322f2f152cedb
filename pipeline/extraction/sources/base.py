"""What every reader produces: jobs of frames with unified labels, and a problem log.

A reader turns a dataset as it ships into :class:`Job` objects, one per video (or clip, or
image), each saying where its frames come from, how to find the face in them (``mode``)
and the unified labels of each frame. It never decodes video; the extraction stage does.
"""
from __future__ import annotations

import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from pipeline.core.fileio import special_file
from pipeline.core.validation import wide_text
from pipeline.core.errors import DataError
from pipeline.core.labels import AU_UNKNOWN, EXPR_UNKNOWN

log = logging.getLogger("mtaffect.sources")

#: How a job's faces are found:
#: ``detect``   frames of a video file (``video_path``) or image files: detect and track;
#: ``aligned``  images already aligned by the dataset's owners: resize only;
#: ``landmarks`` the dataset gives 5 landmarks per frame: align directly;
#: ``boxes``    the dataset gives a face box per row: refine landmarks inside it.
Mode = Literal["detect", "aligned", "landmarks", "boxes"]


#: The still images sources and inputs may hold (the suffix, in any case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
#: The value a reason quotes: ``'00012'``, or a tail ``, got 7``.
_VALUE = re.compile(r"'[^']*'|\"[^\"]*\"|,? \b(got|found)\b.*$")


def reason_kind(reason: str) -> str:
    """A reason without the values it quotes, so that a thousand bad values of one kind are
    one line of the summary: ``bad entry '7': valence ..., got 12`` -> ``bad entry …: valence ...``."""
    return _VALUE.sub(lambda m: "" if m.group(1) else "…", reason)


@dataclass
class Problems:
    """Collects rejected rows and files: counted and logged, or raised (``on_error='fail'``)."""

    on_error: Literal["skip", "fail"] = "skip"
    counts: Counter = field(default_factory=Counter)  # rows (frames, faces) skipped per reason
    events: Counter = field(default_factory=Counter)  # rejections per reason (one may cover many rows)
    examples: dict = field(default_factory=dict)

    def reject(self, where: str, reason: str, line: int | None = None, n: int = 1) -> None:
        place = f"{where}:{line}" if line is not None else where
        if self.on_error == "fail":
            raise DataError(f"{place}: {reason}")
        kind = reason_kind(reason)
        self.counts[kind] += n
        self.events[kind] += 1
        # Keep the first place of each reason so the report can point at a real example.
        self.examples.setdefault(kind, place)
        if self.events[kind] <= 3:  # the first few of every reason reach the user, values and all
            rows = f" ({n} rows)" if n > 1 else ""
            log.warning("skipped %s%s: %s", place, rows, reason)

    def summary(self) -> str:
        """``"12 skipped: reason (n), ..."``, or "" when nothing was skipped."""
        if not self.counts:
            return ""
        reasons = ", ".join(f"{r} ({c})" for r, c in sorted(self.counts.items()))
        return f"{sum(self.counts.values())} skipped: {reasons}"

    def as_dict(self) -> dict:
        return {r: {"count": int(c), "first": self.examples[r]} for r, c in sorted(self.counts.items())}


#: What a byte that is not UTF-8 reads as: the parsers reject the line that holds it, so a
#: damaged byte costs that line, not the whole file.
NOT_UTF8 = "\ufffd"


def read_text(path: Path, problems: Problems) -> str | None:
    """A text file as real ones come: a UTF-8 byte-order mark and Windows line ends are
    fine, bytes that are not UTF-8 read as :data:`NOT_UTF8`; a file that cannot be read is a
    rejection naming it (None)."""
    if kind := special_file(path):  # a read would wait for a writer, or never end
        problems.reject(str(path), f"{kind}, not a file: not read")
        return None
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        unreadable(path, e, problems)
        return None
    if not_utf8_text(path, data[:4096], problems):
        return None
    return data.decode("utf-8-sig", errors="replace")


def not_utf8_text(path: Path, head: bytes, problems: Problems) -> bool:
    """True, and the file rejected once, when it is UTF-16 or UTF-32 text (every line of it
    would otherwise be a separate error)."""
    wide = wide_text(head)
    if wide:
        problems.reject(str(path), f"{wide} text: save it as UTF-8")
    return wide is not None


def absent(path: Path) -> str:
    """Why a file the labels name is not there: ``missing``, or ``is a symbolic link to
    '<target>', which does not exist`` (a listing shows the link, so "missing" would puzzle)."""
    if os.path.islink(path):
        return f"is a symbolic link to {os.readlink(path)!r}, which does not exist"
    return "missing"


def case_twin(name: str, names) -> str | None:
    """The one of ``names`` that differs from ``name`` only in case (a copy made on a
    case-blind file system: ``LeftVideoSN001_comp.AVI``, ``MTL-001``), or None."""
    return next((n for n in sorted(names) if n != name and n.lower() == name.lower()), None)


def unreadable(path: Path, e: OSError, problems: Problems, what: str = "text file") -> None:
    """A file that cannot be read, one rejection naming it in full (the error's own text,
    which repeats the path, is left out)."""
    problems.reject(str(path), f"unreadable {what} ({type(e).__name__}: {e.strerror or e}): file skipped")


def not_utf8(line: str, path: Path, lineno: int, problems: Problems) -> bool:
    """True, and the line rejected by its number, when it holds bytes that are not UTF-8."""
    if NOT_UTF8 not in line:
        return False
    problems.reject(str(path), "bytes that are not UTF-8 (a damaged file?)", line=lineno)
    return True


@dataclass
class Job:
    """The frames of one video (or clip, or image) to extract, with their labels.

    All per-row arrays have one entry per wanted frame, sorted by ``frames``. For ExpW,
    whose images hold several faces, a row is a face and ``frames`` is the face id.
    """

    source: str
    video: str
    subject: str
    split: str
    mode: Mode
    frames: np.ndarray  # int32 [n], 0-based frame numbers (ExpW: face id)
    images: list[str] | None = None  # [n] image paths; None: decode ``video_path``
    video_path: str | None = None
    aus: tuple[str, ...] = ()  # the AUs this source labels, the columns of ``au``
    au: np.ndarray | None = None  # int8 [n, len(aus)], -1 unknown
    expr: np.ndarray | None = None  # int8 [n], codes of schema.EXPRESSIONS (Other 7), -1 unknown
    va: np.ndarray | None = None  # float32 [n, 2], NaN unknown
    boxes: np.ndarray | None = None  # float32 [n, 4] x1, y1, x2, y2 (mode boxes; landmarks: checked only)
    landmarks: np.ndarray | None = None  # float32 [n, 5, 2] (mode landmarks)
    side: str | None = None  # "left"/"right": which person of a two-person video
    labels_from: str = ""  # the label files, for messages about the labels (a glob when several)

    def __post_init__(self):
        n = len(self.frames)
        self.frames = np.asarray(self.frames, dtype=np.int32)
        if self.au is None:
            self.au = np.full((n, len(self.aus)), AU_UNKNOWN, dtype=np.int8)
        if self.expr is None:
            self.expr = np.full(n, EXPR_UNKNOWN, dtype=np.int8)
        if self.va is None:
            self.va = np.full((n, 2), np.nan, dtype=np.float32)
        for name in ("au", "expr", "va", "boxes", "landmarks", "images"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"{self.source}/{self.video}: {name} has {len(value)} rows, frames {n}")
        if self.au.shape[1] != len(self.aus):
            raise ValueError(f"{self.source}/{self.video}: {self.au.shape[1]} AU columns, {len(self.aus)} AUs named")

    def __len__(self) -> int:
        return len(self.frames)


@dataclass
class SourceRead:
    """A reader's result: the jobs, the problems met, and counts of what was seen."""

    jobs: list[Job]
    problems: Problems
    labels_without_frame: int = 0  #: label rows whose image/frame does not exist
    frames_without_label: int = 0  #: images present with no label row (not extracted)
    invalid_label_rows: int = 0  #: frames whose every label is an invalid marker (not extracted)
    notes: list[str] = field(default_factory=list)
