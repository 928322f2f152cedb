"""One input through ``predict``: frames streamed in blocks, faces found as the
extraction finds them, rows to a table written under a temporary name, the overlay video
and the timeline picture (the rows and the model: :mod:`pipeline.predict.rows`)."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipeline.core.errors import CheckpointError
from pipeline.extraction.align import aligned_crop
from pipeline.extraction.faces import Detection, FaceDetector, box_iou
from pipeline.core.fileio import temp_path
from pipeline.predict.media import VIDEO_BEHIND, Input, OverlayWriter, VideoFrames, image_frames
from pipeline.predict.outputs import OutputFolder
from pipeline.inference.smoothing import CentredStream
from pipeline.predict.rows import (LOST_COLUMN, Ensemble, Found, batched, decide, face_rows, rows_for,
                                   smoothed_columns, table_schema)
from pipeline.predict.temporal import TemporalModel, TemporalStream
from pipeline.core.tables import PARQUET_OPTIONS
from pipeline.extraction.tracking import FaceTracker, TrackIds


@dataclass
class Settings:
    every: int = 1          # every N-th video frame
    all_faces: bool = False  # every face with a track id (default: the main face, one row per frame)
    batch: int = 16         # frames per detection block: the extraction's (the bundle's), never another
    smooth: int = 1         # centred moving average over this many (odd) frames of a video (1: off)
    overlay: bool = False   # write <name>_overlay.mp4
    timeline: bool = True   # write <name>.png for videos
    fmt: str = "csv"        # csv | parquet
    detect_size: int | None = None  # long side the detector sees (None: the bundle's, as the extraction)
    aligned: bool = False   # images are aligned face crops (s-Aff-Wild2's): one face each, no detection


class FaceFinder:
    """The faces of blocks of frames: the extraction's tracker for the main face of a
    video, every face with :class:`TrackIds` (``all_faces``), every face of an image."""

    def __init__(self, detection: dict, settings: Settings, face_size: int = 112):
        self.detector = FaceDetector(min_face_size=detection["min_face"],
                                     detect_size=settings.detect_size or detection["detect_size"],
                                     batch_size=settings.batch)
        self.min_prob, self.settings, self.face_size = detection["min_prob"], settings, face_size
        self.notes: list[str] = []  # images whose faces may be too small for the detection size
        self.reset()

    def reset(self) -> None:
        """A new input: no face known yet."""
        self.tracker = FaceTracker(self.detector, block_size=self.settings.batch, min_prob=self.min_prob)
        self.ids = TrackIds(max_gap=15 * self.settings.every)  # 15 predicted frames

    def video(self, frames) -> list[list[Found]]:
        images = [f.image for f in frames]
        if not self.settings.all_faces:
            return [[Found(0, d)] if d is not None and d.prob >= self.min_prob else []
                    for d in self.tracker.track(images)]
        found = []
        # the main face as the default mode follows it (in crops, where the full frame's
        # detection may miss it when small): every face includes at least that one
        for frame, faces, main in zip(frames, self.detector.detect(images), self.tracker.track(images)):
            dets = [faces.detection(k) for k in np.flatnonzero(faces.probs >= self.min_prob)]
            boxes = np.array([d.box for d in dets]).reshape(-1, 4)
            if main is not None and main.prob >= self.min_prob and not (box_iou(main.box, boxes) >= 0.5).any():
                dets, boxes = [*dets, main], np.vstack([boxes, main.box])
            found.append([Found(t, d) for t, d in zip(self.ids.assign(frame.number, boxes), dets)])
        return found

    def images(self, frames) -> list[list[Found]]:
        """Every face of each image, numbered from left to right; with ``aligned``, the
        image itself (no landmarks: it is the face), unless it is no aligned crop."""
        if self.settings.aligned:
            found = []
            for frame in frames:
                if frame.image is None:  # unreadable (counted): a row without a face
                    found.append([])
                    continue
                h, w = frame.image.shape[:2]
                why = aligned_crop(frame.image, self.face_size)[1]
                if why:
                    self.notes.append(f"{frame.file}: {why}: no face")
                found.append([] if why else [Found(0, Detection(np.array([0.0, 0.0, w, h]), float("nan"), None))])
            return found
        found = []
        for frame, faces in zip(frames, self.detector.detect([f.image for f in frames])):
            keep = sorted(np.flatnonzero(faces.probs >= self.min_prob), key=lambda k: faces.boxes[k][0])
            found.append([Found(j, faces.detection(k)) for j, k in enumerate(keep)])
            h, w = frame.image.shape[:2]
            size = self.detector.detect_size
            if not keep and max(h, w) > 2 * size and min(h, w) >= 24:  # a narrower strip holds no face at all
                smallest = 12 * max(h, w) / size  # MTCNN's 12-pixel window, at the detection scale
                self.notes.append(f"{frame.file}: no face found; this {w}x{h} image is searched at {size} pixels, "
                                  f"where faces under {smallest:.0f} pixels cannot be found "
                                  f"(--detect-size {min(4096, 4 * size)} searches for smaller ones)")
        return found


class TableSink:
    """Rows streamed to CSV or Parquet under a temporary name; renamed on :meth:`close`."""

    def __init__(self, path: Path, fmt: str, schema: pa.Schema):
        self.path, self.tmp, self.rows, self.schema = path, temp_path(path), 0, schema
        options = {k: v for k, v in PARQUET_OPTIONS.items() if k != "row_group_size"}  # a block per write
        with self._naming_the_file():
            self.writer = (pq.ParquetWriter(str(self.tmp), schema, **options) if fmt == "parquet"
                           else pacsv.CSVWriter(str(self.tmp), schema))

    @contextmanager
    def _naming_the_file(self):
        try:
            yield
        except OSError as e:  # Arrow's errors name no file
            raise OSError(f"{self.path}: cannot write ({str(e).splitlines()[0][:160]})") from None

    def add(self, rows: list[dict]) -> None:
        if rows:
            with self._naming_the_file():
                self.writer.write_table(pa.Table.from_pylist(rows, schema=self.schema))
            self.rows += len(rows)

    def close(self, frames_not_decoded: int = 0) -> None:
        """Rename the table into place; with ``frames_not_decoded``, each row first gets that
        count in a column of its own, so the table says wherever it goes that its frame
        numbers may run early (export-abaw refuses it)."""
        with self._naming_the_file():
            self.writer.close()
            if frames_not_decoded:
                self._add_column(LOST_COLUMN, frames_not_decoded)
            self.tmp.replace(self.path)

    def _add_column(self, name: str, value: int) -> None:
        """The temporary table again with a constant column, streamed batch by batch."""
        marked = self.tmp.with_name(self.tmp.name + ".marked")
        parquet = self.path.suffix == ".parquet"
        reader = pq.ParquetFile(self.tmp).iter_batches() if parquet else pacsv.open_csv(
            self.tmp, convert_options=pacsv.ConvertOptions(column_types=self.schema, strings_can_be_null=True))
        schema = self.schema.append(pa.field(name, pa.int64()))
        options = {k: v for k, v in PARQUET_OPTIONS.items() if k != "row_group_size"}
        writer = pq.ParquetWriter(str(marked), schema, **options) if parquet else pacsv.CSVWriter(str(marked), schema)
        try:
            for batch in reader:
                writer.write_table(pa.Table.from_batches([batch]).append_column(
                    name, pa.array([value] * batch.num_rows, pa.int64())).cast(schema))
        finally:
            writer.close()
        marked.replace(self.tmp)

    def abort(self) -> None:
        try:
            self.writer.close()
        except OSError:
            pass
        finally:
            self.tmp.unlink(missing_ok=True)


def output_paths(inp: Input, out_dir: Path, settings: Settings) -> dict[str, Path]:
    """The files predicting on ``inp`` writes: the table, and for a video the timeline
    picture and the overlay when asked for."""
    paths = {"table": out_dir / f"{inp.name}.{settings.fmt}"}
    if inp.kind == "video" and settings.timeline:
        paths["timeline"] = out_dir / f"{inp.name}.png"
    if inp.kind == "video" and settings.overlay:
        paths["overlay"] = out_dir / f"{inp.name}_overlay.mp4"
    return paths


@dataclass
class Summary:
    """What happened to one input: rows written, frames seen and with a face, problems."""

    name: str
    table: Path
    rows: int = 0
    frames: int = 0
    frames_with_face: int = 0
    tracks: set = field(default_factory=set)
    warnings: list = field(default_factory=list)
    skipped: int = 0  # images that could not be read (no row)
    pictures: list = field(default_factory=list)


def predict_input(inp: Input, model: Ensemble | TemporalModel, finder: FaceFinder, out: OutputFolder,
                  settings: Settings, progress=None) -> Summary:
    """Predict on one input into ``out`` (its outputs claimed there already) with the frame
    ensemble or, for videos, a temporal one. Each output is complete or absent: written
    under a temporary name, checked, renamed, recorded as ours; an error names the file."""
    finder.reset()
    paths = output_paths(inp, out.folder, settings)
    table = paths["table"]
    summary, skipped = Summary(inp.name, table), []
    video = VideoFrames(inp.path, settings.every) if inp.kind == "video" else None
    frames = video if video is not None else image_frames(inp, skipped, keep_unreadable=settings.aligned)
    sink = TableSink(table, settings.fmt, table_schema(model.schema))
    overlay = OverlayWriter(paths["overlay"], video.fps / settings.every) if "overlay" in paths else None
    temporal = isinstance(model, TemporalModel)
    if temporal:
        stream = TemporalStream(model)
    else:
        window = settings.smooth if video is not None else 1  # images: no time
        stream = CentredStream(window, settings.every, smoothed_columns(model.schema),
                               lambda row: decide(row, model.thresholds, model.schema))
    try:
        def emit(ready):
            for frame, rows in ready:
                sink.add(rows)
                summary.frames += 1
                summary.frames_with_face += rows[0]["face"]
                summary.tracks.update(r["track"] for r in rows if r["face"])
                if overlay is not None:
                    overlay.add(frame, rows)

        for block in batched(frames, settings.batch):
            faces = finder.video(block) if video is not None else finder.images(block)
            if temporal:
                rows, aligned = face_rows(block, faces, model.size, model.scale)
                features = iter(model.features(aligned) if len(aligned) else ())
                for frame, frame_rows in zip(block, rows):
                    emit(stream.push(frame, frame_rows, [next(features) for r in frame_rows if r["face"]]))
            else:
                for frame, rows in zip(block, rows_for(block, faces, model)):
                    emit(stream.push(frame, frame.number, rows))
            if progress is not None:
                progress.update(len(block))
        emit(stream.flush())
        if summary.frames == 0:
            why = skipped[0][1] if inp.kind == "image" and skipped else ""
            if why.startswith(VIDEO_BEHIND):  # decoded as a video it would be: not "no frame"
                raise ValueError(f"{inp.path}: {why}")
            raise ValueError(f"{inp.path}: no frame or image could be decoded" + (f" ({why})" if why else ""))
        lost = {"frames_not_decoded": video.lost} if video is not None and video.lost else {}
        sink.close(**lost)
        out.record(table, input=inp.kind, **lost)  # export --mtl tells a folder's table from an image's
        if overlay is not None:
            overlay.close()
            out.record(overlay.path)
            summary.pictures.append(overlay.path)
    except BaseException as e:
        sink.abort()
        if overlay is not None:
            overlay.abort()
        if isinstance(e, CheckpointError):
            raise CheckpointError(f"{inp.path}: {e}") from None
        raise
    summary.rows, summary.skipped = sink.rows, len(skipped)
    summary.warnings += [f"{file}: {why}; skipped" for file, why in skipped] + finder.notes
    finder.notes = []
    if lost:
        summary.warnings.append(f"{inp.path}: {video.lost} of the {video.listed} frames the file lists were not "
                                f"decoded (truncated or damaged): rows of the {video.decoded} decoded, whose frame "
                                "numbers and times run early after a damaged stretch; export-abaw refuses this table")
    if summary.frames_with_face == 0:
        summary.warnings.append(f"{inp.path}: no face found in any frame (every row has face = false)")
    if "timeline" in paths:
        from pipeline.predict.timeline import draw_timeline

        summary.pictures.append(draw_timeline(table, paths["timeline"], inp.name))
        out.record(paths["timeline"])
    return summary
