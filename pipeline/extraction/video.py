"""A labelled or unlabelled video's faces: decoded once, in order, each frame on the decoder's
own time stamp, the file hashed as the decoder reads it, and its labels placed on their
frames or on none (docs/architecture.md, "Extraction")."""
from __future__ import annotations

import os
from dataclasses import asdict

import cv2
import numpy as np

from pipeline.core.hashing import HashingReader
from pipeline.core.labels import AU_UNKNOWN, EXPR_UNKNOWN
from pipeline.extraction import align
from pipeline.extraction import tracking as T
from pipeline.extraction.params import ExtractParams
from pipeline.extraction.sources.base import Job


def quiet_opencv() -> None:
    """Silence OpenCV's and FFmpeg's own log lines: our one skip line names the file and says
    why, theirs before it (``[ WARN:0@4.4] global cap.cpp:338 open VIDEOIO(FFMPEG): ...``) only
    confuse. FFmpeg's level is read when a capture opens (-8: AV_LOG_QUIET); spawned workers
    import this module, so they are silenced too."""
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


quiet_opencv()


def detect_video(job: Job, params: ExtractParams, detector, res, emit) -> None:
    """Decode once, in order, hashing the file as the decoder reads it; detect (tracking
    the face) only on the wanted frames, each timed by the decoder's own time stamp."""
    try:
        reader = HashingReader(job.video_path)
    except OSError as e:
        res.rejected.append((job.video_path, f"cannot open video ({e.strerror})", None, len(job)))
        res.labels_without_frame += len(job)
        return
    try:
        if reader.path.stat().st_size == 0:  # "cannot open" would send the user looking for a codec
            res.rejected.append((job.video_path, "empty file (0 bytes)", None, len(job)))
            res.labels_without_frame += len(job)
            return
        cap = cv2.VideoCapture(reader, cv2.CAP_FFMPEG, [])
        try:
            if not cap.isOpened():
                res.rejected.append((job.video_path, "cannot open video", None, len(job)))
                res.labels_without_frame += len(job)
                return
            _decode(cap, job, params, detector, res, emit)
        finally:
            cap.release()
    finally:
        res.hashes[job.video_path] = reader.sha256()


def _decode(cap, job: Job, params: ExtractParams, detector, res, emit) -> None:
    tracker = (T.FaceTracker(detector, block_size=params.batch, min_prob=params.min_prob, side=job.side)
               if params.track else None)
    wanted = job.frames
    row, frame_no, last_ms = 0, 0, -np.inf
    block_rows, block_frames = [], []
    listed = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    disordered = None  # the first frame whose time stamp is not after the one before

    def flush():
        if not block_rows:
            return
        dets = tracker.track(block_frames) if tracker else [
            f.pick(None, params.min_prob, job.side) for f in detector.detect(block_frames)]
        emit_detections(block_rows, block_frames, dets, params, res, emit)
        block_rows.clear()
        block_frames.clear()

    def timed() -> None:
        nonlocal last_ms, disordered
        ms = cap.get(cv2.CAP_PROP_POS_MSEC)
        if ms <= last_ms and disordered is None:
            disordered = frame_no
        last_ms = ms

    while row < len(wanted):
        if wanted[row] != frame_no:  # not wanted: skip without decoding the picture
            if not cap.grab():
                break
            timed()
            frame_no += 1
            continue
        ok, bgr = cap.read()
        if not ok:
            break
        timed()
        res.frames_read += 1
        res.timestamp[row] = last_ms / 1000
        block_rows.append(row)
        block_frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        if len(block_rows) == params.batch:
            flush()
        row += 1
        frame_no += 1
    flush()
    decoded = frame_no
    while listed > 0 and cap.grab():  # count the frames after the last label too
        timed()
        decoded += 1
    if tracker is not None:
        res.track = asdict(tracker.stats)
    labelled = (job.au != AU_UNKNOWN).any() or (job.expr != EXPR_UNKNOWN).any() or not np.isnan(job.va).all()
    if labelled and (disordered is not None or (listed > 0 and decoded != listed)):
        # The decoder's frame order is the labels' only when every frame the file lists
        # came out, in time order: a damaged stretch makes the decoder skip frames without
        # an error, and from there on the labels cannot be placed exactly. Nothing of the
        # video is kept (never a label on a neighbour's face). A variable frame rate is no
        # such sign: frames are counted, never placed by time x average rate.
        why = (f"frame {disordered} is not later than the frame before it" if disordered is not None else
               f"decoded {decoded} of the {listed} frames the file lists")
        res.keep[:] = False
        res.frames_without_face = 0
        res.rejected.append((job.video_path, f"{why}: frames are missing or damaged, the labels cannot be placed "
                             "exactly; video skipped", None, len(job)))
        return
    if not labelled and listed > 0 and decoded < listed:
        res.notes.append(f"{job.video_path}: decoded {decoded} of the {listed} frames the file lists "
                         "(truncated or damaged?): faces of those only")
    if row < len(wanted):
        # The labels go on past the video's end (or the file is truncated): counted, never
        # shifted onto other frames.
        missing = len(wanted) - row
        res.labels_without_frame += missing
        first, last = int(wanted[row]) + 1, int(wanted[-1]) + 1  # counted from 1, as label files do
        named = f"frame {first}" if missing == 1 else f"frames {first}..{last}"
        where = f" in {job.labels_from}" if job.labels_from else ""
        res.rejected.append((job.video_path, f"labels past the video's end: it has {frame_no} frames; {missing} "
                             f"label(s) name {named}{where} (its own frames are kept)", None, missing))


def emit_detections(rows, frames, detections, params: ExtractParams, res, emit) -> None:
    """The aligned face of each frame whose detection passes ``params.min_prob`` to ``emit``;
    the others counted in ``res`` (the worker's ``JobResult``) as frames without a face."""
    for row, frame, det in zip(rows, frames, detections):
        if det is None or det.prob < params.min_prob:
            res.frames_without_face += 1
            continue
        emit(row, align.align_face(frame, det.landmarks, params.face_size, params.template_scale), det.landmarks, det.prob)
