"""Speed of face extraction on a 640x360 video: full-frame MTCNN, tracked MTCNN, and the
whole chain decode -> tracked detection -> 112x112 alignment -> copy.

The video (300 frames, 25 fps): skimage's coffee photo as background (texture, no face), the astronaut's head
(about 110x140 px) pasted on it and drifting slowly (1.5 px/frame right, 0.5 down, with a
slow bob), written with cv2.VideoWriter (mp4v) to a temp file and decoded again with
cv2.VideoCapture, so decoding is real work. Rows:

- ``full_frame``: FaceDetector.detect on the first 96 decoded frames, batches of 16, at
  the frame's resolution (detect_size 640) and at params.yaml's default (320).
- ``tracked``: FaceTracker.track on all 300 frames (blocks of 8, 16 and 32; full-frame
  fallback at detect_size 320); and blocks of 8 with one torch thread, to compare one
  two-thread process with two one-thread workers (extraction splits videos over workers).
- ``end_to_end``: decode + tracked detection + align_face + copy into a preallocated
  array (standing in for the HDF5 write), chunks of 64 frames.

For each: faces/s, the seconds inside MTCNN (``FaceDetector.mtcnn_seconds``), the share
of the time spent outside it (our wrapper, decoding, alignment) and that time per frame
(``outside_ms_per_frame``: the share grows as the detector gets faster, the per-frame
cost does not). Every figure is the best of ``REPEATS`` runs. ``main()`` prints a table
and returns {"name": "faces", "rows": [...]}. Needs scikit-image (a test dependency).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage import data as skimage_data

from pipeline.extraction import faces as F
from pipeline.extraction import tracking as T
from pipeline.extraction.align import align_face

WIDTH, HEIGHT, FPS = 640, 360, 25
N_FRAMES = 300
FULL_FRAMES = 96
REPEATS = 2  # the machine is shared: report the best of a few runs, as timeit does
MIN_FACE = 40


def make_video(path: Path, n_frames: int = N_FRAMES) -> None:
    background = cv2.resize(skimage_data.coffee(), (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
    head = cv2.resize(skimage_data.astronaut()[10:290, 110:330], (110, 140), interpolation=cv2.INTER_AREA)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise RuntimeError("OpenCV cannot write mp4v here")
    for i in range(n_frames):
        x = int(60 + 1.5 * i) % (WIDTH - head.shape[1])
        y = int(60 + 0.5 * i + 20 * np.sin(i / 15)) % (HEIGHT - head.shape[0])
        frame = background.copy()
        frame[y:y + head.shape[0], x:x + head.shape[1]] = head
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def decode(path: Path, limit: int | None = None):
    """Yield RGB frames of a video file."""
    capture = cv2.VideoCapture(str(path))
    try:
        count = 0
        while limit is None or count < limit:
            ok, bgr = capture.read()
            if not ok:
                return
            count += 1
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def row(bench: str, setting: str, frames: int, faces: int, seconds: float, mtcnn: float, **extra) -> dict:
    return {"bench": bench, "setting": setting, "frames": frames, "faces": faces,
            "seconds": round(seconds, 3), "faces_per_s": round(faces / seconds, 1),
            "mtcnn_s": round(mtcnn, 3), "outside_mtcnn": round(1 - mtcnn / seconds, 3),
            "outside_ms_per_frame": round(1000 * (seconds - mtcnn) / frames, 3), **extra}


def bench_decode(path: Path) -> dict:
    start = time.perf_counter()
    n = sum(1 for _ in decode(path))
    seconds = time.perf_counter() - start
    return row("decode", "VideoCapture+BGR2RGB", n, n, seconds, 0.0)


def bench_full(frames: list[np.ndarray], detect_size: int) -> dict:
    detector = F.FaceDetector(min_face_size=MIN_FACE, detect_size=detect_size, batch_size=16)
    detector.detect(frames[:16])  # warm-up (first-call allocations)
    detector.mtcnn_seconds = 0.0
    start = time.perf_counter()
    found = sum(f.pick() is not None for f in detector.detect(frames))
    seconds = time.perf_counter() - start
    return row("full_frame", f"detect_size={detect_size}", len(frames), found, seconds,
               detector.mtcnn_seconds)


def bench_tracked(frames: list[np.ndarray], block_size: int, detect_size: int = 320,
                  threads: int | None = None) -> dict:
    saved_threads = torch.get_num_threads()
    detector = F.FaceDetector(min_face_size=MIN_FACE, detect_size=detect_size, batch_size=16,
                              num_threads=threads)
    try:
        T.FaceTracker(detector, block_size=block_size).track(frames[:block_size * 2])  # warm-up
        detector.mtcnn_seconds = 0.0
        tracker = T.FaceTracker(detector, block_size=block_size)
        start = time.perf_counter()
        found = sum(d is not None for d in tracker.track(frames))
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(saved_threads)
    s = tracker.stats
    return row("tracked", f"block={block_size},threads={threads or saved_threads}", len(frames), found,
               seconds, detector.mtcnn_seconds, tracked=s.tracked, full=s.full)


def bench_end_to_end(path: Path, block_size: int = 8, chunk: int = 64, detect_size: int = 320,
                     threads: int | None = None) -> dict:
    saved_threads = torch.get_num_threads()
    detector = F.FaceDetector(min_face_size=MIN_FACE, detect_size=detect_size, batch_size=16,
                              num_threads=threads)
    try:
        return _end_to_end(path, detector, block_size, chunk, f"threads={threads or saved_threads}")
    finally:
        torch.set_num_threads(saved_threads)


def _end_to_end(path: Path, detector: F.FaceDetector, block_size: int, chunk: int, setting: str) -> dict:
    T.FaceTracker(detector, block_size=block_size).track(list(decode(path, block_size * 2)))  # warm-up
    detector.mtcnn_seconds = 0.0
    tracker = T.FaceTracker(detector, block_size=block_size)
    store = np.empty((chunk, 112, 112, 3), np.uint8)  # stands in for the shard write
    frames = faces = 0
    t_decode = t_track = t_align = 0.0
    start = time.perf_counter()
    video = decode(path)
    while True:
        t0 = time.perf_counter()
        batch = [f for _, f in zip(range(chunk), video)]
        t1 = time.perf_counter()
        if not batch:
            break
        detections = tracker.track(batch)
        t2 = time.perf_counter()
        for i, (frame, det) in enumerate(zip(batch, detections)):
            if det is not None:
                store[i] = align_face(frame, det.landmarks)
                faces += 1
        t3 = time.perf_counter()
        frames += len(batch)
        t_decode, t_track, t_align = t_decode + t1 - t0, t_track + t2 - t1, t_align + t3 - t2
    seconds = time.perf_counter() - start
    return row("end_to_end", f"block={block_size},{setting}", frames, faces, seconds,
               detector.mtcnn_seconds, decode_s=round(t_decode, 3),
               tracker_wrapper_s=round(t_track - detector.mtcnn_seconds, 3), align_copy_s=round(t_align, 3))


def best_of(repeats: int, run) -> dict:
    """The fastest of ``repeats`` runs: other processes on a shared machine only ever slow
    a run down (a 2-thread torch run by up to 10x when a core is taken)."""
    return min((run() for _ in range(repeats)), key=lambda r: r["seconds"])


def main(n_frames: int = N_FRAMES, repeats: int = REPEATS) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "moving_face.mp4"
        make_video(path, n_frames)
        frames = list(decode(path))
        rows = [best_of(repeats, lambda: bench_decode(path))]
        # full-frame detection costs the same on every frame: a third of them suffice
        rows += [best_of(repeats, lambda: bench_full(frames[:FULL_FRAMES], size)) for size in (640, 320)]
        rows += [best_of(repeats, lambda: bench_tracked(frames, block)) for block in (8, 16, 32)]
        rows.append(best_of(repeats, lambda: bench_tracked(frames, 8, threads=1)))
        rows += [best_of(repeats, lambda: bench_end_to_end(path, threads=threads)) for threads in (None, 1)]
    print(f"{'bench':<11}{'setting':<30}{'frames':>7}{'faces':>7}{'s':>8}{'faces/s':>9}"
          f"{'mtcnn s':>9}{'outside':>9}{'ms/frame':>9}  notes")
    for r in rows:
        notes = ", ".join(f"{k}={r[k]}" for k in ("tracked", "full", "decode_s", "tracker_wrapper_s",
                                                  "align_copy_s") if k in r)
        print(f"{r['bench']:<11}{r['setting']:<30}{r['frames']:>7}{r['faces']:>7}{r['seconds']:>8.2f}"
              f"{r['faces_per_s']:>9.1f}{r['mtcnn_s']:>9.2f}{r['outside_mtcnn']:>9.1%}"
              f"{r['outside_ms_per_frame']:>9.3f}  {notes}")
    return {"name": "faces", "rows": rows}


if __name__ == "__main__":
    main()
