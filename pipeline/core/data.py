"""From index files to model-ready batches: reading faces, labels, per-sample augmentation.

Training draws, at every step, one batch per task (``pipeline.training.sampling``). A
:class:`StepDataset` item is a whole step: the three task batches, read from the HDF5
shards and augmented. Augmentation is drawn per image from a generator seeded by
(seed, epoch, step), so it differs per image and per step but not with the number of
DataLoader workers or after a resume.

Images: uint8 RGB 112x112 -> float, ImageNet mean/std. Training: resize to 134 and a
random 112 crop plus a random horizontal flip, per image (the authors' code drew one crop
and one flip for the whole run by mistake). Evaluation: resize to 134, centre crop.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from pipeline.core.labels import AU_NAMES, TASKS
from pipeline.training.sampling import TaskBatchSampler
from pipeline.core.store import FaceReader

IMAGE_SIZE = 112
RESIZE = 134  # the authors' Resize(134) before a 112 crop
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255


@dataclass
class FrameIndex:
    """An index file (``train_<task>.parquet`` or ``val.parquet``) as arrays."""

    uid: np.ndarray
    video: np.ndarray
    frame: np.ndarray
    shard: np.ndarray
    row: np.ndarray
    au: np.ndarray  # int8 [n, 8]
    expr: np.ndarray  # int8 [n]
    va: np.ndarray  # float32 [n, 2]
    weight: np.ndarray

    @classmethod
    def read(cls, path: str | Path) -> "FrameIndex":
        """An index file; its shard paths, stored relative to its folder, are resolved. An
        extraction's frame table (``frames.parquet``, no ``weight`` column) reads with weight 1."""
        if not Path(path).exists():
            raise FileNotFoundError(f"{path}: index missing (run the build stage)")
        df = pd.read_parquet(path)
        folder = Path(path).parent
        shard = df["shard"].map({s: os.path.normpath(folder / s) for s in pd.unique(df["shard"])})
        return cls(
            uid=df["uid"].to_numpy(), video=df["video"].to_numpy(), frame=df["frame"].to_numpy(),
            shard=shard.to_numpy(dtype=object), row=df["row"].to_numpy(),
            au=df[list(AU_NAMES)].to_numpy(np.int8), expr=df["expr"].to_numpy(np.int8),
            va=df[["valence", "arousal"]].to_numpy(np.float32),
            weight=df["weight"].to_numpy(np.float64) if "weight" in df else np.ones(len(df)),
        )

    def __len__(self) -> int:
        return len(self.uid)

    def first_videos(self, n: int | None) -> "FrameIndex":
        """The rows of the first ``n`` videos in sorted order (all rows for None)."""
        if n is None:
            return self
        return self.subset(np.isin(self.video, sorted(set(self.video))[:n]))

    def subset(self, positions: np.ndarray) -> "FrameIndex":
        """The rows at ``positions`` (or where a boolean mask is true)."""
        return FrameIndex(**{f: getattr(self, f)[positions] for f in self.__dataclass_fields__})

    def labels(self, positions: np.ndarray) -> dict[str, torch.Tensor]:
        return {"AU": torch.from_numpy(self.au[positions].astype(np.int64)),
                "EXPR": torch.from_numpy(self.expr[positions].astype(np.int64)),
                "VA": torch.from_numpy(self.va[positions])}


def read_faces(reader: FaceReader, index: FrameIndex, positions: np.ndarray) -> np.ndarray:
    """uint8 [k, 112, 112, 3] faces of the given index positions (one chunk read each)."""
    out = np.empty((len(positions), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for i, p in enumerate(positions):
        out[i] = reader.read(index.shard[p], index.row[p])
    return out


def to_tensor(faces: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> normalised float NCHW."""
    x = torch.from_numpy(faces).permute(0, 3, 1, 2).float()
    return (x - MEAN) / STD


def draw_augmentation(generator: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop offsets [n, 2] and flip decisions [n] for ``n`` images."""
    offsets = torch.randint(0, RESIZE - IMAGE_SIZE + 1, (n, 2), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    return offsets, flips


def resize(x: torch.Tensor) -> torch.Tensor:
    """NCHW images at 134 x 134, the size every 112 view is cut from."""
    return F.interpolate(x, size=(RESIZE, RESIZE), mode="bilinear", align_corners=False, antialias=False)


def crop_views(big: torch.Tensor, offsets, flips, source=None) -> torch.Tensor:
    """112 crops of resized images: crop i is image ``source[i]`` (default i) at offsets
    ``(dy, dx) = offsets[i]``, mirrored where ``flips[i]``."""
    n = len(flips)
    out = torch.empty(n, 3, IMAGE_SIZE, IMAGE_SIZE)
    for i in range(n):
        oy, ox = int(offsets[i][0]), int(offsets[i][1])
        crop = big[i if source is None else int(source[i]), :, oy:oy + IMAGE_SIZE, ox:ox + IMAGE_SIZE]
        out[i] = crop.flip(-1) if flips[i] else crop
    return out


def augment(x: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """A 112 crop of the 134 resize and a flip per image, as drawn by ``draw_augmentation``."""
    return crop_views(resize(x), offsets, flips)


def centre_view(x: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """The evaluation view: 134 resize, centre 112 crop (optionally mirrored)."""
    o = (RESIZE - IMAGE_SIZE) // 2
    crop = resize(x)[:, :, o:o + IMAGE_SIZE, o:o + IMAGE_SIZE]
    return crop.flip(-1) if flip else crop


class StepDataset(torch.utils.data.Dataset):
    """Item ``k`` = step ``start_step + k`` of one epoch: ``{task: (images, labels, positions)}``.

    With ``targets`` (a student's ``softlabels.Targets``) each image's view may come from
    the soft-label cache, and its labels carry the teacher's logits on that very view
    under ``"teacher"``.
    """

    def __init__(self, indexes: dict[str, FrameIndex], sampler: TaskBatchSampler, epoch: int,
                 start_step: int, seed: int, augment_images: bool = True, targets=None):
        self.indexes, self.seed, self.epoch, self.augment = indexes, seed, epoch, augment_images
        self.targets = targets
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


def eval_batches(index: FrameIndex, batch: int, flip: bool = False):
    """Evaluation batches over a whole index in order: (images, positions)."""
    reader = FaceReader()
    try:
        for start in range(0, len(index), batch):
            positions = np.arange(start, min(start + batch, len(index)))
            yield centre_view(to_tensor(read_faces(reader, index, positions)), flip), positions
    finally:
        reader.close()
