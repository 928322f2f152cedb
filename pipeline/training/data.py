"""The CNN's training data: one batch per task a step, read from the HDF5 shards and
augmented, and the validation data its epochs are chosen on.

Training draws, at every step, one batch per task (``pipeline.training.sampling``). A
:class:`StepDataset` item is a whole step: the three task batches, read from the shards
and augmented. Augmentation is drawn per image from a generator seeded by (seed, epoch,
step), so it differs per image and per step but not with the number of DataLoader
workers or after a resume.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from pipeline.training.params import TrainParams
from pipeline.core.errors import DataError
from pipeline.core.hashing import file_sha256
from pipeline.core.images import augment, centre_view, draw_augmentation, to_tensor
from pipeline.core.index import FrameIndex, read_faces
from pipeline.core.labels import TASKS
from pipeline.core.shards import FaceReader
from pipeline.evaluation.metrics import era_total
from pipeline.evaluation.scoring import score
from pipeline.inference.runner import predict
from pipeline.training.models import MultitaskNet, load_pretrained_backbone
from pipeline.training.sampling import TaskBatchSampler

log = logging.getLogger("mtaffect")


class StepDataset(torch.utils.data.Dataset):
    """Item ``k`` = step ``start_step + k`` of one epoch: ``{task: (images, labels, positions)}``.

    With ``targets`` (a student's ``softlabels.Targets``) each image's view may come from
    the soft-label cache, and its labels carry the teacher's logits on that very view
    under ``"teacher"``.
    """

    def __init__(self, indexes: dict[str, FrameIndex], sampler: TaskBatchSampler, epoch: int,
                 start_step: int, seed: int, augment_images: bool = True, targets=None, tasks=TASKS):
        self.indexes, self.seed, self.epoch, self.augment = indexes, seed, epoch, augment_images
        self.targets, self.tasks = targets, tasks
        self.draws = sampler.epoch_draws(epoch)  # {task: [steps, this process's share]}
        # Augmentation is drawn for the whole batch and this process takes its share, so
        # an image gets the same crop and flip whatever the number of processes.
        self.global_batch, self.rank, self.world = sampler.batch_per_task, sampler.rank, sampler.world_size
        self.start_step = start_step
        self.steps = sampler.steps_per_epoch
        self.reader = FaceReader()

    def __len__(self) -> int:
        return self.steps - self.start_step

    def __getitem__(self, k: int):
        step = self.start_step + k
        g = torch.Generator().manual_seed(hash_seed(self.seed, self.epoch, step))
        batch = {}
        share = slice(self.rank, None, self.world)
        for task in TASKS:
            positions = self.draws[task][step]
            if task not in self.tasks:  # not read; its augmentation drawn all the same, so the others' are the
                draw_augmentation(g, self.global_batch)  # multitask run's (the same images, the same views)
                continue
            x = to_tensor(read_faces(self.reader, self.indexes[task], positions))
            offsets, flips = draw_augmentation(g, self.global_batch)
            offsets, flips = offsets[share], flips[share]
            labels = self.indexes[task].labels(positions)
            if self.targets is not None:
                offsets, flips, labels["teacher"] = self.targets.draw(task, positions, g, self.global_batch, share,
                                                                      offsets, flips)
            batch[task] = (augment(x, offsets, flips) if self.augment else centre_view(x),
                           labels, torch.from_numpy(positions))
        return batch


def hash_seed(*parts: int) -> int:
    """A 63-bit seed from integers (stable across processes, unlike ``hash``)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> 1)


class ImageData:
    """The CNN's training data: the build stage's indexes in ``index_dir``, faces read from
    the shards; with ``soft_labels`` (a ``softlabels.SoftLabels`` cache) a student's."""

    def __init__(self, params: TrainParams, index_dir: str | Path, soft_labels=None):
        index_dir = Path(index_dir)
        self.indexes = {t: FrameIndex.read(index_dir / f"train_{t}.parquet") for t in TASKS}
        for task, index in self.indexes.items():  # every step draws a batch of every task
            if not len(index):
                raise DataError(f"{index_dir / f'train_{task}.parquet'}: no frame (rerun `dvc repro build`)")
        val = FrameIndex.read(index_dir / "val.parquet")
        videos = len(set(val.video))
        if params.selection_videos is not None and params.selection_videos >= videos:
            log.warning("selection_videos %d: %s has %d validation videos: the best epoch is chosen on all of them",
                        params.selection_videos, index_dir / "val.parquet", videos)
        self.val = val.first_videos(params.selection_videos)
        self.weights = {t: self.indexes[t].weight for t in TASKS}
        self.schema = self.val.schema  # the build's label schema: the heads follow it
        for task, index in self.indexes.items():
            self.schema.require_same(index.schema, str(index_dir / f"train_{task}.parquet"))
        if soft_labels is not None:
            self.schema.require_same(soft_labels.schema, f"{soft_labels.path}: the soft-label cache")
        self.targets = None if soft_labels is None else soft_labels.targets(self.indexes)
        # A teacher with a task weight of 0 is a network of the other tasks (the study's
        # single-task arm): it never reads that task's batches, and is chosen on what it learns.
        self.tasks = TASKS if soft_labels is not None else tuple(t for t in TASKS if params.task_weights[t] > 0)
        self.inputs = {p.name: file_sha256(p) for p in sorted(index_dir.glob("*.parquet"))}
        if soft_labels is not None:
            self.inputs["teacher"] = soft_labels.attrs["teacher_sha256"]

    def make_model(self, params: TrainParams) -> MultitaskNet:
        model = MultitaskNet(params.backbone, params.bn_momentum, self.schema)
        if params.pretrained:
            load_pretrained_backbone(model, params.pretrained)
        return model.to(memory_format=_layout(params))

    def steps(self, sampler: TaskBatchSampler, epoch: int, start_step: int, params: TrainParams) -> StepDataset:
        return StepDataset(self.indexes, sampler, epoch, start_step, params.seed, params.augment, self.targets,
                           self.tasks)

    @staticmethod
    def to_device(x: torch.Tensor, device: torch.device, params: TrainParams) -> torch.Tensor:
        return x.to(device, memory_format=_layout(params), non_blocking=True)

    def validate(self, model: MultitaskNet, device: torch.device, params: TrainParams) -> dict:
        """ABAW scores on the validation index (AU threshold 0.5); the total (what the best
        epoch is chosen by) over the tasks this network learns."""
        result = score(self.val, predict(model, self.val, device, params.eval_batch, params.va_centres))
        if self.tasks != TASKS:
            result["total"] = era_total({t: result[t] if t in self.tasks else None for t in TASKS}, self.val.schema.era)
        return result


def _layout(params) -> torch.memory_format:
    return torch.channels_last if params.channels_last else torch.contiguous_format
