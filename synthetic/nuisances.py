"""Per-frame nuisances of a video: lighting, blur, motion blur, occluders, and the bank of
sensor noise its frames draw from. None of them changes a label.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .camera import Grain
from .episodes import smooth_noise
from .geometry import FaceGeometry
from .planning import SOURCE_IDS
from .scene import draw_occluder


@functools.lru_cache(maxsize=8)
def grain_bank(seed: int, source: str, h: int, w: int, sd: float) -> Grain:
    """The sensor noise of a source's frames of one size, shared by its jobs.

    Shared because drawing its fields (millions of numbers) for every video would cost more
    than rendering a short one; each frame still picks a random field at a random offset.
    The bank has its own random stream, seeded by what it depends on only, so it is the
    same in every worker process and never shifts a job's other draws (labels and label
    noise included).
    """
    return Grain(np.random.default_rng([seed, SOURCE_IDS[source], h, w, 1]), h, w, sd)


@dataclass
class Nuisance:
    """Per-frame camera and occlusion state of one video."""

    brightness: np.ndarray
    blur: np.ndarray
    motion: np.ndarray
    occ_kind: np.ndarray  #: per person [people, n]: "", "hand", "bar", "full"
    occ_cover: np.ndarray
    occ_seed: np.ndarray  #: the same occluder shape for a whole episode


def nuisances(rng, n: int, people: int, difficulty: float, look, invisible_rate: float,
              occluder_rate: float) -> Nuisance:
    d = float(difficulty)
    # Slow lighting changes, kept within what a camera's auto-exposure would allow (a
    # washed-out white face is no face to a detector, nor to an annotator).
    brightness = np.clip(np.exp(smooth_noise(rng, n, 0.12 * d, 30)) * rng.uniform(0.85, 1.05), 0.65, 1.15)
    blur = np.full(n, look.blur * d)
    motion = np.zeros(n)
    # Motion-blur bursts: short, a few per video.
    for _ in range(rng.poisson(n / 150 * d)):
        s, ln = int(rng.integers(0, n)), int(rng.integers(2, 6))
        motion[s:s + ln] = rng.uniform(1.5, 3.5) * d
    kinds = np.full((people, n), "", dtype=object)
    cover = np.zeros((people, n))
    seeds = np.zeros((people, n), np.int64)
    for p in range(people):
        for kind, rate, ln_range in (("full", invisible_rate, (3, 8)), ("partial", occluder_rate * d, (8, 30))):
            for _ in range(rng.poisson(rate * n / np.mean(ln_range))):
                s, ln = int(rng.integers(0, n)), int(rng.integers(*ln_range))
                k = kind if kind == "full" else ("hand" if rng.random() < 0.6 else "bar")
                free = kinds[p, s:s + ln] == ""
                idx = np.arange(s, min(n, s + ln))[free[: min(n, s + ln) - s]]
                kinds[p, idx] = k
                cover[p, idx] = 1.0 if k == "full" else rng.uniform(0.1, 0.25) * min(1.0, d)
                seeds[p, idx] = int(rng.integers(1 << 30))
    return Nuisance(brightness, blur, motion, kinds, cover, seeds)


def occlude(img, geom: FaceGeometry, kind: str, cover: float, seed: int, skin) -> None:
    if not kind:
        return
    r = np.random.default_rng(seed)
    colour = skin * r.uniform(0.85, 1.05) if kind == "hand" else r.uniform(20, 230, 3)
    draw_occluder(img, geom.box, r, cover, kind, colour)
