"""The soft-label cache: the teacher's logits on fixed views of every training frame,
computed once and read by the students without ever loading the teacher (docs/method.md,
"Soft labels"; docs/architecture.md, "Soft labels" for the file layout).

One HDF5 file, frames sorted by uid, every dataset stored contiguously so that students
read it through memory maps (memory does not grow with the data set):

- ``uid`` [M] (UTF-8), ``logits`` float16 [M, K, 55] (8 AU, 7 EXPR, 40 VA logits),
  ``offsets`` uint8 [M, K, 2] (crop dy, dx in the 134 resize) and ``flips`` uint8 [M, K];
- attributes: ``format_version``, ``sha256`` (each dataset's, checked when the file is
  opened, with the finiteness of every logit), ``mode`` (views or centre), ``views`` (K), the
  teacher checkpoint's ``teacher_sha256``, ``teacher_backbone`` and ``va_centres``, and
  ``index_sha256`` (JSON: task -> SHA-256 of the ``train_<task>.parquet`` it covers).

Under ``torchrun`` each process computes every W-th batch and the first one writes the
file: the batches are those of a one-process dump, so the bytes are the same.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from pipeline.core.images import crop_views, resize, to_tensor

from pipeline.core.index import FrameIndex
from pipeline.core.errors import CheckpointError, DataError
from pipeline.core.h5file import new_h5
from pipeline.core.fileio import hold_lock, names_file, release_lock, temp_path
from pipeline.core.hashing import file_sha256
from pipeline.core.labels import TASKS, n_logits
from pipeline.core.shards import FaceReader, MappedDatasets, read_stage_h5, seal_h5
from pipeline.training.models import attr_schema, model_schema
from pipeline.training.views import frame_views

log = logging.getLogger("mtaffect.softlabels")
FLOAT16_MAX = float(np.finfo(np.float16).max)

FORMAT_VERSION = 3  # 2: every dataset's SHA-256 (``pipeline.core.shards.seal_h5``); 3: its label schema


def index_paths(index_dir: str | Path) -> dict[str, Path]:
    return {t: Path(index_dir) / f"train_{t}.parquet" for t in TASKS}


def index_hashes(index_dir: str | Path) -> dict[str, str]:
    return {t: file_sha256(p) for t, p in index_paths(index_dir).items()}


@dataclass
class Frames:
    """The distinct frames of the training indexes, sorted by uid: where their faces are."""

    uid: np.ndarray
    shard: np.ndarray
    row: np.ndarray

    @classmethod
    def union(cls, indexes: dict[str, FrameIndex]) -> "Frames":
        uid = np.concatenate([ix.uid for ix in indexes.values()])
        shard = np.concatenate([ix.shard for ix in indexes.values()])
        row = np.concatenate([ix.row for ix in indexes.values()])
        uid, first = np.unique(uid.astype(str), return_index=True)
        return cls(uid, shard[first], row[first])


# --- the dump -------------------------------------------------------------------------


def views_batch(faces: np.ndarray, offsets: np.ndarray, flips: np.ndarray) -> torch.Tensor:
    """The K views of each face: [n * K, 3, 112, 112] normalised, frame-major."""
    n, k = flips.shape
    return crop_views(resize(to_tensor(faces)), offsets.reshape(n * k, 2), flips.reshape(n * k),
                      source=np.repeat(np.arange(n), k))


@torch.no_grad()
def teacher_logits(model: torch.nn.Module, frames: Frames, offsets: np.ndarray, flips: np.ndarray,
                   batch: int, device: torch.device, rank: int = 0, world: int = 1, progress: bool = True):
    """(batch number, float16 logits [b, K, 55]) of the batches this process computes."""
    model.eval()
    reader = FaceReader()
    n, k = flips.shape
    starts = range(0, n, batch)
    bar = tqdm(total=n, desc="soft labels", unit="frame", disable=not progress or rank != 0)
    try:
        for b, start in enumerate(starts):
            stop = min(start + batch, n)
            if b % world == rank:
                faces = np.stack([reader.read(frames.shard[i], frames.row[i]) for i in range(start, stop)])
                x = views_batch(faces, offsets[start:stop], flips[start:stop])
                out = model(x.to(device, memory_format=torch.channels_last))
                logits = torch.cat([out[t] for t in TASKS], dim=1).reshape(stop - start, k, -1)
                yield b, to_float16(logits)
            bar.update((stop - start) * world if b % world == rank else 0)
    finally:
        bar.close()
        reader.close()


def dump(model: torch.nn.Module, index_dir: str | Path, out: str | Path, teacher: str | Path, views: int,
         mode: str, batch: int, device: torch.device, va_centres: str = "centres", progress: bool = True) -> dict:
    """Compute the cache of ``index_dir``'s training frames with ``model`` (the checkpoint
    at ``teacher``, whose VA bin values are ``va_centres``) and write it to ``out``.
    Returns a summary for the report."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    indexes = {t: FrameIndex.read(p) for t, p in index_paths(index_dir).items()}
    for task, index in indexes.items():  # the teacher's heads are the build's labels
        if index.schema != model.schema:
            raise DataError(f"{teacher}: a teacher of label schema {model.schema.describe()}, but "
                            f"{index_paths(index_dir)[task]} holds {index.schema.describe()}: soft labels need the "
                            "teacher trained on this build (rerun `dvc repro train_teacher`, or pass its --teacher)")
    frames = Frames.union(indexes)
    offsets, flips = frame_views(frames.uid, views, mode)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = temp_path(out).with_suffix(f".part{rank}")
    # the part is its own lock: a second run on this out would overwrite it and the cache
    lock = hold_lock(part, f"another soft-labels run is writing {out}: wait for it to end, or choose another --out")
    try:  # the part goes whatever happens: an error, Ctrl-C, a kill (as SIGTERM)
        with names_file(out), open(part, "wb") as f:  # this process's batches, in order
            for _, logits in teacher_logits(model, frames, offsets, flips, batch, device, rank, world, progress):
                f.write(logits.tobytes())
        if world > 1:
            dist.barrier()
        summary = {"frames": len(frames.uid), "views": int(flips.shape[1]), "mode": mode}
        if rank == 0:
            attrs = {"format_version": FORMAT_VERSION, "mode": mode, "views": int(flips.shape[1]),
                     "teacher_sha256": file_sha256(teacher), "teacher_backbone": getattr(model, "backbone_name", ""),
                     "va_centres": va_centres, "label_schema": json.dumps(model_schema(model.schema), sort_keys=True),
                     "index_sha256": json.dumps(index_hashes(index_dir), sort_keys=True)}
            _write(out, frames.uid, offsets, flips, attrs, batch, world, n_logits(model.schema))
            summary.update(teacher_sha256=attrs["teacher_sha256"], index_sha256=json.loads(attrs["index_sha256"]))
        if world > 1:
            dist.barrier()
    finally:
        release_lock(part, lock)
    return summary


def _write(out: Path, uids, offsets, flips, attrs: dict, batch: int, world: int, width: int) -> None:
    """Assemble the processes' parts (batch b is in part b % world) into the cache file
    (``width`` logits per view)."""
    n, k = flips.shape
    row_bytes = k * width * 2
    parts = [open(temp_path(out).with_suffix(f".part{r}"), "rb") for r in range(world)]

    def blocks():
        for b, start in enumerate(range(0, n, batch)):
            stop = min(start + batch, n)
            data = parts[b % world].read((stop - start) * row_bytes)
            yield np.frombuffer(data, np.float16).reshape(stop - start, k, width)

    try:
        write_cache(out, uids, offsets, flips, attrs, blocks(), width)
    finally:
        for f in parts:
            f.close()


def write_cache(out: str | Path, uids, offsets, flips, attrs: dict, blocks, width: int) -> None:
    """Write a cache file: ``uids`` sorted, ``blocks`` the float16 logits [b, K, width] of
    the frames in that order, block after block; written under a temporary name."""
    n, k = flips.shape
    with new_h5(out) as h5:
        h5.create_dataset("uid", data=np.asarray(uids, dtype=object), dtype=h5py.string_dtype("utf-8"),
                          track_times=False)
        logits = h5.create_dataset("logits", shape=(n, k, width), dtype=np.float16, track_times=False)
        start = 0
        for block in blocks:
            logits[start:start + len(block)] = block
            start += len(block)
        h5.create_dataset("offsets", data=offsets, track_times=False)
        h5.create_dataset("flips", data=flips.astype(np.uint8), track_times=False)
        for key in sorted(attrs):
            h5.attrs[key] = attrs[key]
        seal_h5(h5)


def to_float16(logits: torch.Tensor) -> np.ndarray:
    """Logits as stored: float16, saturated beyond its range (which leaves every sigmoid and
    softmax as it was; NaN stays NaN, and the file is refused when opened)."""
    return logits.clamp(-FLOAT16_MAX, FLOAT16_MAX).to(torch.float16).cpu().numpy()


# --- reading ----------------------------------------------------------------------------


class SoftLabels:
    """A cache opened for training: checked, memory-mapped, rows found by uid."""

    def __init__(self, path: str | Path, stage: str = "soft_labels"):
        """``stage``: the stage that writes it (``rnn_soft_labels`` for the temporal caches)."""
        self.path = Path(path)
        with read_stage_h5(self.path, "soft-label cache", FORMAT_VERSION, stage) as (h5, self.attrs):
            temporal = "sequence_length" in self.attrs  # the temporal teacher's caches record theirs
            if temporal != (stage == "rnn_soft_labels"):
                raise CheckpointError(f"{self.path}: the soft labels of the {'temporal' if temporal else 'CNN'} "
                                      f"teacher ({'rnn_' if temporal else ''}soft_labels stage), not of the "
                                      f"{'CNN' if temporal else 'temporal'} one this command learns from")
            self.uid = np.asarray(h5["uid"].asstr()[:], dtype=str)
            self._mapped = MappedDatasets(self.path, h5, ("logits", "offsets", "flips"))
        self.mode, self.views = self.attrs["mode"], int(self.attrs["views"])
        self.index_sha256 = json.loads(self.attrs["index_sha256"])
        self.schema = attr_schema(self.attrs.get("label_schema"), self.path, "soft-label cache")

    def array(self, name: str) -> np.ndarray:
        """A dataset as a read-only memory map."""
        return self._mapped[name]

    def check_index(self, index_dir: str | Path) -> None:
        """Refuse a cache computed from other indexes than the ones in ``index_dir``."""
        ours = index_hashes(index_dir)
        for task in TASKS:
            if self.index_sha256.get(task) != ours[task]:
                raise CheckpointError(
                    f"{self.path}: computed from another train_{task} index (sha256 "
                    f"{self.index_sha256.get(task, 'none')[:12]}...) than {index_paths(index_dir)[task]} "
                    f"(sha256 {ours[task][:12]}...): rerun `dvc repro soft_labels`")

    def targets(self, indexes: dict[str, FrameIndex]) -> "Targets":
        """What a student's batches take from this cache, for these training indexes."""
        return Targets(self, indexes)

    def rows(self, index: FrameIndex) -> np.ndarray:
        """The cache row of every frame of ``index`` (every one must be there)."""
        rows = np.searchsorted(self.uid, index.uid.astype(str))
        found = (rows < len(self.uid)) & (self.uid[np.minimum(rows, len(self.uid) - 1)] == index.uid.astype(str))
        if not found.all():
            raise CheckpointError(f"{self.path}: no soft labels for frame {index.uid[~found][0]} "
                                  f"({int((~found).sum())} frames missing): rerun `dvc repro soft_labels`")
        return rows


class Targets:
    """What a student's batches take from the cache (``pipeline.training.data.StepDataset``).

    In ``views`` mode each image is one of its frame's cached views, drawn uniformly, and
    its target is the teacher's logits on that view. In ``centre`` mode the student
    augments freely and every augmentation's target is the centre view's.
    """

    def __init__(self, cache: SoftLabels, indexes: dict[str, FrameIndex]):
        self.cache = cache
        self.rows = {task: cache.rows(index) for task, index in indexes.items()}

    def draw(self, task: str, positions: np.ndarray, generator: torch.Generator, global_batch: int, share: slice,
             offsets: torch.Tensor, flips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(offsets, flips, teacher logits [b, 55]) of this process's share of a task batch."""
        rows = self.rows[task][positions]
        view = np.zeros(len(rows), np.int64)
        if self.cache.mode == "views":
            # drawn for the whole batch, as the augmentation is: the same whatever the processes
            view = torch.randint(0, self.cache.views, (global_batch,), generator=generator)[share].numpy()
            offsets = torch.from_numpy(self.cache.array("offsets")[rows, view].astype(np.int64))
            flips = torch.from_numpy(self.cache.array("flips")[rows, view].astype(bool))
        teacher = torch.from_numpy(np.asarray(self.cache.array("logits")[rows, view], dtype=np.float32))
        return offsets, flips, teacher
