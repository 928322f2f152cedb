"""Speed and memory of ``mtaffect predict`` with the demo bundle (``models/ensemble.pt``,
from ``make demo``) on bench_faces' 640x360 synthetic video (the astronaut's head drifting
over a photograph, mp4v, 25 fps).

Rows, side by side in one run on the 300-frame video:
- ``decode``, ``detection`` (the extraction's tracker, blocks of 16), ``alignment``,
  ``model`` (every member of the bundle, batches of 16): each stage alone, frames/s;
- ``predict``: the whole command's work (decode, detect, align, model, CSV, timeline PNG),
  frames/s (goal: at least 30, real time);
- ``memory``: peak RSS of ``mtaffect predict`` in a fresh process on the video and on one
  4x longer (goal: the longer at most 1.2x the shorter);
- ``predict --temporal`` and its memory, the same with the temporal bundle
  ``models/rnn/ensemble/T32.pt`` (features of each face, then the GRUs over its track).
Usage: python benchmarks/bench_predict.py
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

SHORT, LONG = 300, 1200
PEAK_RSS = """
import resource, sys
from stages.predict import cli
try:
    cli(sys.argv[1:], standalone_mode=False)
finally:
    print("PEAK_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_mb(video: Path, bundle: Path, out: Path, *extra: str) -> float:
    proc = subprocess.run([sys.executable, "-c", PEAK_RSS, str(video), "--model", str(bundle), "--out", str(out),
                           "--quiet", *extra], cwd=ROOT, capture_output=True, text=True, check=True)
    return int(proc.stdout.split("PEAK_KB")[-1]) / 1024


def main() -> dict:
    import numpy as np
    import torch
    from bench_faces import make_video

    from pipeline.extraction.align import align_face
    from pipeline.predict.media import Input, VideoFrames
    from pipeline.predict.rows import Ensemble, batched
    from pipeline.predict.run import FaceFinder, Settings, predict_input
    from pipeline.predict.temporal import TemporalModel

    bundle = ROOT / "models" / "ensemble.pt"
    if not bundle.exists():
        print("bench_predict: no models/ensemble.pt (run `make demo` first); nothing measured")
        return {"name": "predict", "rows": []}
    torch.set_num_threads(2)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        short, long = tmp / "short.mp4", tmp / "long.mp4"
        make_video(short, SHORT)
        make_video(long, LONG)
        model = Ensemble(bundle, torch.device("cpu"))
        settings = Settings()
        finder = FaceFinder(model.detection, settings)

        t0 = time.perf_counter()
        frames = list(VideoFrames(short))
        timing = {"decode": time.perf_counter() - t0}
        t0 = time.perf_counter()
        found = [f for block in batched(frames, settings.batch) for f in finder.video(block)]
        timing["detection"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        aligned = np.stack([align_face(fr.image, f[0].face.landmarks, model.size, model.scale)
                            for fr, f in zip(frames, found) if f])
        timing["alignment"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for start in range(0, len(aligned), settings.batch):
            model(aligned[start:start + settings.batch])
        timing["model"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        summary = predict_input(Input(short, "video"), model, finder, tmp, settings)
        timing["predict"] = time.perf_counter() - t0
        for stage, seconds in timing.items():
            rows.append({"measure": stage, "frames": SHORT, "seconds": round(seconds, 3),
                         "frames_per_s": round(SHORT / seconds, 1),
                         "share_of_parts": round(seconds / sum(v for k, v in timing.items() if k != "predict"), 3)
                         if stage != "predict" else ""})
        rows[-1]["faces_found"] = summary.frames_with_face
        rows[-1]["members"] = len(model.members)
        mem = {n: peak_rss_mb(v, bundle, tmp / f"mem{n}") for n, v in ((SHORT, short), (LONG, long))}
        rows.append({"measure": "memory", "frames": f"{SHORT} / {LONG}", "peak_mb": f"{mem[SHORT]:.0f} / {mem[LONG]:.0f}",
                     "ratio": round(mem[LONG] / mem[SHORT], 3)})
        temporal = ROOT / "models" / "rnn" / "ensemble" / "T32.pt"
        if temporal.exists():
            gru = TemporalModel(temporal, bundle, torch.device("cpu"))
            t0 = time.perf_counter()
            summary = predict_input(Input(short, "video"), gru, FaceFinder(gru.detection, settings), tmp, settings)
            seconds = time.perf_counter() - t0
            rows.append({"measure": "predict --temporal (T=32)", "frames": SHORT, "seconds": round(seconds, 3),
                         "frames_per_s": round(SHORT / seconds, 1), "faces_found": summary.frames_with_face,
                         "members": len(gru.members)})
            mem = {n: peak_rss_mb(v, bundle, tmp / f"tmem{n}", "--temporal", str(temporal))
                   for n, v in ((SHORT, short), (LONG, long))}
            rows.append({"measure": "memory --temporal", "frames": f"{SHORT} / {LONG}",
                         "peak_mb": f"{mem[SHORT]:.0f} / {mem[LONG]:.0f}", "ratio": round(mem[LONG] / mem[SHORT], 3)})
    for row in rows:
        print(json.dumps(row))
    return {"name": "predict", "rows": rows}


if __name__ == "__main__":
    main()
