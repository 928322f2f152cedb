"""The temporal model on cached features against the authors' way (the frozen CNN run
again inside every GRU step), and the feature dump against the bare forward pass; side by
side in one run, on the demo's Aff-Wild2 training frames and its best CNN student (run
`make demo` first).

- GRU steps: ``pipeline.training.train.train_step`` on the windows of ``sequences.WindowSteps``
  (features read from the file), against the same steps whose features come from reading
  the windows' faces and running the frozen CNN on them (eval mode, no grad), as the
  authors' CNN-RNN does. Goal: an epoch at least 20x faster on the features.
- The dump: frames per second of ``features.dump`` (read faces, centre view, forward,
  write) against the bare forward of the same model on batches of the same size already
  in memory.

Usage: python benchmarks/bench_temporal.py
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.temporal.params import FeaturesParams, RnnParams  # noqa: E402

from pipeline.core.params import load  # noqa: E402
from pipeline.extraction.params import ExtractParams  # noqa: E402
from pipeline.inference.params import EnsembleParams  # noqa: E402
from pipeline.core.images import centre_view, to_tensor  # noqa: E402
from pipeline.core.index import FrameIndex, read_faces  # noqa: E402
from pipeline.temporal.features import Features, dump, task_outputs  # noqa: E402
from pipeline.training.models import MultitaskNet, load_checkpoint, save_checkpoint  # noqa: E402
from pipeline.temporal.sequences import SequenceData  # noqa: E402
from pipeline.core.shards import FaceReader  # noqa: E402
from pipeline.training.train import setup, train_step  # noqa: E402
from pipeline.temporal.features import choose_checkpoint  # noqa: E402

LENGTH, WINDOWS, STEPS, BATCH = 32, 16, 4, 128


def time_steps(run, data: SequenceData, steps: int, cnn=None, table=None) -> float:
    """Seconds per GRU step over ``steps`` steps (after one untimed); with ``cnn`` the
    windows' features are recomputed from their faces, as the authors do."""
    items = data.steps(run.sampler, 0, 0, run.params)
    reader = FaceReader()
    run.runner.train()
    for k in range(steps + 1):
        if k == 1:
            start = time.perf_counter()
        batch = items[k]
        if cnn is not None:
            for task, ((x, lengths), labels, windows) in batch.items():
                frames = np.concatenate([data.train.frames(w) for w in windows.numpy()])
                with torch.no_grad():
                    feats, _ = task_outputs(cnn, centre_view(to_tensor(read_faces(reader, table, frames))))
                fresh = torch.zeros_like(x)
                fresh[torch.arange(x.shape[1])[None] < lengths[:, None]] = feats
                batch[task] = ((fresh, lengths), labels, windows)
        train_step(run, batch)
    reader.close()
    return (time.perf_counter() - start) / steps


def bench(cnn, checkpoint, tmp: Path, table: FrameIndex) -> list[dict]:
    """The dump and a GRU epoch both ways, for one frozen CNN."""
    out = tmp / f"features-{cnn.backbone_name}.h5"
    reader = FaceReader()
    batches = [centre_view(to_tensor(read_faces(reader, table, np.arange(s, min(s + BATCH, len(table))))))
               for s in range(0, len(table), BATCH)]
    reader.close()

    def bare_forward() -> float:
        start = time.perf_counter()
        for x in batches:
            task_outputs(cnn, x.contiguous(memory_format=torch.channels_last))
        return len(table) / (time.perf_counter() - start)

    before = bare_forward()  # timed before and after the dump: the faster counts (warm-up, noise)
    start = time.perf_counter()
    dump(cnn, tmp / "frames.parquet", out, checkpoint, BATCH, torch.device("cpu"), "centres")
    dumped = len(table) / (time.perf_counter() - start)
    bare = max(before, bare_forward())
    data = SequenceData(Features(out), table, LENGTH)
    params = RnnParams(batch_per_task=WINDOWS, device="cpu")
    features_step = time_steps(setup(params, data, "bench"), data, STEPS)
    cnn_step = time_steps(setup(params, data, "bench"), data, STEPS, cnn, table)
    epoch = setup(params, data, "bench").sampler.steps_per_epoch
    return [{"bench": "feature_dump", "backbone": cnn.backbone_name, "frames": len(table),
             "dump_frames_per_s": round(dumped, 1), "bare_forward_frames_per_s": round(bare, 1),
             "ratio": round(dumped / bare, 3)},
            {"bench": "gru_epoch", "backbone": cnn.backbone_name, "sequence_length": LENGTH,
             "windows_per_task": WINDOWS, "steps_per_epoch": epoch,
             "features_s_per_epoch": round(features_step * epoch, 3),
             "through_cnn_s_per_epoch": round(cnn_step * epoch, 3), "speedup": round(cnn_step / features_step, 1)}]


def main() -> dict:
    torch.set_num_threads(2)
    p = load(ROOT / "params.yaml", ExtractParams, FeaturesParams, EnsembleParams)
    table_path = ROOT / p.extract.out / "affwild2" / "frames.parquet"
    checkpoint = choose_checkpoint(p.features.checkpoint, p.ensemble.members, str(ROOT / "models/students"),
                                   str(ROOT / "models/teacher.pt"))
    member, _ = load_checkpoint(checkpoint)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        frames = pd.read_parquet(table_path)  # train and validation videos: the epoch choice needs both
        frames["shard"] = [str((table_path.parent / s).resolve()) for s in frames["shard"]]
        frames.to_parquet(tmp / "frames.parquet")
        table = FrameIndex.read(tmp / "frames.parquet")
        rows += bench(member.eval(), checkpoint, tmp, table)  # the demo's best student
        torch.manual_seed(0)
        big = MultitaskNet("resnet50").to(memory_format=torch.channels_last).eval()  # the paper's size (weights random)
        save_checkpoint(tmp / "resnet50.pt", big)
        rows += bench(big, tmp / "resnet50.pt", tmp, table)
    for r in rows:
        if r["bench"] == "feature_dump":
            print(f"feature dump ({r['backbone']}): {r['dump_frames_per_s']:.0f} frames/s against "
                  f"{r['bare_forward_frames_per_s']:.0f} for the bare forward: ratio {r['ratio']:.3f}")
        else:
            print(f"GRU epoch on {r['backbone']} features (T={LENGTH}, {WINDOWS} windows per task, "
                  f"{r['steps_per_epoch']} steps): {r['features_s_per_epoch']:.2f} s on cached features, "
                  f"{r['through_cnn_s_per_epoch']:.2f} s through the frozen CNN: {r['speedup']:.1f}x")
    return {"name": "temporal", "rows": rows}


if __name__ == "__main__":
    main()
