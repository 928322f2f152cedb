"""A PNG grid that shows at a glance what the synthetic data looks like.

Rows, top to bottom:

* one per expression (unified order): eight people, intensity rising left to right;
* one per drawn action unit: one person, intensity 0 to 5 left to right;
* one per source: eight faces in context, cut from the generated files themselves
  (so the row shows each source's real look: background, colour, blur, compression).

Every cell is ``CELL`` x ``CELL`` pixels; a label column on the left names the row, a
header strip says what the columns are.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np


from .episodes import INTENSITY_GAMMA, prototype_intensities
from .geometry import Pose
from .eras import ERAS, Era
from .landmarks import AU_DESCRIPTIONS, AU_INDEX, DRAWN_AUS
from .identity import sample_identity
from .render import render_face
from .scene import background
from .writers import write_png

CELL = 112
COLUMNS = 8
LABEL_WIDTH = 220
HEADER = 28


def sheet_shape(era: Era) -> tuple[int, int, int]:
    """(height, width, 3) of the sheet: a row per class, drawn AU and source."""
    rows = len(era.classes) + len(era.drawn_aus) + len(era.sources)
    return HEADER + rows * CELL, LABEL_WIDTH + COLUMNS * CELL, 3


def _portrait(ident, aus, rng, roll=0.0, yaw=0.0) -> np.ndarray:
    """One face, centred in a cell, on a quiet background."""
    s = 2  # render at twice the size, then shrink: smoother edges
    img = background(rng, CELL * s, CELL * s, "lab")
    render_face(img, ident, aus, Pose(CELL * s / 2, CELL * s * 0.45, CELL * s * 0.3, roll=roll, yaw=yaw), light=(-0.5, -1.0))
    return cv2.resize(img, (CELL, CELL), interpolation=cv2.INTER_AREA)


def expression_row(c: int, people, rng) -> list[np.ndarray]:
    cells = []
    for j, ident in enumerate(people):
        e = 0.3 + 0.7 * j / (COLUMNS - 1)
        aus = prototype_intensities(np.random.default_rng([c, j]), c, np.array([e ** INTENSITY_GAMMA]))[0]
        cells.append(_portrait(ident, aus, rng, roll=(j - 3.5) * 2.0, yaw=(j % 3 - 1) * 8.0))
    return cells


def au_row(au: int, ident, rng) -> list[np.ndarray]:
    cells = []
    for j in range(COLUMNS):
        aus = np.zeros(len(DRAWN_AUS))
        aus[AU_INDEX[au]] = 5.0 * j / (COLUMNS - 1)
        cells.append(_portrait(ident, aus, rng))
    return cells


GROUND_TRUTH_COLUMNS = ["source", "video", "frame", "face_visible", "box_x1", "box_y1", "box_x2", "box_y2"]


def read_ground_truth(data: Path) -> dict[str, np.ndarray]:
    """The columns the source rows need, as numpy arrays (pyarrow alone: pandas is slow to
    import)."""
    import pyarrow.parquet as pq

    table = pq.read_table(data / "ground_truth.parquet", columns=GROUND_TRUTH_COLUMNS)
    return {c: table.column(c).to_numpy() for c in GROUND_TRUTH_COLUMNS}


def source_row(data: Path, source: str, gt: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Faces in context from the generated files, spread over the source's rows."""
    rows = np.flatnonzero((gt["source"] == source) & gt["face_visible"])
    if len(rows) == 0:
        return [np.zeros((CELL, CELL, 3), np.uint8)] * COLUMNS
    cells = []
    for i in rows[np.linspace(0, len(rows) - 1, COLUMNS).astype(int)]:
        r = SimpleNamespace(**{c: v[i] for c, v in gt.items()})
        if source == "saffwild2":  # the aligned crop is all there is of the frame
            crop = cv2.imread(str(data / source / "cropped_aligned" / r.video / f"{r.frame + 1:05d}.jpg"))
            cells.append(cv2.resize(crop, (CELL, CELL), interpolation=cv2.INTER_AREA))
            continue
        frame = read_frame(data, r)
        cells.append(_context_crop(frame, (r.box_x1, r.box_y1, r.box_x2, r.box_y2)))
    return cells


def read_frame(data: Path, r) -> np.ndarray:
    """The image a ground-truth row refers to, read from the dataset files."""
    if r.source == "expw":
        return cv2.imread(str(data / "expw" / "image" / "origin" / f"{r.video}.jpg"))
    if r.source == "affectnet":  # frame: the rank of the image's name in its split and folder, No-Face left out
        split, folder = r.video.split("-", 1)
        listed = data / "affectnet" / "Manually_Annotated_file_lists" / f"{'training' if split == 'train' else 'validation'}.csv"
        rows = [line.split(",") for line in listed.read_text().splitlines()[1:]]
        names = sorted(row[0] for row in rows if row[0].split("/")[0] == folder and row[6] != "10")
        return cv2.imread(str(data / "affectnet" / "Manually_Annotated_Images" / names[int(r.frame)]))
    if r.source == "afewva":
        nn, clip = r.video.split("_", 1)
        return cv2.imread(str(data / "afewva" / nn / clip / f"{r.frame:05d}.png"))
    if r.source == "disfa":
        path = data / "disfa" / "Videos_LeftCamera" / f"LeftVideo{r.video}_comp.avi"
    else:
        base = r.video.removesuffix("_left").removesuffix("_right")
        path = data / "affwild2" / "videos" / f"{base}.avi"
    cap = cv2.VideoCapture(str(path))
    cap.set(cv2.CAP_PROP_POS_FRAMES, int(r.frame))
    ok, frame = cap.read()
    cap.release()
    if not ok:
        raise OSError(f"{path}: cannot read frame {r.frame}")
    return frame


def _context_crop(frame: np.ndarray, box) -> np.ndarray:
    """A square around the face box, 1.8 x its size, resized to a cell (black outside)."""
    x0, y0, x1, y1 = box
    side = 1.8 * max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    k = CELL / side
    M = np.array([[k, 0, CELL / 2 - k * cx], [0, k, CELL / 2 - k * cy]])
    return cv2.warpAffine(frame, M, (CELL, CELL), flags=cv2.INTER_AREA, borderValue=(0, 0, 0))


def make_contact_sheet(data: str | Path | None, out: str | Path, seed: int = 0, era: Era = ERAS["abaw2020"]) -> Path:
    """Write the sheet PNG to ``out``: the classes and AUs the faces of ``era`` show, and
    each source's files. ``data``: a generated data set for the source rows (None leaves
    those rows black)."""
    rng = np.random.default_rng([seed, 4242])
    people = [sample_identity(np.random.default_rng([seed, 4243, j])) for j in range(COLUMNS)]
    rows: list[tuple[str, list[np.ndarray]]] = []
    for c, name in enumerate(era.classes):
        rows.append((name, expression_row(c, people, rng)))
    model = sample_identity(np.random.default_rng([seed, 4244]), spread=0.0, skin_range=(2, 5))
    model.au_bias[:] = 0
    model.glasses, model.beard = False, 0.0
    for au in era.drawn_aus:
        rows.append((f"AU{au} {AU_DESCRIPTIONS[au]}", au_row(au, model, rng)))
    gt = None
    if data is not None and (Path(data) / "ground_truth.parquet").exists():
        gt = read_ground_truth(Path(data))
    for source in era.sources:
        cells = source_row(Path(data), source, gt) if gt is not None else [np.zeros((CELL, CELL, 3), np.uint8)] * COLUMNS
        rows.append((f"source: {source}", cells))

    h, w, _ = sheet_shape(era)
    sheet = np.full((h, w, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(sheet, "expressions: 8 people, intensity rising ->   AUs: intensity 0 .. 5 ->   sources: files as written",
                (8, 19), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for i, (label, cells) in enumerate(rows):
        y = HEADER + i * CELL
        cv2.putText(sheet, label[:30], (6, y + CELL // 2 + 5), font, 0.48, (0, 0, 0), 1, cv2.LINE_AA)
        for j, cell in enumerate(cells):
            sheet[y:y + CELL, LABEL_WIDTH + j * CELL: LABEL_WIDTH + (j + 1) * CELL] = cell
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_png(out, sheet)
    return out
