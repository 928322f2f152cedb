"""Build stage time and peak memory at three data-set sizes (demo-like, 10x and 100x).

Frame tables are fabricated with the demo's proportions (the build reads tables, never
faces). Fabricating and building each run in a process of their own: a child process
starts with its parent's peak RSS as its own ru_maxrss (Linux keeps it across fork and
exec), so the parent here stays small and the builder's figure is the build's alone.
The baseline is the RSS after the imports and Arrow's one-off initialisation of its
compute functions (~36 MB, the same for any table size).

Time should grow about linearly. Memory: the build streams the tables (see
``pipeline/build/indexes.py``), so what it holds is a record batch, one row group per index and,
for ML-ROS, a code and a clone count per AU frame. The first two stop growing once the
tables exceed a batch (8,192 rows); the last is the only per-frame memory: ``growth B/frame``
between two sizes. Usage: python benchmarks/bench_build.py
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
SIZES = {"demo": 9_000, "demo_x10": 90_000, "demo_x100": 900_000}


def fabricate(faces_dir: Path, n: int) -> None:
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from pipeline.core.labels import AU_NAMES
    from pipeline.core.tables import LANDMARK_COLUMNS, FrameTableWriter, uid

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
                "arousal": va[:, 1] if "V" in has else np.nan, "shard": ["shard-00000.h5"] * m,
                "row": np.arange(m) % 4096, "det_score": np.ones(m), "timestamp": np.full(m, np.nan)}
        cols["valence"] = np.broadcast_to(cols["valence"], (m,))
        cols["arousal"] = np.broadcast_to(cols["arousal"], (m,))
        for j, a in enumerate(AU_NAMES):
            cols[a] = au[:, j] if "A" in has else np.full(m, -1)
        for c in LANDMARK_COLUMNS:
            cols[c] = np.zeros(m)
        writer = FrameTableWriter(faces_dir / source / "frames.parquet")
        writer.add(cols)
        writer.close()
        (faces_dir / source / "shard-00000.h5").touch()  # the build checks that it is there


def run_one(faces_dir: str) -> dict:
    """In a child process: build from ``faces_dir``, report seconds and peak memory."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from pipeline.build.indexes import build
    from pipeline.build.params import BuildParams

    pc.equal(pa.array(["a"]), "a")  # Arrow loads its compute functions on first use
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        report = build(faces_dir, Path(tmp) / "build", BuildParams())
        seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"build_s": seconds, "peak_rss_mb": peak / 1024, "baseline_rss_mb": base / 1024,
            "au_frames": report["AU"]["frames"], "clones": report["AU"]["clones"]}


def child(*args: str) -> str:
    return subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True,
                          cwd=ROOT).stdout


def main() -> dict:
    rows = []
    for name, n in SIZES.items():
        with tempfile.TemporaryDirectory() as tmp:
            child("--fabricate", str(n), tmp)
            row = {"size": name, "frames": n, **json.loads(child("--one", tmp).splitlines()[-1])}
        row["build_rss_mb"] = row["peak_rss_mb"] - row["baseline_rss_mb"]
        if rows:
            previous = rows[-1]
            row["growth_bytes_per_frame"] = ((row["peak_rss_mb"] - previous["peak_rss_mb"]) * 2**20
                                             / (n - previous["frames"]))
            row["time_ratio_to_previous"] = row["build_s"] / previous["build_s"]
        rows.append(row)
    print(f"{'size':>9} {'frames':>8} {'build s':>8} {'peak RSS MB':>12} {'above baseline MB':>18} "
          f"{'growth B/frame':>15} {'time x':>7}")
    for row in rows:
        growth = f"{row['growth_bytes_per_frame']:.0f}" if "growth_bytes_per_frame" in row else "-"
        ratio = f"{row['time_ratio_to_previous']:.1f}" if "time_ratio_to_previous" in row else "-"
        print(f"{row['size']:>9} {row['frames']:>8} {row['build_s']:>8.2f} {row['peak_rss_mb']:>12.1f} "
              f"{row['build_rss_mb']:>18.1f} {growth:>15} {ratio:>7}")
    print(f"baseline (imports + Arrow compute init): {rows[0]['baseline_rss_mb']:.0f} MB")
    return {"name": "build", "rows": rows}


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--fabricate":
        fabricate(Path(sys.argv[3]), int(sys.argv[2]))
    elif len(sys.argv) == 3 and sys.argv[1] == "--one":
        sys.path.insert(0, str(ROOT))
        import pipeline.build.indexes  # noqa: F401  (imports are not the build's memory)
        print(json.dumps(run_one(sys.argv[2])))
    else:
        main()
