"""Training throughput: the real data path (HDF5 shards -> per-image augmentation ->
model) against the same model on batches already in memory, side by side in one run.

The data path may cost at most 5% (ratio >= 0.95). Also reports images/s for the demo
backbone (resnet18) and the paper's ResNet-50. Usage: python benchmarks/bench_train.py
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import write_fake_extraction  # noqa: E402
from pipeline.build.indexes import build  # noqa: E402
from pipeline.build.params import BuildParams  # noqa: E402
from pipeline.core.index import FrameIndex  # noqa: E402
from pipeline.training.data import StepDataset  # noqa: E402
from pipeline.core.labels import TASKS  # noqa: E402
from pipeline.training.losses import teacher_loss  # noqa: E402
from pipeline.training.models import MultitaskNet  # noqa: E402
from pipeline.training.sampling import TaskBatchSampler  # noqa: E402
from pipeline.training.train import TaskPasses  # noqa: E402


def steps_per_second(backbone: str, batches, steps: int) -> float:
    torch.manual_seed(0)
    model = MultitaskNet(backbone)
    runner = TaskPasses(model).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    it = iter(batches)
    next_batch = lambda: next(it)  # noqa: E731
    b = next_batch()  # warm-up step, not timed
    for timed in (False, True):
        t0 = time.perf_counter()
        for _ in range(steps if timed else 1):
            images = {t: b[t][0] for t in TASKS}
            labels = {t: b[t][1] for t in TASKS}
            loss, _ = teacher_loss(runner(images), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            b = next_batch()
        if timed:
            return steps / (time.perf_counter() - t0)


def main() -> dict:
    torch.set_num_threads(2)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_fake_extraction(tmp / "faces", sizes={"affwild2": 2000, "affwild2_val": 100, "disfa": 800,
                                                     "expw": 800, "afewva": 800})
        build(tmp / "faces", tmp / "build", BuildParams())
        indexes = {t: FrameIndex.read(tmp / "build" / f"train_{t}.parquet") for t in TASKS}
        for backbone, batch, steps in (("resnet18", 32, 8), ("resnet50", 20, 3)):
            sampler = TaskBatchSampler({t: indexes[t].weight for t in TASKS}, batch, epoch_length=steps + 2, seed=0)
            data = StepDataset(indexes, sampler, epoch=0, start_step=0, seed=0)
            loader = torch.utils.data.DataLoader(data, batch_size=None, num_workers=0)
            t0 = time.perf_counter()
            fixed = [data[i] for i in range(steps + 2)]
            load_s = (time.perf_counter() - t0) / (steps + 2)
            real = steps_per_second(backbone, loader, steps)
            memory = steps_per_second(backbone, fixed, steps)
            images = 3 * batch
            rows.append({"backbone": backbone, "batch_per_task": batch, "steps": steps,
                         "data_path_ms_per_step": 1000 * load_s,
                         "real_steps_per_s": real, "in_memory_steps_per_s": memory,
                         "ratio": real / memory, "train_images_per_s": real * images})
    for r in rows:
        print(f"{r['backbone']:>9}: {r['train_images_per_s']:.1f} img/s with the real data path, "
              f"ratio to in-memory {r['ratio']:.3f} (data path {r['data_path_ms_per_step']:.1f} ms/step)")
    return {"name": "train", "rows": rows}


if __name__ == "__main__":
    main()
