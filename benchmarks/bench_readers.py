"""What reading a release's annotation files costs beside extracting its faces (goal: a
small share, seconds not minutes).

Writes, in a temporary folder, a 2022+ Aff-Wild2 annotation set of ``FRAMES`` frames per
task (12-AU, 8-class and VA files over ``VIDEOS`` videos, the size of the whole release;
videos as empty stand-ins) and an s-Aff-Wild2 set of ``IMAGES`` rows with an empty file
for each crop (its size), and AffectNet in both layouts (``AFFECTNET_ROWS`` rows of the
manually annotated file lists, the release's size; ``AFFECTNET_NPY`` images of the
per-image layout, four ``.npy`` files each), then times each reader on them (best of ``REPEATS``, in one
process, after one warm-up read: Arrow's first conversion to numpy costs seconds once).
The share is against extracting that many faces at ``FACES_PER_S``, the aligned-crop rate
of ``extract@affwild2`` on two CPU cores (its log line).

``main()`` prints a table and returns {"name": ..., "rows": [...]} (JSON-serialisable).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.extraction.sources import affectnet, affwild2, saffwild2
from pipeline.extraction.sources.base import Problems

FRAMES = 2_800_000
VIDEOS = 560
IMAGES = 170_000
AFFECTNET_ROWS = 287_651
AFFECTNET_NPY = 20_000
REPEATS = 2
FACES_PER_S = 260.0
AU_HEADER = "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"
EXPR_HEADER = "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other"


def write_affwild2(root: Path, rng: np.random.Generator) -> None:
    per_video = FRAMES // VIDEOS
    ann = root / "annotations"
    for task, header in (("AU_Detection_Challenge", AU_HEADER), ("EXPR_Classification_Challenge", EXPR_HEADER),
                         ("VA_Estimation_Challenge", "valence,arousal")):
        (ann / task / "Train_Set").mkdir(parents=True)
        for v in range(VIDEOS):
            if task.startswith("AU"):
                rows = (",".join(r) for r in rng.integers(0, 2, (per_video, 12)).astype(str))
            elif task.startswith("EXPR"):
                rows = rng.integers(0, 8, per_video).astype(str)
            else:
                rows = (f"{a:.3f},{b:.3f}" for a, b in rng.uniform(-1, 1, (per_video, 2)))
            (ann / task / "Train_Set" / f"v{v}.txt").write_text(header + "\n" + "\n".join(rows) + "\n")
    (root / "videos").mkdir()
    for v in range(VIDEOS):  # empty stand-ins: the reader only looks for them
        (root / "videos" / f"v{v}.mp4").write_bytes(b"")


def write_saffwild2(root: Path, rng: np.random.Generator) -> None:
    per_video = IMAGES // VIDEOS
    (root / "MTL_Challenge").mkdir(parents=True)
    with open(root / "MTL_Challenge" / "training_set_annotations.txt", "w") as f:
        f.write("image,valence,arousal,expression,aus\n")
        for v in range(VIDEOS):
            aus = rng.integers(-1, 2, (per_video, 12)).astype(str)
            va = rng.uniform(-1, 1, (per_video, 2))
            expr = rng.integers(-1, 8, per_video)
            f.writelines(f"v{v}/{k + 1:05d}.jpg,{va[k, 0]:.3f},{va[k, 1]:.3f},{expr[k]},{','.join(aus[k])}\n"
                         for k in range(per_video))
    for v in range(VIDEOS):
        (root / "cropped_aligned" / f"v{v}").mkdir(parents=True)
        for k in range(per_video):
            (root / "cropped_aligned" / f"v{v}" / f"{k + 1:05d}.jpg").touch()


def landmarks(rng: np.random.Generator) -> str:
    return ";".join(f"{v:.2f}" for v in rng.uniform(20, 200, 136))


def write_affectnet_lists(root: Path, rng: np.random.Generator) -> None:
    (root / "Manually_Annotated_file_lists").mkdir(parents=True)
    header = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal"
    with open(root / "Manually_Annotated_file_lists" / "training.csv", "w") as f:
        f.write(header + "\n")
        for k in range(AFFECTNET_ROWS):
            code, (v, a) = rng.integers(0, 11), rng.uniform(-1, 1, 2)
            f.write(f"{k % 1000}/{k}.jpg,10,10,200,200,{landmarks(rng)},{code},{v:.3f},{a:.3f}\n")
    for k in range(AFFECTNET_ROWS):  # empty stand-ins: the reader only looks for them
        folder = root / "Manually_Annotated_Images" / str(k % 1000)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{k}.jpg").touch()


def write_affectnet_npy(root: Path, rng: np.random.Generator) -> None:
    (root / "train_set" / "images").mkdir(parents=True)
    (root / "train_set" / "annotations").mkdir()
    for k in range(AFFECTNET_NPY):
        (root / "train_set" / "images" / f"{k}.jpg").touch()
        notes = root / "train_set" / "annotations"
        np.save(notes / f"{k}_exp.npy", np.array(str(rng.integers(0, 8))))
        np.save(notes / f"{k}_val.npy", np.array(f"{rng.uniform(-1, 1):.3f}"))
        np.save(notes / f"{k}_aro.npy", np.array(f"{rng.uniform(-1, 1):.3f}"))
        np.save(notes / f"{k}_lnd.npy", rng.uniform(20, 200, 136))


def timed(read, root: Path, **kwargs) -> tuple[float, int]:
    best, rows = float("inf"), 0
    read(root, Problems(), **kwargs)  # warm-up
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        result = read(root, Problems(), **kwargs)
        best = min(best, time.perf_counter() - t0)
        rows = sum(len(j) for j in result.jobs)
    return best, rows


def main() -> dict:
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, write, read, kwargs in (
                ("Aff-Wild2 2022+ (3 tasks)", write_affwild2, affwild2.read, {"use_cropped_aligned": False}),
                ("s-Aff-Wild2", write_saffwild2, saffwild2.read, {}),
                ("AffectNet file lists", write_affectnet_lists, affectnet.read, {}),
                ("AffectNet per-image .npy", write_affectnet_npy, affectnet.read, {})):
            root = Path(tmp) / name.replace(" ", "_")
            write(root, rng)
            seconds, frames = timed(read, root, **kwargs)
            images = {"Aff-Wild2 2022+ (3 tasks)": FRAMES, "s-Aff-Wild2": IMAGES, "AffectNet file lists": AFFECTNET_ROWS,
                      "AffectNet per-image .npy": AFFECTNET_NPY}[name]
            extraction = images / FACES_PER_S
            rows.append({"reader": name, "label rows": images * (3 if "3 tasks" in name else 1),
                         "frames in jobs": frames, "read s": round(seconds, 1),
                         "extraction s": round(extraction), "share %": round(100 * seconds / (seconds + extraction), 2)})
    for r in rows:
        print(r)
    return {"name": "readers", "rows": rows}


if __name__ == "__main__":
    main()
