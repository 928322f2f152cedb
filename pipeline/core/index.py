"""The build's indexes (and extraction's frame tables) as arrays, and their faces read in
evaluation batches."""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from pipeline.core.errors import DataError
from pipeline.core.images import IMAGE_SIZE, centre_view, to_tensor
from pipeline.core.schema import ABAW2020, LabelSchema
from pipeline.core.shards import FaceReader

#: Where an index records its label schema and which of the build's indexes it is
#: (``FrameIndex.read`` reads them back).
SCHEMA_KEY, ROLE_KEY = b"label_schema", b"index"


def index_columns(schema: LabelSchema) -> list[str]:
    return ["uid", "source", "video", "subject", "frame", "shard", "row", *label_columns(schema)]


def index_schema(schema: LabelSchema, role: str | None = None) -> pa.Schema:
    """An index's columns (one per AU of ``schema``), with the schema (and the index's name,
    ``role``: ``train_AU``, ..., ``val``) recorded in its metadata."""
    return pa.schema(
        [("uid", pa.string()), ("source", pa.string()), ("video", pa.string()), ("subject", pa.string()),
         ("frame", pa.int32()), ("shard", pa.string()), ("row", pa.int32()),
         *[(au, pa.int8()) for au in schema.aus], ("expr", pa.int8()), ("valence", pa.float32()),
         ("arousal", pa.float32()), ("weight", pa.float64())],
        metadata={SCHEMA_KEY: json.dumps(schema.as_dict(), sort_keys=True).encode(),
                  **({ROLE_KEY: role.encode()} if role else {})})


def label_columns(schema: LabelSchema) -> list[str]:
    """The label columns of an index: the schema's AUs, then expression and VA."""
    return [*schema.aus, "expr", "valence", "arousal"]


def built_schema(path: str | Path) -> LabelSchema | None:
    """The label schema an index records (None: a frame table, or an index made before the record)."""
    return _recorded_schema(pq.read_schema(path).metadata, path)


def _recorded_schema(metadata: dict | None, path: str | Path) -> LabelSchema | None:
    recorded = (metadata or {}).get(SCHEMA_KEY)
    return None if recorded is None else LabelSchema.from_dict(json.loads(recorded), str(path))


def check_built_for(index_dir: str | Path, schema: LabelSchema) -> None:
    """The indexes in ``index_dir`` must be of ``schema``, the one params.yaml's build asks
    for: a stage run by hand after the schema changed would otherwise learn or score the
    old labels without a word. (An unreadable index is left to the stage's own read.)"""
    path = Path(index_dir) / "val.parquet"
    try:
        recorded = built_schema(path) or ABAW2020
    except DataError:
        raise
    except (OSError, ValueError):
        return
    schema.require_same(recorded, f"{index_dir}: the build's index")


@dataclass
class FrameIndex:
    """An index file (``train_<task>.parquet`` or ``val.parquet``) as arrays."""

    uid: np.ndarray
    video: np.ndarray
    frame: np.ndarray
    shard: np.ndarray
    row: np.ndarray
    au: np.ndarray  # int8 [n, AUs of the schema]
    expr: np.ndarray  # int8 [n]
    va: np.ndarray  # float32 [n, 2]
    weight: np.ndarray
    schema: LabelSchema = field(default=ABAW2020, compare=False)  # the labels' schema, as the build recorded it

    @classmethod
    def read(cls, path: str | Path, schema: LabelSchema | None = None) -> "FrameIndex":
        """An index file; its shard paths, stored relative to its folder, are resolved; its
        labels are of the schema it records. An extraction's frame table (``frames.parquet``,
        no ``weight`` column, no schema) reads with weight 1, its labels projected onto
        ``schema`` (default abaw2020)."""
        if not Path(path).exists():
            raise FileNotFoundError(f"{path}: index missing (run the build stage)")
        try:
            table = pq.read_table(path)  # one read: the labels and the records in its footer
            df = table.to_pandas()
            df[["uid", "video", "frame", "shard", "row", "expr", "valence", "arousal"]]
            recorded = _recorded_schema(table.schema.metadata, path)
            schema = recorded or schema
            role = (table.schema.metadata or {}).get(ROLE_KEY, b"").decode()
        except (OSError, ValueError, KeyError) as e:  # Arrow's errors are ValueErrors
            raise DataError(f"{path}: not a readable index or frame table ({str(e).splitlines()[0][:120]}): rerun "
                            "the stage that wrote it") from None
        if role and role != Path(path).stem:  # train on validation frames, or AU on EXPR's, without a word
            raise DataError(f"{path}: holds the build's {role} index, not {Path(path).stem} (a file copied over "
                            "another?): rerun the build")
        columns = [c for c in df.columns if re.fullmatch(r"AU\d+", c)]
        if recorded is not None and columns != list(schema.aus):  # its labels would be read as other AUs
            raise DataError(f"{path}: records label schema {schema.name} (AUs {', '.join(schema.aus)}) but holds "
                            f"the AU columns {', '.join(columns) or 'none'}: rerun the build")
        if recorded is None and "weight" in df and columns != list(ABAW2020.aus):  # an index, not a frame table
            raise DataError(f"{path}: an index that records no label schema, with AU columns "
                            f"{', '.join(columns) or 'none'} (not abaw2020's, the only schema before the record): "
                            "rerun the build")
        schema = schema or ABAW2020
        folder = Path(path).parent
        shard = df["shard"].map({s: os.path.normpath(folder / s) for s in pd.unique(df["shard"])})
        return cls(
            uid=df["uid"].to_numpy(), video=df["video"].to_numpy(), frame=df["frame"].to_numpy(),
            shard=shard.to_numpy(dtype=object), row=df["row"].to_numpy(),
            au=schema.project_aus({a: df[a].to_numpy() for a in schema.aus if a in df}, len(df)),
            expr=schema.project_expressions(df["expr"].to_numpy(np.int8)),
            va=df[["valence", "arousal"]].to_numpy(np.float32),
            weight=df["weight"].to_numpy(np.float64) if "weight" in df else np.ones(len(df)), schema=schema,
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
        return FrameIndex(**{f: getattr(self, f)[positions] for f in self.__dataclass_fields__ if f != "schema"},
                          schema=self.schema)

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


def eval_batches(index: FrameIndex, batch: int, flip: bool = False):
    """Evaluation batches over a whole index in order: (images, positions)."""
    reader = FaceReader()
    try:
        for start in range(0, len(index), batch):
            positions = np.arange(start, min(start + batch, len(index)))
            yield centre_view(to_tensor(read_faces(reader, index, positions)), flip), positions
    finally:
        reader.close()


def runs(videos: np.ndarray, frames: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of every run of consecutive frames of one video, in table order.

    The table must hold each video's frames together and in increasing order: anything
    else is refused, naming the video and the frame where the order breaks.
    """
    videos, frames = np.asarray(videos), np.asarray(frames, dtype=np.int64)
    n, out, start, done = len(frames), [], 0, set()
    for i in range(1, n + 1):
        if i < n and videos[i] == videos[i - 1]:
            if frames[i] <= frames[i - 1]:
                raise DataError(f"video {videos[i]}: frame {frames[i]} comes after frame {frames[i - 1]} in the "
                                "frame table: frames must be in increasing order")
            if frames[i] == frames[i - 1] + 1:
                continue  # the run goes on
        else:
            done.add(videos[i - 1])
            if i < n and videos[i] in done:
                raise DataError(f"video {videos[i]}: its frames are not together in the frame table")
        out.append((start, i))
        start = i
    return out
