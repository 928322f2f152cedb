"""The extraction stage on one 640x360 video with one face, against MTCNN alone.

A DISFA-layout data set holds one synthetic video (skimage's astronaut drifting over a
textured background, written as mp4 and decoded again). We run the real
``pipeline.extraction.extract.extract`` (decode, tracked MTCNN, alignment, HDF5 shard, frame table)
at two lengths, each in its own process so its peak memory is its own; the difference of
the two wall times divided by the difference of lengths is the steady per-face cost
(process start-up and model loading cancel out). Against it: MTCNN's own time on the
same frames (FaceTracker with one torch thread, as in an extraction worker, on frames
decoded beforehand, under the same memory policy). Usage: python benchmarks/bench_extract.py
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
LENGTHS = (400, 1600)


def make_dataset(root: Path, n: int) -> Path:
    from bench_faces import make_video

    sn = "SN001"
    (root / "Videos_LeftCamera").mkdir(parents=True)
    make_video(root / "Videos_LeftCamera" / f"LeftVideo{sn}_comp.avi", n)
    labels = root / "ActionUnit_Labels" / sn
    labels.mkdir(parents=True)
    for au in (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26):
        (labels / f"{sn}_au{au}.txt").write_text("".join(f"{f},{f % 6}\n" for f in range(1, n + 1)))
    return root


def run_extract(root: str) -> dict:
    """In a child process: the real extraction; wall time and peak memory of the tree."""
    from pipeline.extraction.params import ExtractParams
    from pipeline.extraction.extract import extract

    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        report = extract("disfa", root, Path(out) / "disfa", ExtractParams(workers=1), progress=False)
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "faces": report["faces_written"],
            "parent_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "worker_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def mtcnn_alone(video: Path) -> tuple[float, int]:
    """MTCNN seconds for the tracked detection of every frame (frames decoded first)."""
    import cv2
    import torch

    from pipeline.extraction import faces as F
    from pipeline.extraction import tracking as T
    from pipeline.extraction.params import ExtractParams
    from pipeline.extraction.worker import fix_mmap_threshold

    torch.set_num_threads(1)
    fix_mmap_threshold()  # the memory policy of an extraction worker (see its docstring)
    p = ExtractParams()
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    detector = F.FaceDetector(min_face_size=p.min_face, detect_size=p.detect_size, batch_size=p.batch, num_threads=1)
    tracker = T.FaceTracker(detector, block_size=p.batch, min_prob=p.min_prob)
    for start in range(0, len(frames), p.batch):
        tracker.track(frames[start:start + p.batch])
    return detector.mtcnn_seconds, len(frames)


def main() -> dict:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for n in LENGTHS:
            root = make_dataset(Path(tmp) / f"len{n}", n)
            out = subprocess.run([sys.executable, __file__, "--one", str(root)], check=True, capture_output=True,
                                 text=True, cwd=ROOT)
            runs[n] = json.loads(out.stdout.splitlines()[-1])
            rows.append({"run": f"extract {n} frames", "frames": n, **runs[n],
                         "faces_per_s_incl_startup": runs[n]["faces"] / runs[n]["seconds"]})
        a, b = LENGTHS
        per_face = (runs[b]["seconds"] - runs[a]["seconds"]) / (runs[b]["faces"] - runs[a]["faces"])
        mtcnn_s, n_frames = mtcnn_alone(Path(tmp) / f"len{b}" / "Videos_LeftCamera" / "LeftVideoSN001_comp.avi")
        mtcnn_per_face = mtcnn_s / n_frames
        rows.append({"run": "steady state (difference of the two)", "faces_per_s": 1 / per_face,
                     "ms_per_face": 1000 * per_face, "mtcnn_ms_per_face": 1000 * mtcnn_per_face,
                     "share_outside_mtcnn": 1 - mtcnn_per_face / per_face,
                     "faces_per_s_two_workers_estimate": 2 / per_face})
    for r in rows:
        print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()})
    return {"name": "extract", "rows": rows}


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(run_extract(sys.argv[2])))
    else:
        main()
