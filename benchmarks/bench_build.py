"""Build stage time and peak memory at two data-set sizes (demo-like and 10x).

Frame tables are fabricated with the demo's proportions (the build reads tables, never
faces); each size runs in its own process so its peak memory (ru_maxrss) is its own.
Time should grow about linearly; memory stays near the interpreter's baseline (the
build holds label columns only: ~40 bytes per frame). Usage: python benchmarks/bench_build.py
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
SIZES = {"demo": 9_000, "demo_x10": 90_000}


def fabricate(faces_dir: Path, n: int) -> None:
    import numpy as np

    from pipeline.labels import AU_NAMES
    from pipeline.store import LANDMARK_COLUMNS, FrameTableWriter, uid

    rng = np.random.default_rng(0)
    plan = {"affwild2": 0.55, "disfa": 0.18, "expw": 0.17, "afewva": 0.10}
    for source, share in plan.items():
        m = int(n * share)
        split = np.where((np.arange(m) % 10 == 0) & (source == "affwild2"), "val", "train")
        videos = np.array([f"v{i // 500}" for i in range(m)])
        videos = np.where(split == "val", np.char.add("val_", videos), videos)
        au = (rng.random((m, 8)) < [0.3, 0.2, 0.25, 0.3, 0.35, 0.08, 0.05, 0.5]).astype(np.int8)
        expr = rng.choice(7, size=m, p=[0.4, 0.05, 0.03, 0.03, 0.3, 0.12, 0.07]).astype(np.int8)
        va = np.clip(rng.normal(0.1, 0.3, (m, 2)), -1, 1)
        has = {"affwild2": "AEV", "disfa": "A", "expw": "E", "afewva": "V"}[source]
        cols = {"uid": [uid(source, v, i) for i, v in enumerate(videos)], "source": [source] * m,
                "video": videos, "subject": videos, "frame": np.arange(m), "split": split,
                "expr": expr if "E" in has else np.full(m, -1), "valence": va[:, 0] if "V" in has else np.nan,
                "arousal": va[:, 1] if "V" in has else np.nan, "shard": [f"{source}/shard-00000.h5"] * m,
                "row": np.arange(m) % 4096, "det_score": np.ones(m)}
        cols["valence"] = np.broadcast_to(cols["valence"], (m,))
        cols["arousal"] = np.broadcast_to(cols["arousal"], (m,))
        for j, a in enumerate(AU_NAMES):
            cols[a] = au[:, j] if "A" in has else np.full(m, -1)
        for c in LANDMARK_COLUMNS:
            cols[c] = np.zeros(m)
        writer = FrameTableWriter(faces_dir / source / "frames.parquet")
        writer.add(cols)
        writer.close()


def run_one(n: int) -> dict:
    """In a child process: fabricate, build, report seconds and peak memory."""
    from pipeline.build import build
    from pipeline.config import BuildParams

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        fabricate(tmp / "faces", n)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        report = build(tmp / "faces", tmp / "build", BuildParams())
        seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"frames": n, "build_s": seconds, "peak_rss_mb": peak / 1024, "rss_before_build_mb": base / 1024,
            "au_frames": report["AU"]["frames"], "clones": report["AU"]["clones"]}


def main() -> dict:
    rows = []
    for name, n in SIZES.items():
        out = subprocess.run([sys.executable, __file__, "--one", str(n)], check=True, capture_output=True, text=True,
                             cwd=ROOT)
        row = {"size": name, **json.loads(out.stdout.splitlines()[-1])}
        rows.append(row)
        print(f"{name:>9}: {n} frames, build {row['build_s']:.2f} s, peak RSS {row['peak_rss_mb']:.0f} MB "
              f"(before build {row['rss_before_build_mb']:.0f} MB)")
    rows.append({"size": "ratio x10", "build_s": rows[1]["build_s"] / rows[0]["build_s"],
                 "peak_rss_mb": rows[1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]})
    return {"name": "build", "rows": rows}


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        sys.path.insert(0, str(ROOT))
        print(json.dumps(run_one(int(sys.argv[2]))))
    else:
        main()
