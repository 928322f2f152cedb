"""Generate the synthetic data set: plan the videos, render them, write the datasets' formats.

``generate(out, config)`` writes::

    out/affwild2/   annotations/{AU,EXPR,VA}_Set/{Training,Validation}_Set/<video>.txt,
                    videos/<video>.avi, cropped_aligned/<video>/NNNNN.jpg
    out/disfa/      ActionUnit_Labels/SNxxx/SNxxx_auN.txt, Videos_LeftCamera/LeftVideoSNxxx_comp.avi
    out/expw/       image/origin/*.jpg, label/label.lst
    out/afewva/     NN/<clip>/00000.png ..., NN/<clip>/<clip>.json
    (label_schema abaw2022: Aff-Wild2's annotations in its 2022 layout, and)
    out/saffwild2/  MTL_Challenge/{training,validation}_set_annotations.txt, cropped_aligned/<video>/NNNNN.jpg
    out/affectnet/  Manually_Annotated_file_lists/{training,validation}.csv, Manually_Annotated_Images/<n>/*.jpg
    out/ground_truth.parquet   every face's true labels, what the files say, box, landmarks
    out/synth.json             the parameters and the counts (no time stamps)
    out/<source>.version.json  each dataset's digest: what extract depends on (pipeline.extraction.dataset_version)

A plan (``planning``: cheap, made from the seed alone) lists one job per video, subject,
clip or batch of images. Jobs render in worker processes (``runners``); each draws its
random numbers from its own generator seeded by (seed, source, job number) (its sensor
noise from a second one), so the files do not depend on the number of workers or on the
order in which jobs finish. Results come back in plan order and the ground truth streams
to disk, so memory stays flat at any size.

``config`` is the ``synth`` section of params.yaml (``synthetic.params.SynthParams``);
synth.json records it without the settings that never change the bytes.
"""
from __future__ import annotations

import errno
import fnmatch
import json
import multiprocessing
import shutil
import signal
import time
from dataclasses import asdict
from pathlib import Path

import cv2

from synthetic.params import SynthParams
from pipeline.core.errors import DataError
from pipeline.core.fileio import temp_path, write_text
from pipeline.extraction.dataset_version import SUFFIX, write_version
from pipeline.core.tables import FrameTableWriter

from . import writers
from .eras import ERAS
from .planning import SOURCES, plan, size_spec
from .runners import run_job

OUTPUTS = (*SOURCES, *(s + SUFFIX for s in SOURCES), "ground_truth.parquet", "synth.json")
GENERATOR = "mtaffect synthetic v3"
#: The files each source folder gets (paths below it, one pattern per level): anything else
#: there is someone else's, and stops a rerun before it deletes the folder.
OWN_FILES = {"affwild2": ("annotations/*_Set/*_Set/*.txt", "annotations/*_Challenge/*_Set/*.txt", "videos/*.avi",
                          "cropped_aligned/*/*.jpg"),
             "disfa": ("ActionUnit_Labels/SN*/SN*_au*.txt", "Videos_LeftCamera/LeftVideoSN*_comp.avi"),
             "expw": ("image/origin/*.jpg", "label/label.lst"),
             "afewva": ("*/*/*.png", "*/*/*.json"),
             "saffwild2": ("MTL_Challenge/*.txt", "cropped_aligned/*/*.jpg"),
             "affectnet": ("Manually_Annotated_file_lists/*.csv", "Manually_Annotated_Images/*/*.jpg")}
#: The sources whose labels are lists gathered over jobs: file (per split) and header.
LABEL_LISTS = {"expw": ("label/label.lst", None),
               "saffwild2": ("MTL_Challenge/{split}_set_annotations.txt", writers.MTL_HEADER),
               "affectnet": ("Manually_Annotated_file_lists/{split}.csv", writers.AFFECTNET_HEADER)}
SPLIT_NAMES = {"expw": {"train": "train"}, "saffwild2": {"train": "training", "val": "validation"},
               "affectnet": {"train": "training", "val": "validation"}}
#: Settings that never change the bytes (speed, where things go), left out of synth.json.
NOT_IN_MANIFEST = ("workers", "out", "contact_sheet")


def check_out(out: str | Path, contact_sheet: str | Path | None = None) -> None:
    """Refuse, before any work, an output folder holding anything synth did not write,
    naming the first such file: an empty or absent folder, or an earlier run's (its
    synth.json and the entries of :data:`OUTPUTS`, the contact sheet, each source folder
    holding only :data:`OWN_FILES` and, once versioned, as many as its version file says)."""
    out = Path(out)
    if not out.exists():
        return
    if not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder: refusing to replace it (choose another --out)")
    entries = sorted(out.iterdir())
    if not entries:
        return
    known = set(OUTPUTS) | {temp_path(out / n).name for n in OUTPUTS}  # temporaries of a killed run
    if contact_sheet is not None and Path(contact_sheet).resolve().parent == out.resolve():
        known.add(Path(contact_sheet).name)
    aside = out / "provenance"  # where synth's record goes when the default one names another --out
    if aside.is_dir() and {f.name for f in aside.iterdir()} <= {"synth.json", temp_path(aside / "synth.json").name}:
        known.add(aside.name)
    refuse = "refusing to replace the folder (move it away, or choose another --out)"
    for p in entries:
        if p.name not in known or (p.name in SOURCES and not p.is_dir()):
            raise DataError(f"{p}: not written by synth: {refuse}")
    listed = {}
    for source, patterns in OWN_FILES.items():
        folder = out / source
        listed[source] = files = sorted(f for f in folder.rglob("*") if not f.is_dir()) if folder.is_dir() else []
        for f in files:
            parts = f.relative_to(out / source).parts
            if not any(len(parts) == len(q.split("/")) and all(map(fnmatch.fnmatchcase, parts, q.split("/")))
                       for q in patterns):
                raise DataError(f"{f}: not written by synth: {refuse}")
    marker = out / "synth.json"
    if not marker.exists():
        raise DataError(f"{out}: holds {entries[0].name} but no synth.json, so it is not an earlier synth output: "
                        f"{refuse}; if synth wrote it, `dvc checkout synth` brings synth.json back")
    try:
        ours = str(json.loads(marker.read_text()).get("generator", "")).startswith("mtaffect synthetic")
    except (ValueError, AttributeError, OSError):
        ours = False
    if not ours:
        raise DataError(f"{marker}: not written by synth: {refuse}; if synth wrote it, `dvc checkout synth` "
                        "brings it back")
    for source, files in listed.items():
        version = out / (source + SUFFIX)
        try:
            recorded = json.loads(version.read_text())["files"] if version.exists() else len(files)
        except (ValueError, KeyError, TypeError, OSError):
            raise DataError(f"{version}: not a version file synth wrote: {refuse}") from None
        if len(files) > recorded:  # someone's file of a name synth could have written
            raise DataError(f"{out / source}: holds {len(files)} files, synth wrote {recorded} ({version}): "
                            f"someone added files since: {refuse}")


def generate(out: str | Path, config: SynthParams, progress: bool = True) -> dict:
    """Write the whole data set under ``out``, replacing what an earlier run wrote there;
    a folder holding anything else is refused before any work (:func:`check_out`).

    A run that stops on the way (Ctrl-C, ``kill``, a full disk) leaves its synth.json saying
    ``"complete": false`` (how the next run recognises what it replaces) and says so in one line."""
    out = Path(out)
    check_out(out, config.contact_sheet)
    out.mkdir(parents=True, exist_ok=True)
    # marked ours first: the next run recognises what a killed one leaves, even half-deleted
    write_text(out / "synth.json", json.dumps({"generator": GENERATOR, "complete": False}) + "\n")
    try:
        return _generate(out, config, progress)
    except KeyboardInterrupt:
        raise DataError(f"{out}: synth was interrupted: the data set there is incomplete; run it again "
                        "(dvc repro --force synth)") from None
    except OSError as e:  # a full disk, ...: the file if known (a worker's error names none), else the folder
        full = " (the disk is full)" if e.errno == errno.ENOSPC else ""
        raise DataError(f"{e.filename or out}: {e.strerror or e}{full}: synth did not complete; the data set in "
                        f"{out} is incomplete (its synth.json says so) and the next run replaces it") from None


def _generate(out: Path, config: SynthParams, progress: bool) -> dict:
    """:func:`generate`'s work, once ``out`` is marked as an incomplete synth output."""
    for name in (n for n in OUTPUTS if n != "synth.json"):  # only what this generator owns
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    jobs = plan(config)
    sources = ERAS[config.label_schema].sources
    for s in sources:
        (out / s).mkdir()
    stats = {s: {"frames": 0, "faces": 0, "bytes": 0, "seconds": 0.0} for s in sources}
    # Fixed row groups, streamed: memory stays flat; renamed into place only when complete.
    gt = FrameTableWriter(out / "ground_truth.parquet", schema=writers.ground_truth_schema(ERAS[config.label_schema]))
    lists: dict[tuple[str, str], list[str]] = {}  # (source, split) -> its rows of the source's label lists
    total = sum(j.frames or len(j.images) for j in jobs)
    t0 = time.perf_counter()
    try:
        from tqdm import tqdm
        bar = tqdm(total=total, unit="frame", desc=f"synth {config.dataset_size}", disable=not progress, leave=False)
        for res in _results(jobs, config, out):
            s = res["source"]
            gt.add(res["rows"])
            for split, lines in res.get("lines", {}).items():
                lists.setdefault((s, split), []).extend(lines)
            for k in ("frames", "faces", "bytes"):
                stats[s][k] += int(res[k])
            stats[s]["seconds"] += res["seconds"]
            bar.update(res["frames"])
        bar.close()
        rows = gt.close()
    except BaseException:
        try:
            gt.abort()
        except OSError:  # closing wrote to the same full disk: the temporary goes all the same
            gt.tmp.unlink(missing_ok=True)
        raise
    for (source, split), lines in sorted(lists.items()):
        if source in LABEL_LISTS:
            name, header = LABEL_LISTS[source]
            path = out / source / name.format(split=SPLIT_NAMES[source][split])
            path.parent.mkdir(parents=True, exist_ok=True)
            text = "\n".join(([header] if header else []) + lines) + "\n"
            path.write_text(text)
            stats[source]["bytes"] += len(text)
    seconds = time.perf_counter() - t0
    manifest = {
        "generator": GENERATOR,
        "config": {k: v for k, v in config.model_dump().items() if k not in NOT_IN_MANIFEST},
        "size": asdict(size_spec(config.dataset_size)),
        "counts": {s: {k: stats[s][k] for k in ("frames", "faces")} for s in sources},
        "ground_truth_rows": rows,
    }
    for s in sources:
        write_version(out / s, progress=progress)
    # last: complete only once everything else is written
    write_text(out / "synth.json", json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    stats["ground_truth"] = {"rows": rows, "bytes": (out / "ground_truth.parquet").stat().st_size}
    return {"seconds": seconds, "sources": stats, "rows": rows}


def _worker_init() -> None:
    cv2.setNumThreads(1)  # one core per worker: the parallelism comes from the processes
    # Ctrl-C reaches every process of the terminal's group: the main process alone says so
    # (one line) and ends the pool, the workers print no traceback of their own
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _results(jobs, config: SynthParams, out: Path):
    args = [(j, config, str(out)) for j in jobs]
    workers = max(1, int(config.workers))
    if workers == 1 or len(jobs) == 1:
        # Render here as a worker would, with one OpenCV thread: the images are small, and
        # OpenCV's threads cost more CPU than they save on them. The caller's setting is
        # restored afterwards.
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            for a in args:
                yield run_job(a)
        finally:
            cv2.setNumThreads(threads)
        return
    # A fork server, not plain fork: forking a process whose torch/OpenMP threads already
    # ran deadlocks the children (seen in the test suite). The server imports the heavy
    # modules once and forks the workers from that clean state. Results keep plan order.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["synthetic.runners"])
    with ctx.Pool(workers, initializer=_worker_init) as pool:
        yield from pool.imap(run_job, args, chunksize=1)
