"""Extraction: from a dataset as it ships to aligned 112x112 faces and one frame table.

A reader (``pipeline.extraction.sources``) lists jobs (one per video, clip or image); worker
processes (``pipeline.extraction.worker``) find and align the faces of each job and stream
them to a temporary raw file; the parent copies them, in job order, into HDF5 shards and
writes the frame table. So the output depends only on the input, never on the number of
workers or on timing, and memory stays flat however long a video is.
"""
from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import shutil
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.extraction import align
from pipeline.extraction.params import ExtractParams
from pipeline.extraction.dataset_version import DatasetRead
from pipeline.core.errors import DataError
from pipeline.extraction.worker import JobResult, Worker
from pipeline.core.fileio import check_output_folder, output_lock, replacing_folder, write_json
from pipeline.core.labels import AU_UNKNOWN
from pipeline.extraction.sources import affectnet, affwild2, afewva, disfa, expw, saffwild2, unlabelled
from pipeline.extraction.sources.base import Job, Problems, SourceRead
from pipeline.core.tables import LANDMARK_COLUMNS, FrameTableWriter, uid
from pipeline.core.shards import ShardWriter

log = logging.getLogger("mtaffect.extract")

FORMAT_VERSION = 1


def read_source(kind: str, root: str | Path, problems: Problems, params: ExtractParams,
                annotations: str | None = None) -> SourceRead:
    """The jobs of one dataset (``kind``: a source kind of the params, or input)."""
    if kind != "input" and Path(root).is_file():  # else: "<root>/annotations: missing", which misleads
        raise FileNotFoundError(f"{root}: a file, not the folder of a {kind} dataset (its root)")
    if kind != "input" and not Path(root).exists():  # e.g. a clone that pulled only the synthetic data's versions
        raise FileNotFoundError(f"{root}: no such dataset folder (the synthetic data sets: `dvc repro --force synth` "
                                "writes them again, the bytes their version files name)")
    if kind == "affwild2":
        return affwild2.read(root, problems, use_cropped_aligned=params.use_cropped_aligned, annotations=annotations)
    readers = {"saffwild2": saffwild2.read, "disfa": disfa.read, "expw": expw.read, "afewva": afewva.read,
               "affectnet": affectnet.read, "input": unlabelled.read}
    if kind not in readers:
        raise ValueError(f"unknown source kind {kind!r}: use affwild2, {', '.join(readers)}")
    return readers[kind](root, problems)


# --- the whole source, in the parent --------------------------------------------------


def extract(kind: str, root: str | Path, out: str | Path, params: ExtractParams, name: str | None = None,
            progress: bool = True, check: Callable[[str], None] | None = None, annotations: str | None = None) -> dict:
    """Extract one source into ``out`` (shards, ``frames.parquet``, ``extract.json``).

    Returns the report written to ``extract.json``. ``name`` is the source name used in
    uids (default: ``kind``). ``out`` is refused before any work when it overlaps the
    dataset or holds anything but an earlier extraction; it is written under a temporary
    name and replaces the earlier one only once complete, so a failure leaves it as it was.
    The dataset is hashed as it is read (``dataset_version.DatasetRead``); the report holds
    that digest (``source_sha256``), which ``check`` gets before anything is written, and
    may refuse by raising. ``annotations``: Aff-Wild2's annotations folder, when not
    ``<root>/annotations``. A second run into the same ``out`` is refused while one runs
    (``fileio.output_lock``).
    """
    name, out = name or kind, Path(out)
    # checked before the lock file goes beside the folder, so it never lands in a dataset
    check_output_folder(out, "extract.json", inputs=[root], own=("frames.parquet", "shard-*.h5"))
    # held over the whole run, so a second one is refused before it reads the dataset
    with output_lock(out, f"{out}: another run is writing {out}: wait for it to finish, or choose another --out"):
        return _extract_locked(kind, root, out, params, name, progress, check, annotations)


def _extract_locked(kind, root, out: Path, params: ExtractParams, name: str, progress, check, annotations) -> dict:
    check_output_folder(out, "extract.json", inputs=[root], own=("frames.parquet", "shard-*.h5"))  # again, locked
    problems = Problems(on_error=params.on_error)
    started = time.perf_counter()
    read = DatasetRead.start(root)
    source = read_source(kind, root, problems, params, annotations)
    for note in source.notes:
        log.warning("%s: %s", name, note)
    total = sum(len(j) for j in source.jobs)
    if total == 0:
        raise DataError(f"{root}: empty source: no labelled frame to extract")
    check_free_space(out, total * params.face_size ** 2 * 3)
    with replacing_folder(out, locked=True) as work:
        report = _extract_into(work, kind, name, root, source, params, problems, progress, read, check)
    seconds = time.perf_counter() - started
    log.info("%s: %d faces from %d labelled frames in %.1f s (%.1f faces/s)", name, report["faces_written"],
             total, seconds, report["faces_written"] / max(seconds, 1e-9))
    return report


def check_free_space(out: Path, needed: int) -> None:
    """Refuse, before any work, a disk that cannot hold the faces (uncompressed in their
    shards; the worker's copy of a video's faces is small beside them)."""
    folder = next(p for p in (out, *out.absolute().parents) if p.exists())
    free = shutil.disk_usage(folder).free
    if free < needed * 1.05:
        raise DataError(f"{out}: {free / 1e6:,.0f} MB free on its disk, the faces need about {needed / 1e6:,.0f} MB: "
                        "free some space, or choose another --out")


def _extract_into(out: Path, kind: str, name: str, root, source: SourceRead, params: ExtractParams,
                  problems: Problems, progress: bool, read: DatasetRead, check) -> dict:
    """The jobs of ``source`` through the workers, into the (new, empty) folder ``out``."""
    jobs = source.jobs
    total = sum(len(j) for j in jobs)
    tmpdir = tempfile.mkdtemp(prefix=".extract-", dir=out)
    attrs = {
        "size": params.face_size, "template": json.dumps(align.template_points(params.face_size, params.template_scale).tolist()),
        "template_scale": params.template_scale, "detector": "facenet-pytorch MTCNN",
        "format_version": FORMAT_VERSION, "source": name,
    }
    shards = ShardWriter(out, shard_faces=params.shard_faces, size=params.face_size, attrs=attrs)
    # every AU some job of the source labels (a job lacking one has it unknown)
    table = FrameTableWriter(out / "frames.parquet", aus=sorted({a for j in jobs for a in j.aus}))
    counts = Counter()
    track = Counter()
    face_bytes = params.face_size * params.face_size * 3
    try:
        ctx = mp.get_context("spawn")  # fork after torch/h5py is unsafe; spawn is the same everywhere
        # The workers inherit an ignored Ctrl-C: it reaches this process alone, which stops them
        # (no traceback of theirs on the terminal), and the output folder is not replaced.
        main = threading.current_thread() is threading.main_thread()  # signals are the main thread's
        interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        try:
            pool = ctx.Pool(max(1, params.workers), initializer=Worker.init, initargs=(params, tmpdir))
        finally:
            if main:
                signal.signal(signal.SIGINT, interrupt)
        with pool, \
                tqdm(total=total, desc=f"extract {name}", unit="frame", disable=not progress) as bar:
            for res in pool.imap(Worker.run, list(enumerate(jobs))):
                job = jobs[res.index]
                for where, reason, line, n in res.rejected:
                    problems.reject(where, reason, line=line, n=n)
                kept = np.flatnonzero(res.keep)
                where = _copy_faces(res.faces_path, len(kept), face_bytes, params.face_size, shards)
                table.add(_rows(name, job, res, kept, where, table.schema.names))
                counts.update(frames_read=res.frames_read, faces_written=len(kept),
                              frames_without_face=res.frames_without_face,
                              labels_without_frame=res.labels_without_frame)
                track.update(res.track)
                read.add(res.hashes)
                for note in res.notes:
                    log.warning(note)
                    source.notes.append(note)
                bar.update(len(job))
        if counts["faces_written"] == 0:
            raise DataError(f"{root}: no face could be extracted from {total} labelled frames "
                            f"({problems.summary() or 'no face found'})")
        source_sha256 = read.finish(progress)
        if check is not None:
            try:
                check(source_sha256)
            except DataError as e:
                if not read.unreadable:
                    raise
                raise DataError(f"{e}; {len(read.unreadable)} file(s) could not be read, e.g. "
                                f"{read.unreadable[0]}") from None
    except BaseException:
        shards.abort()  # nothing half-written survives (the folder goes too)
        table.abort()
        raise
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    written = shards.close()
    table.close()
    report = {
        "source": name,
        "kind": kind,
        "root": str(root),
        "jobs": len(jobs),
        "labelled_frames": total,
        "frames_read": counts["frames_read"],
        "faces_written": counts["faces_written"],
        "frames_without_face": counts["frames_without_face"],
        "labels_without_frame": source.labels_without_frame + counts["labels_without_frame"],
        "frames_without_label": source.frames_without_label,
        "invalid_label_rows": source.invalid_label_rows,
        "rows_rejected": problems.as_dict(),
        "tracking": dict(sorted(track.items())),
        "shards": [p.name for p in written],
        "notes": source.notes,
        "source_sha256": source_sha256,
    }
    write_json(out / "extract.json", report)
    return report


def _copy_faces(path: str, count: int, face_bytes: int, size: int, shards: ShardWriter) -> list:
    """Move a job's raw faces into the shards, 256 at a time (memory does not grow with
    the video: a memory map would keep every page it touched resident)."""
    where = []
    with open(path, "rb") as f:
        for start in range(0, count, 256):
            k = min(256, count - start)
            block = np.frombuffer(f.read(k * face_bytes), dtype=np.uint8).reshape(k, size, size, 3)
            where.extend(shards.add(block))
    os.unlink(path)
    return where


def _rows(name: str, job: Job, res: JobResult, kept: np.ndarray, where: list, columns: list[str]) -> dict:
    """Frame-table columns for the kept rows of one job (the AU columns among ``columns``)."""
    frames = job.frames[kept]
    cols = {
        "uid": [uid(name, job.video, f) for f in frames],
        "source": [name] * len(kept),
        "video": [job.video] * len(kept),
        "subject": [job.subject] * len(kept),
        "frame": frames,
        "timestamp": res.timestamp[kept],
        "split": [job.split] * len(kept),
        "expr": job.expr[kept],
        "valence": job.va[kept, 0],
        "arousal": job.va[kept, 1],
        "shard": [w[0] for w in where],
        "row": np.array([w[1] for w in where], dtype=np.int32),
        "det_score": res.det_score[kept],
    }
    for au in (c for c in columns if c.startswith("AU")):
        cols[au] = job.au[kept, job.aus.index(au)] if au in job.aus else np.full(len(kept), AU_UNKNOWN, np.int8)
    lm = res.landmarks[kept].reshape(len(kept), 10)
    for j, c in enumerate(LANDMARK_COLUMNS):
        cols[c] = lm[:, j]
    return cols
