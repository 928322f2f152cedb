"""One training loop for the teacher (Eq. 13) and the students (Eq. 14), of the CNN and of
the temporal model.

What is trained on comes from a data object: :class:`ImageData` (the build stage's
indexes, faces from the shards) or ``sequences.SequenceData`` (windows of cached
features). It gives the sampler's weights per task, the model, each epoch's batches, the
validation scores and the hashes a resume file must match; the loop is the same.

A student differs in two places only: its batches come with the teacher's logits on the
very views it sees (read from the soft-label cache; the teacher is never loaded) and its
loss is Eq. 14 instead of Eq. 13.

Each step draws one batch per task with the balanced weights of the build stage, runs
the model on each (three passes, so BatchNorm sees each task batch alone, or one
concatenated pass), and takes one optimiser step on the sum of the losses. After every
epoch the model is scored on the validation set; the best epoch by AU + EXPR + CCC_V +
CCC_A is kept. A resume file (``pipeline.training.resume``) written every ``save_every``
steps and at each epoch's end lets an interrupted run continue to the same final weights: the batches and augmentations
are functions of (seed, epoch, step), and the model, optimiser, scheduler and RNG states
are restored exactly.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the same code runs DistributedDataParallel: each
process takes its share of every task batch; rank 0 evaluates and writes the outputs.
"""
from __future__ import annotations

import logging
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from pipeline.training.params import TrainParams
from pipeline.core.device import distributed, resolve_device
from pipeline.training.data import ImageData
from pipeline.training.distributed import convert_batchnorm, gather_batches
from pipeline.core.fileio import atomic_write
from pipeline.core.labels import TASKS, split_logits, va_centres
from pipeline.training.losses import student_loss, teacher_loss
from pipeline.training.models import MultitaskNet, save_checkpoint
from pipeline.training.optim import make_optimizer, make_scheduler
from pipeline.training.resume import State, flat_metrics, load_resume, save_resume, write_log
from pipeline.training.sampling import TaskBatchSampler

log = logging.getLogger("mtaffect.train")

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class TaskPasses(nn.Module):
    """Runs the model on every task batch in one ``forward`` (what DDP needs: one forward
    per backward). Separate passes keep BatchNorm statistics per task, as the authors do;
    one concatenated pass is faster on small batches."""

    def __init__(self, model: MultitaskNet, separate: bool = True):
        super().__init__()
        self.model, self.separate = model, separate

    def forward(self, images: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
        if self.separate:
            return {task: self.model(x) for task, x in images.items()}
        sizes = [len(x) for x in images.values()]
        out = self.model(torch.cat(list(images.values())))
        split = {k: v.split(sizes) for k, v in out.items()}
        return {task: {k: split[k][i] for k in out} for i, task in enumerate(images)}


@dataclass
class Outputs:
    """Where a training run writes: the best checkpoint, logs, and the resume file.

    The best epoch's checkpoint is kept next to the resume file (``best``, not a DVC
    output) and copied to ``checkpoint`` when the run ends: DVC deletes the outputs of a
    stage before it reruns it, so a run resumed after its best epoch still has it.
    """

    checkpoint: Path
    log_csv: Path
    report: Path
    resume: Path

    @property
    def best(self) -> Path:
        return self.resume.with_name(f"best-{self.resume.name}")


@dataclass
class Run:
    """Everything one training run holds, built once by :func:`setup`."""

    params: TrainParams
    name: str
    rank: int
    world: int
    device: torch.device
    data: object  # ImageData or sequences.SequenceData
    sampler: TaskBatchSampler
    model: nn.Module  # MultitaskNet or temporal.TemporalNet
    runner: nn.Module  # the model's task passes, wrapped in DDP under torchrun
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loss: object  # (outputs per task batch, labels per task batch) -> (total, parts per task)
    inputs: dict  # what the data came from (hashes): a resume file must match them


def setup(params: TrainParams, data, name: str, soft_labels=None) -> Run:
    """Data, sampler, model, optimiser, scheduler and loss of a run (nothing trained yet).

    ``data`` is a folder of the build stage's indexes (the CNN: :class:`ImageData` with
    ``soft_labels``) or a data object such as ``sequences.SequenceData``. With soft labels
    (``params`` then has the distillation's knobs) the run is a student's.
    """
    rank, world = distributed()
    device = resolve_device(params.device)
    seed_everything(params.seed)
    if isinstance(data, (str, Path)):
        data = ImageData(params, data, soft_labels)
    sampler = TaskBatchSampler(data.weights, params.batch_per_task, epoch_length=params.steps_per_epoch or "smallest",
                               seed=params.seed, rank=rank, world_size=world)
    model = data.make_model(params).to(device)
    runner: nn.Module = TaskPasses(model, getattr(params, "separate_task_passes", True))
    if world > 1:
        if params.batch_per_task % world:
            raise ValueError(f"batch_per_task {params.batch_per_task} is not a multiple of the {world} processes")
        convert_batchnorm(model, device)
        runner = nn.parallel.DistributedDataParallel(runner, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = make_optimizer(model, params)
    scheduler = make_scheduler(optimizer, params, sampler.steps_per_epoch)
    centres = torch.as_tensor(va_centres(params.va_centres), dtype=torch.float32, device=device)

    def loss(outputs, labels):
        if data.targets is None:
            return teacher_loss(outputs, labels, params.task_weights, centres, params.ccc_weighting)
        teacher = {task: split_logits(labels[task]["teacher"], model.schema) for task in outputs}
        return student_loss(outputs, labels, teacher, params.lam, params.temperature, params.task_weights, centres,
                            params.ccc_weighting, params.distill_unlabelled)

    return Run(params, name, rank, world, device, data, sampler, model, runner, optimizer, scheduler, loss,
               data.inputs)


def train(params: TrainParams, data, outputs: Outputs, name: str = "teacher",
          progress: bool = True, stop_after_steps: int | None = None, soft_labels=None,
          extra: dict | None = None) -> dict:
    """Train a multitask model on ``data`` (see :func:`setup`); returns the report.

    ``soft_labels`` makes it a student's run (see :func:`setup`). ``extra`` (plain
    values: where the inputs came from) goes into the checkpoint and the report. ``stop_after_steps``
    ends the run early (after that many optimiser steps in this call, with a resume file
    written), which is how the tests interrupt a run deterministically.
    """
    run = setup(params, data, name, soft_labels)
    state = State()
    if outputs.resume.exists():
        state = load_resume(outputs.resume, run)
        log.info("%s: resuming at epoch %d, step %d", name, state.epoch, state.step)
    budget = [stop_after_steps]
    while state.epoch < params.epochs:
        if not train_one_epoch(run, state, outputs, progress, budget):
            return {"interrupted": True, "epoch": state.epoch, "step": state.step}
        finish_epoch(run, state, outputs, extra or {})
    if run.rank == 0:
        with atomic_write(outputs.checkpoint) as tmp:  # the log goes in place only with its checkpoint
            shutil.copyfile(outputs.best, tmp)
            write_log(outputs.log_csv, state.history)
    return {"name": name, "best_epoch": state.best_epoch, "best_total": state.best_total,
            "validation": state.best_metrics, "epochs": params.epochs, "steps_per_epoch": run.sampler.steps_per_epoch,
            "batch_per_task": params.batch_per_task, "backbone": run.model.backbone_name, **(extra or {}),
            "history": state.history}


def train_one_epoch(run: Run, state: State, outputs: Outputs, progress: bool, budget: list) -> bool:
    """The steps of ``state.epoch`` from ``state.step`` on; False if the step budget ran out
    first (``budget[0]``: steps this call may still take, None for no limit)."""
    params, steps = run.params, run.sampler.steps_per_epoch
    steps_data = run.data.steps(run.sampler, state.epoch, state.step, params)
    loader = torch.utils.data.DataLoader(steps_data, batch_size=None, shuffle=False, num_workers=params.workers,
                                         persistent_workers=False, prefetch_factor=4 if params.workers else None)
    if state.step == 0:
        state.sums = {"loss": 0.0, **{f"loss_{t}": 0.0 for t in TASKS}}
    bar = tqdm(total=steps, initial=state.step, desc=f"{run.name} epoch {state.epoch + 1}/{params.epochs}",
               unit="step", disable=not progress or run.rank != 0)
    run.runner.train()
    try:
        for batch in loader:
            loss, parts, state.lr = train_step(run, batch)
            state.step += 1
            state.sums["loss"] += loss
            for t in TASKS:  # a task this network does not learn has no loss (NaN)
                state.sums[f"loss_{t}"] += float(parts.get(t, "nan"))
            bar.update(1)
            bar.set_postfix({k.removeprefix("loss_"): f"{v / state.step:.3f}" for k, v in state.sums.items()})
            if budget[0] is not None:
                budget[0] -= 1
            stop = budget[0] == 0
            if run.rank == 0 and (stop or state.step % params.save_every == 0) and state.step < steps:
                save_resume(outputs.resume, run, state)
            if stop:
                return False
    finally:
        bar.close()
    return True


def train_step(run: Run, batch: dict) -> tuple[float, dict, float]:
    """One optimiser step on one batch per task; returns the loss, its parts per task and
    the learning rate used."""
    inputs, labels = {}, {}
    for task, (x, y, _) in batch.items():  # this process's share of each task batch
        inputs[task] = run.data.to_device(x, run.device, run.params)
        labels[task] = {k: v.to(run.device) for k, v in y.items()}
    outputs = run.runner(inputs)
    if run.world > 1:  # the loss of the whole batch, as in one process
        outputs, labels = gather_batches(outputs, labels)
    loss, parts = run.loss(outputs, labels)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    lr = run.optimizer.param_groups[0]["lr"]
    run.optimizer.step()
    run.scheduler.step()
    return loss.item(), parts, lr


def validate(run: Run) -> dict:
    """ABAW scores of the model on the validation data (AU threshold 0.5)."""
    return run.data.validate(run.model, run.device, run.params)


def finish_epoch(run: Run, state: State, outputs: Outputs, extra: dict) -> None:
    """Validate, log, keep the best checkpoint, and write the resume file of the next epoch."""
    steps = run.sampler.steps_per_epoch
    row = {"epoch": state.epoch + 1, "lr": state.lr,
           **{k: v / max(steps, 1) for k, v in state.sums.items()}}
    if run.rank == 0:
        result = validate(run)
        row.update(flat_metrics(result))
        state.history.append(row)
        if result["total"] > state.best_total:
            state.best_total, state.best_epoch, state.best_metrics = result["total"], state.epoch + 1, result
            save_checkpoint(outputs.best, run.model, {"train": run.params.model_dump(), "epoch": state.epoch + 1,
                                                      "metrics_total": float(result["total"]), **extra})
        log.info("%s epoch %d: loss %.4f, val total %.4f (best %.4f at epoch %d)", run.name, state.epoch + 1,
                 row["loss"], result["total"], state.best_total, state.best_epoch)
    state.epoch += 1
    state.step = 0
    if run.rank == 0:
        save_resume(outputs.resume, run, state)
    if run.world > 1:
        dist.barrier()
