"""Students on the soft-label cache against the authors' way (the teacher run online on
every batch), and the cache's dump against the bare forward pass; side by side in one run.

- Student steps: the real data path with the cache (``softlabels.Targets``: views and
  logits read by memory map) against the same steps plus the teacher's forward pass on
  each task batch (eval mode, no grad), same backbone for both. The ideal ratio of their
  times is step / (step + teacher forward); reading the cache should cost almost nothing
  (goal: the measured ratio within 5% of the ideal).
- The dump: frames per second of ``softlabels.teacher_logits`` (read faces, cut the K
  views, forward, float16) against the bare forward of the same model on batches of the
  same size already in memory (goal: at least 0.9).

Usage: python benchmarks/bench_students.py
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import write_fake_extraction  # noqa: E402
from pipeline.build.indexes import build  # noqa: E402
from pipeline.build.params import BuildParams  # noqa: E402
from pipeline.training.params import StudentParams  # noqa: E402
from pipeline.core.index import FrameIndex  # noqa: E402
from pipeline.training.data import StepDataset  # noqa: E402
from pipeline.core.labels import TASKS  # noqa: E402
from pipeline.training.models import MultitaskNet, save_checkpoint  # noqa: E402
from pipeline.training.softlabels import Frames, SoftLabels, dump, teacher_logits, views_batch  # noqa: E402
from pipeline.core.shards import FaceReader  # noqa: E402
from pipeline.training.train import setup, train_step  # noqa: E402
from pipeline.training.views import frame_views  # noqa: E402

CASES = (("mobilenet_v3_small", 32, 12), ("resnet18", 32, 6), ("resnet50", 20, 3))  # backbone, batch, steps
VIEWS, DUMP_BATCH = 8, 16


def time_steps(run, data, steps: int, teacher=None) -> float:
    """Seconds per student step over ``steps`` steps (after one untimed), optionally with
    the teacher's forward pass on every task batch, as the authors' code does."""
    run.runner.train()
    for k in range(steps + 1):
        if k == 1:
            start = time.perf_counter()
        batch = data[k]
        if teacher is not None:
            with torch.no_grad():
                for x, labels, _ in batch.values():
                    out = teacher(x)
                    labels["teacher"] = torch.cat([out[t] for t in TASKS], dim=1)
        train_step(run, batch)
    return (time.perf_counter() - start) / steps


def teacher_forward_seconds(teacher, data, steps: int) -> float:
    with torch.no_grad():
        batches = [data[k] for k in range(steps)]
        start = time.perf_counter()
        for batch in batches:
            for x, _, _ in batch.values():
                teacher(x)
    return (time.perf_counter() - start) / steps


def bench_student(index_dir: Path, cache: SoftLabels, backbone: str, batch: int, steps: int) -> dict:
    torch.manual_seed(0)
    teacher = MultitaskNet(backbone).eval()
    params = StudentParams(backbone=backbone, batch_per_task=batch, steps_per_epoch=steps + 2, device="cpu")
    run = setup(params, index_dir, "bench", soft_labels=cache)
    data = StepDataset(run.data.indexes, run.sampler, 0, 0, params.seed, True, run.data.targets)
    cached = time_steps(run, data, steps)
    run = setup(params, index_dir, "bench", soft_labels=cache)  # fresh optimiser and weights
    plain = StepDataset(run.data.indexes, run.sampler, 0, 0, params.seed, True)  # no cache: the teacher gives the targets
    online = time_steps(run, plain, steps, teacher)
    forward = teacher_forward_seconds(teacher, plain, steps)
    bare = online - forward  # the student's own step
    ideal = bare / (bare + forward)
    ratio = cached / online
    return {"bench": "student_step", "backbone": backbone, "batch_per_task": batch, "steps": steps,
            "cached_s_per_step": round(cached, 4), "online_s_per_step": round(online, 4),
            "teacher_forward_s": round(forward, 4), "ratio": round(ratio, 4), "ideal_ratio": round(ideal, 4),
            "ratio_over_ideal": round(ratio / ideal, 4)}


def bench_dump(index_dir: Path, backbone: str) -> dict:
    torch.manual_seed(0)
    model = MultitaskNet(backbone).eval()
    frames = Frames.union({t: FrameIndex.read(index_dir / f"train_{t}.parquet") for t in TASKS})
    n = min(len(frames.uid), 10 * DUMP_BATCH)
    frames = Frames(frames.uid[:n], frames.shard[:n], frames.row[:n])
    offsets, flips = frame_views(frames.uid, VIEWS)
    start = time.perf_counter()
    for _ in teacher_logits(model, frames, offsets, flips, DUMP_BATCH, torch.device("cpu"), progress=False):
        pass
    dumped = n / (time.perf_counter() - start)
    reader = FaceReader()
    batches = [views_batch(np.stack([reader.read(frames.shard[i], frames.row[i]) for i in range(s, min(s + DUMP_BATCH, n))]),
                           offsets[s:s + DUMP_BATCH], flips[s:s + DUMP_BATCH]) for s in range(0, n, DUMP_BATCH)]
    start = time.perf_counter()
    with torch.no_grad():
        for x in batches:
            model(x)
    bare = n / (time.perf_counter() - start)
    return {"bench": "soft_label_dump", "backbone": backbone, "frames": n, "views": VIEWS,
            "images_per_forward": DUMP_BATCH * VIEWS, "dump_frames_per_s": round(dumped, 2),
            "bare_forward_frames_per_s": round(bare, 2), "ratio": round(dumped / bare, 4)}


def main() -> dict:
    torch.set_num_threads(2)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_fake_extraction(tmp / "faces", sizes={"affwild2": 600, "affwild2_val": 60, "disfa": 300, "expw": 300,
                                                     "afewva": 300})
        build(tmp / "faces", tmp / "build", BuildParams())
        save_checkpoint(tmp / "teacher.pt", MultitaskNet("mobilenet_v3_small"), {"train": {"va_centres": "centres"}})
        from pipeline.training.models import load_checkpoint

        teacher, _ = load_checkpoint(tmp / "teacher.pt")
        dump(teacher, tmp / "build", tmp / "cache.h5", tmp / "teacher.pt", VIEWS, "views", 32, torch.device("cpu"),
             progress=False)
        cache = SoftLabels(tmp / "cache.h5")
        for backbone, batch, steps in CASES:
            rows.append(bench_student(tmp / "build", cache, backbone, batch, steps))
        for backbone in ("mobilenet_v3_small", "resnet18"):
            rows.append(bench_dump(tmp / "build", backbone))
    for r in rows:
        if r["bench"] == "student_step":
            print(f"student {r['backbone']:>18}: cache {r['cached_s_per_step']:.3f} s/step, online teacher "
                  f"{r['online_s_per_step']:.3f} s/step: ratio {r['ratio']:.3f} (ideal {r['ideal_ratio']:.3f}, "
                  f"x{r['ratio_over_ideal']:.3f})")
        else:
            print(f"dump {r['backbone']:>21}: {r['dump_frames_per_s']:.1f} frames/s x {r['views']} views against "
                  f"{r['bare_forward_frames_per_s']:.1f} for the bare forward: ratio {r['ratio']:.3f}")
    return {"name": "students", "rows": rows}


if __name__ == "__main__":
    main()
