"""Run under torchrun (or alone): one training step's loss and gradients, written to a file.

Used by test_distributed.py to compare 2 processes (gloo, CPU) with 1 process. In float64:
in float32 this network's gradients carry ~1% rounding error (against a float64 run, for
PyTorch's own BatchNorm as much as for ours), which would hide real differences."""
import sys

import torch

from pipeline.core.index import FrameIndex

from pipeline.training.data import StepDataset
from pipeline.training.distributed import convert_batchnorm, gather_batches
from pipeline.core.labels import TASKS
from pipeline.training.losses import teacher_loss
from pipeline.training.models import MultitaskNet
from pipeline.training.sampling import TaskBatchSampler
from pipeline.core.device import distributed
from pipeline.training.train import TaskPasses, seed_everything

torch.set_num_threads(1)
index_dir, out = sys.argv[1], sys.argv[2]
rank, world = distributed()
seed_everything(0)
indexes = {t: FrameIndex.read(f"{index_dir}/train_{t}.parquet") for t in TASKS}
sampler = TaskBatchSampler({t: indexes[t].weight for t in TASKS}, 8, epoch_length=2, seed=0, rank=rank,
                           world_size=world)
model = MultitaskNet("resnet18").double()
runner = TaskPasses(model)
if world > 1:
    convert_batchnorm(model, torch.device("cpu"))
    runner = torch.nn.parallel.DistributedDataParallel(runner)
batch = StepDataset(indexes, sampler, epoch=0, start_step=0, seed=0)[0]
images = {t: batch[t][0].double() for t in TASKS}
labels = {t: {k: (v.double() if v.is_floating_point() else v) for k, v in batch[t][1].items()} for t in TASKS}
runner.train()
outputs = runner(images)
if world > 1:
    outputs, labels = gather_batches(outputs, labels)
loss, _ = teacher_loss(outputs, labels)
loss.backward()
if rank == 0:
    torch.save({"loss": loss.detach(), "grads": {n: p.grad for n, p in model.named_parameters()},
                "running_var": {n: b for n, b in model.named_buffers() if n.endswith("running_var")}}, out)
