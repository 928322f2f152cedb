"""AFEW-VA: ``<NN>/<clip>/`` folders of PNG frames with one JSON of labels and landmarks.

The JSON's ``frames`` maps PNG basenames to integer valence/arousal in [-10, 10] and 68
iBUG landmarks, which give the alignment directly (no detector). A key without its PNG,
or a PNG without its key, is counted, never paired with a neighbour.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.extraction.align import landmarks5_from_68
from pipeline.core.labels import afewva_to_va
from pipeline.extraction.sources.base import Job, Problems, SourceRead, read_text


def unique_keys(pairs: list) -> dict:
    """A JSON object whose keys are all different (``json`` keeps the last of a key given twice)."""
    keys = [k for k, _ in pairs]
    twice = next((k for k in keys if keys.count(k) > 1), None)
    if twice is not None:
        raise ValueError(f"the key {twice!r} twice in one object: which value is meant cannot be told")
    return dict(pairs)


def read_clip(clip: Path, problems: Problems, result: SourceRead) -> Job | None:
    jsons = sorted(clip.glob("*.json"))
    if len(jsons) != 1:
        problems.reject(str(clip), f"expected one JSON file, found {len(jsons)}")
        return None
    path = jsons[0]
    text = read_text(path, problems)
    if text is None:
        return None
    try:
        meta = json.loads(text, object_pairs_hook=unique_keys)
        if not isinstance(meta, dict):
            raise ValueError(f"the top level is no mapping with a frames key, got a {type(meta).__name__}")
        if "frames" not in meta:
            raise ValueError(f"no frames key, found keys {', '.join(map(str, list(meta)[:5])) or 'none'}")
        entries = meta["frames"]
        if not isinstance(entries, dict):
            raise ValueError("the frames key holds no mapping")
    except (ValueError, KeyError) as e:
        problems.reject(str(path), f"unreadable JSON: {e}")
        return None
    pngs = {}  # by frame number: a key "12" is the image 00012.png
    for png in sorted(clip.glob("*.png")):
        if png.stem.isdigit():
            pngs[int(png.stem)] = png
        else:
            problems.reject(str(png), "image name is not a frame number (not read)")
    # 00012.PNG (a copy from a case-blind file system) is not read, but named when its frame is wanted
    cased = {int(p.stem): p.name for p in clip.iterdir()
             if p.suffix.lower() == ".png" and p.suffix != ".png" and p.stem.isdigit()}
    rows = {}
    for key in sorted(entries):
        e = entries[key]
        try:
            if not key.isdigit():
                raise ValueError(f"frame key {key!r} is not a frame number")
            if int(key) in rows:
                raise ValueError(f"frame {int(key)} listed twice (keys {key!r} and another)")
            if int(key) not in pngs:
                result.labels_without_frame += 1
                other = cased.get(int(key))
                hint = f": {other!r} beside it differs only in case (rename it to .png)" if other else ""
                problems.reject(str(path), f"frame {key!r} has no PNG{hint}")
                continue
            for dim in ("valence", "arousal"):  # whole numbers -10..10: never a bool, a string, 2.5
                if type(e[dim]) is not int:
                    raise ValueError(f"{dim} must be a whole number in [-10, 10], got {e[dim]!r}")
            v = afewva_to_va([e["valence"], e["arousal"]])
            points = np.asarray(e["landmarks"], dtype=np.float64)
            if points.shape != (68, 2):
                raise ValueError(f"landmarks must be 68 x 2, got {points.shape}")
            if not np.isfinite(points).all() or np.ptp(points, axis=0).max() < 1:
                raise ValueError("landmarks are not finite, distinct points")
        except (ValueError, KeyError, TypeError) as err:
            problems.reject(str(path), f"bad entry {key!r}: {err}")
            continue
        rows[int(key)] = (str(pngs[int(key)]), v, landmarks5_from_68(points))
    result.frames_without_label += len(set(pngs) - set(rows))
    if not rows:
        return None
    frames = sorted(rows)
    images, va, lms = zip(*(rows[f] for f in frames))
    video = f"{clip.parent.name}_{clip.name}"
    return Job(source="afewva", video=video, subject=str(meta.get("actor", video)), split="train",
               mode="landmarks", frames=np.array(frames), images=list(images),
               va=np.array(va, dtype=np.float32), landmarks=np.array(lms, dtype=np.float32))


def read(root: str | Path, problems: Problems) -> SourceRead:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: missing")
    clips = sorted(c for group in root.iterdir() if group.is_dir() for c in group.iterdir() if c.is_dir())
    if not clips:
        raise FileNotFoundError(f"{root}: no <NN>/<clip>/ folders")
    result = SourceRead(jobs=[], problems=problems)
    for clip in clips:
        job = read_clip(clip, problems, result)
        if job is not None:
            result.jobs.append(job)
    return result
