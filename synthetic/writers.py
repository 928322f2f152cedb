"""Write the datasets' files exactly as they ship (docs/formats.md), all
byte-reproducibly, and define the ground-truth table (streamed by ``pipeline.core.tables.FrameTableWriter``).

Reproducible means: no time stamps, no host names, fixed encoder settings, fixed number
formatting, fixed row order. Videos are MJPG in AVI, written here (JPEG frames from
``cv2.imencode`` in a minimal RIFF container), so their bytes depend on the frames and
the JPEG library only; FFmpeg-based writers would embed their version and encoder state.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa

from pipeline.core.labels import AFFWILD2_INVALID, UNIFIED_TO_EXPW, VA_NAMES
from pipeline.core.tables import LANDMARK_COLUMNS
from pipeline.extraction.sources.affwild2_layout import LAYOUTS

from .eras import Era

FPS = 30.0

# --- images and videos ----------------------------------------------------------------------


_FORMAT_NAMES = {".jpg": "JPEG", ".png": "PNG"}


def _encode(path: Path, ext: str, img: np.ndarray, params: list[int]) -> bytes:
    """``img`` encoded by OpenCV as ``ext`` (".jpg", ".png"); ``path`` names it in the error."""
    ok, buf = cv2.imencode(ext, img, params)
    if not ok:
        raise OSError(f"{path}: {_FORMAT_NAMES[ext]} encoding failed")
    return buf.tobytes()


def write_jpeg(path: Path, img: np.ndarray, quality: int) -> int:
    data = _encode(path, ".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    path.write_bytes(data)
    return len(data)


def write_png(path: Path, img: np.ndarray, level: int = 1) -> int:
    # The Up filter on every row (instead of libpng trying all five per row) and zlib's
    # run-length strategy at level 1: a little larger than the thorough settings, in a
    # fraction of their time. PNG is lossless: the decoded pixels are the same whatever the
    # settings.
    data = _encode(path, ".png", img, [cv2.IMWRITE_PNG_COMPRESSION, int(level),
                                       cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE,
                                       cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP])
    path.write_bytes(data)
    return len(data)


class VideoFile:
    """An MJPG video in an AVI container, written frame by frame.

    Frames are JPEG-encoded with ``cv2.imencode`` (libjpeg-turbo: smaller and faster
    than ``cv2.VideoWriter``'s own MJPEG encoder) and wrapped in a plain RIFF AVI
    with an ``idx1`` index, which OpenCV, FFmpeg and every player read. The container
    holds no dates or writer names: the bytes depend on the frames only.
    """

    def __init__(self, path: Path, width: int, height: int, quality: int, fps: float = FPS):
        self.path, self.w, self.h, self.quality, self.fps = path, int(width), int(height), int(quality), fps
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(path, "wb")
        self.index: list[tuple[int, int]] = []  # (offset from 'movi', size) per frame
        self.largest = 0
        self.f.write(self._header(0))
        self.movi_start = self.f.tell() - 4  # position of the 'movi' fourcc

    def _header(self, frames: int) -> bytes:
        us = int(round(1e6 / self.fps))
        avih = struct.pack("<14I", us, 0, 0, 0x10, frames, 0, 1, self.largest, self.w, self.h, 0, 0, 0, 0)
        strh = struct.pack("<4s4sIHHIIIIIIiI4h", b"vids", b"MJPG", 0, 0, 0, 0, 1, int(round(self.fps)), 0,
                           frames, self.largest, -1, 0, 0, 0, self.w, self.h)
        strf = struct.pack("<IiiHH4sIiiII", 40, self.w, self.h, 1, 24, b"MJPG", self.w * self.h * 3, 0, 0, 0, 0)
        strl = b"LIST" + struct.pack("<I", 4 + 8 + len(strh) + 8 + len(strf)) + b"strl" + \
            _chunk(b"strh", strh) + _chunk(b"strf", strf)
        hdrl = b"LIST" + struct.pack("<I", 4 + 8 + len(avih) + len(strl)) + b"hdrl" + _chunk(b"avih", avih) + strl
        # RIFF and movi sizes are patched in close().
        return b"RIFF" + struct.pack("<I", 0) + b"AVI " + hdrl + b"LIST" + struct.pack("<I", 0) + b"movi"

    def write(self, frame: np.ndarray) -> None:
        if frame.shape[:2] != (self.h, self.w):
            raise ValueError(f"{self.path}: frame is {frame.shape[1]}x{frame.shape[0]}, video is {self.w}x{self.h}")
        data = _encode(self.path, ".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        self.index.append((self.f.tell() - self.movi_start, len(data)))
        self.largest = max(self.largest, len(data))
        self.f.write(_chunk(b"00dc", data))

    def close(self) -> int:
        end_movi = self.f.tell()
        idx = b"".join(struct.pack("<4sIII", b"00dc", 0x10, off, size) for off, size in self.index)
        self.f.write(_chunk(b"idx1", idx))
        end = self.f.tell()
        self.f.seek(0)
        self.f.write(self._header(len(self.index)))
        self.f.seek(4)
        self.f.write(struct.pack("<I", end - 8))
        self.f.seek(self.movi_start - 4)
        self.f.write(struct.pack("<I", end_movi - self.movi_start))
        self.f.close()
        return end


def _chunk(fourcc: bytes, data: bytes) -> bytes:
    pad = b"\0" if len(data) % 2 else b""
    return fourcc + struct.pack("<I", len(data)) + data + pad


# --- Aff-Wild2 annotations ------------------------------------------------------------------



def _num(x: float) -> str:
    """A VA value as Aff-Wild2 writes it: plain decimal, no '-0'."""
    s = f"{round(float(x), 4) + 0.0:.4f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def affwild2_lines(task: str, labels, era: Era) -> list[str]:
    """Header plus one line per frame. ``labels``: AU int8 [n, AUs of the era's files] /
    EXPR int8 [n] / VA float [n, 2]; rows holding the invalid marker are written as that marker."""
    header = ",".join({"AU": era.affwild2_aus, "EXPR": era.classes, "VA": VA_NAMES}[task])
    bad = AFFWILD2_INVALID[task]
    lines = [header]
    if task == "AU":
        for row in np.asarray(labels):
            lines.append(",".join(str(bad) for _ in row) if (row == bad).any() else ",".join(str(int(v)) for v in row))
    elif task == "EXPR":
        lines.extend(str(int(v)) for v in np.asarray(labels))
    else:
        for v, a in np.asarray(labels, np.float64):
            lines.append(f"{bad},{bad}" if v == bad or a == bad else f"{_num(v)},{_num(a)}")
    return lines


def affwild2_annotation_path(root: Path, task: str, split: str, video: str, era: Era) -> Path:
    """Where a release of ``era``'s layout keeps one video's labels of ``task`` (the reader's
    :data:`LAYOUTS`, first names)."""
    task_dirs, split_dirs = LAYOUTS[era.affwild2_layout]
    split_dir = next(d for d, s in split_dirs.items() if s == split)
    return root / "annotations" / task_dirs[task][0] / split_dir / f"{video}.txt"


def write_affwild2_annotation(root: Path, task: str, split: str, video: str, labels, era: Era) -> int:
    path = affwild2_annotation_path(root, task, split, video, era)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(affwild2_lines(task, labels, era)) + "\n"
    path.write_text(text)
    return len(text)


# --- s-Aff-Wild2 ------------------------------------------------------------------------------

MTL_HEADER = "image,valence,arousal,expression,aus"


def mtl_line(video: str, frame: int, va, expr: int, aus) -> str:
    """One image of s-Aff-Wild2's file: each task's value, or its unknown marker (-5 for
    valence/arousal, -1 for the class and the AUs)."""
    bad = AFFWILD2_INVALID
    v, a = (f"{bad['VA']}", f"{bad['VA']}") if np.isnan(va[0]) else (_num(va[0]), _num(va[1]))
    return f"{video}/{frame + 1:05d}.jpg,{v},{a},{int(expr)},{','.join(str(int(x)) for x in aus)}"


# --- AffectNet -----------------------------------------------------------------------------------

AFFECTNET_HEADER = ("subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,"
                    "valence,arousal")


def affectnet_line(name: str, box, points, code: int, va) -> str:
    """One row of AffectNet's file lists: the image, its face box (x, y, width, height), 68
    landmarks ``x1;y1;...``, the AffectNet expression code and valence/arousal (-2: none)."""
    x0, y0, x1, y1 = (int(round(float(c))) for c in box)
    marks = ";".join(f"{float(c):.2f}" for c in np.asarray(points).ravel())
    v, a = ("-2", "-2") if np.isnan(va[0]) else (f"{float(va[0]):.6f}", f"{float(va[1]):.6f}")
    return f"{name},{x0},{y0},{x1 - x0},{y1 - y0},{marks},{int(code)},{v},{a}"


# --- DISFA ------------------------------------------------------------------------------------


def write_disfa_labels(root: Path, subject: str, intensities: dict[int, np.ndarray]) -> int:
    """``ActionUnit_Labels/<SN>/<SN>_au<N>.txt``: ``frame,intensity`` lines, frame 1-based."""
    folder = root / "ActionUnit_Labels" / subject
    folder.mkdir(parents=True, exist_ok=True)
    size = 0
    for au, values in intensities.items():
        text = "".join(f"{i + 1},{int(v)}\n" for i, v in enumerate(values))
        (folder / f"{subject}_au{au}.txt").write_text(text)
        size += len(text)
    return size


# --- ExpW -------------------------------------------------------------------------------------


def expw_line(image: str, face_id: int, box, confidence: float, unified_expr: int) -> str:
    """``image_name face_id top left right bottom confidence expression_label``."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    return f"{image} {face_id} {y0} {x0} {x1} {y1} {confidence:.4f} {UNIFIED_TO_EXPW[int(unified_expr)]}"


# --- AFEW-VA ----------------------------------------------------------------------------------


def afewva_json(actor: str, video_id: str, frames: dict[str, tuple[int, int, np.ndarray]]) -> str:
    """``{"actor", "video_id", "frames": {"00000": {"valence", "arousal", "landmarks"}}}``."""
    body = {
        "actor": actor,
        "video_id": video_id,
        "frames": {
            key: {"valence": int(v), "arousal": int(a),
                  "landmarks": [[round(float(x), 3), round(float(y), 3)] for x, y in lm]}
            for key, (v, a, lm) in frames.items()
        },
    }
    return json.dumps(body, separators=(",", ":"))


# --- the ground truth ------------------------------------------------------------------------

BOX_COLUMNS = ["box_x1", "box_y1", "box_x2", "box_y2"]


def ground_truth_schema(era: Era) -> pa.Schema:
    """One row per face. True labels (no annotation noise) first: every drawn AU's intensity
    (``AUI<n>``), the binary AUs some file of ``era`` labels, the class, valence and arousal;
    then what the dataset files carry for that face (``lab_*``, -1 / NaN where they carry
    nothing)."""
    names = [f"AU{au}" for au in era.truth_aus]
    return pa.schema([
        ("uid", pa.string()), ("source", pa.string()), ("video", pa.string()), ("subject", pa.string()),
        ("frame", pa.int32()), ("split", pa.string()),
        *[(f"AUI{au}", pa.float32()) for au in era.drawn_aus],
        *[(name, pa.int8()) for name in names],
        ("expr", pa.int8()), ("valence", pa.float32()), ("arousal", pa.float32()),
        ("expr_intensity", pa.float32()),
        ("labelled_AU", pa.bool_()), ("labelled_EXPR", pa.bool_()), ("labelled_VA", pa.bool_()),
        *[(f"lab_{name}", pa.int8()) for name in names],
        ("lab_expr", pa.int8()), ("lab_valence", pa.float32()), ("lab_arousal", pa.float32()),
        ("face_visible", pa.bool_()),
        *[(c, pa.float32()) for c in BOX_COLUMNS],
        *[(c, pa.float32()) for c in LANDMARK_COLUMNS],
        ("yaw", pa.float32()), ("roll", pa.float32()), ("face_px", pa.float32()),
        ("occlusion", pa.float32()), ("blur", pa.float32()),
    ])
