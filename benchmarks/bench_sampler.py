"""Speed of the per-task batch sampler and of ML-ROS.

- Sampler: 3 tasks of n frames each with random weights, batch 32 per task, epoch
  "smallest"; one full epoch (draws plus iteration over every step), in indexes/s.
- ML-ROS: n frames x 8 AUs with AU-like positive rates (3% to 50%) and 5% of frames
  fully unknown, default settings (MeanIR from the data, 50% budget); and the same data
  with MeanIR preset to 1.0, which can never be reached, so the whole budget is spent.

``main()`` prints a table and returns {"name": ..., "rows": [...]} (JSON-serialisable).
"""
from __future__ import annotations

import time

import numpy as np

from pipeline.build import mlros
from pipeline.training.sampling import TaskBatchSampler

SIZES = (100_000, 1_000_000)
BATCH = 32
AU_RATES = np.array([0.20, 0.15, 0.25, 0.30, 0.35, 0.05, 0.03, 0.50])


def bench_sampler(n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    weights = {task: rng.random(n) * 2 for task in ("AU", "EXPR", "VA")}
    start = time.perf_counter()
    sampler = TaskBatchSampler(weights, batch_per_task=BATCH, epoch_length="smallest", seed=seed)
    drawn = sum(d.size for d in sampler.epoch_draws(0).values())
    seconds = time.perf_counter() - start
    return {"bench": "sampler_epoch", "frames_per_task": n, "tasks": 3, "batch_per_task": BATCH,
            "steps": sampler.steps_per_epoch, "indexes": drawn, "seconds": round(seconds, 4),
            "indexes_per_s": round(drawn / seconds)}


def au_labels(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = (rng.random((n, len(AU_RATES))) < AU_RATES).astype(np.int8)
    y[rng.random(n) < 0.05] = -1
    return y


def bench_ml_ros(n: int, mean_ir: float | None, seed: int = 0) -> dict:
    y = au_labels(n, seed)
    codes = mlros.positive_codes(y)
    start = time.perf_counter()
    clones = mlros.ml_ros(codes, y.shape[1], budget_pct=50.0, mean_ir=mean_ir, seed=seed)
    seconds = time.perf_counter() - start
    positives = mlros.label_counts(codes, y.shape[1])
    return {"bench": "ml_ros", "frames": n, "labels": y.shape[1],
            "mean_ir_preset": mean_ir, "clones": int(clones.sum()), "budget": n // 2,
            "meanir_before": round(float(mlros.irlbl_from_counts(positives).mean()), 4),
            "meanir_after": round(float(mlros.irlbl_from_counts(
                positives + mlros.label_counts(codes, y.shape[1], clones)).mean()), 4),
            "seconds": round(seconds, 4), "clones_per_s": round(clones.sum() / seconds)}


def main() -> dict:
    rows = [bench_sampler(n) for n in SIZES]
    rows += [bench_ml_ros(n, mean_ir) for n in SIZES for mean_ir in (None, 1.0)]
    print(f"{'bench':<14}{'frames':>10}{'work':>12}{'seconds':>10}{'rate /s':>14}  notes")
    for r in rows:
        if r["bench"] == "sampler_epoch":
            print(f"{r['bench']:<14}{r['frames_per_task']:>10}{r['indexes']:>12}{r['seconds']:>10.3f}"
                  f"{r['indexes_per_s']:>14,}  indexes, {r['steps']} steps")
        else:
            preset = "data" if r["mean_ir_preset"] is None else r["mean_ir_preset"]
            print(f"{r['bench']:<14}{r['frames']:>10}{r['clones']:>12}{r['seconds']:>10.3f}"
                  f"{r['clones_per_s']:>14,}  clones, MeanIR {preset}: "
                  f"{r['meanir_before']} -> {r['meanir_after']}")
    return {"name": "sampler", "rows": rows}


if __name__ == "__main__":
    main()
