"""From per-seed scores to a verdict on a claim "arm A beats its control B" (docs/method.md,
"Verdicts").

The seeds vary the training only, so A and B of one seed are scored on the same test
videos: their difference is paired. Its interval resamples the test videos once per
replicate for every seed at once and averages the seeds' differences
(:func:`paired_interval`, on ``scoring.bootstrap_ci``'s additive per-video statistics).
The verdict (:func:`verdict`) reads that interval and the seeds' own differences.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from pipeline.evaluation.scoring import bootstrap_ci

HOLDS, DOES_NOT_HOLD, WITHIN_NOISE, NO_VERDICT = "holds", "does not hold", "within noise", "no verdict"
MIN_SEEDS = 2  #: fewer seeds have no spread: "no verdict" (the numbers are still shown)


@dataclass(frozen=True)
class Verdict:
    verdict: str
    seeds: str           # "3 of 3 seeds": the seeds the differences come from, of those asked for
    mean: float | None   # mean paired difference over those seeds
    sd: float | None     # its spread across seeds (sample standard deviation)
    interval: tuple[float, float] | None
    why: str             # the rule's reason, in words


def summary(values: Mapping[int, float | None], expected: int) -> tuple[list[float], str, float | None, float | None]:
    """The values of the seeds that have one, "k of K seeds", their mean and sample sd."""
    got = [float(v) for _, v in sorted(values.items()) if v is not None and np.isfinite(v)]
    mean = float(np.mean(got)) if got else None
    sd = float(np.std(got, ddof=1)) if len(got) > 1 else None
    return got, f"{len(got)} of {expected} seeds", mean, sd


def verdict(differences: Mapping[int, float | None], interval: tuple[float, float] | None,
            expected: int) -> Verdict:
    """The rule: *holds* when the 95% interval of the mean paired difference lies above 0
    (strictly) and every seed's difference is positive; *does not hold* when the interval
    lies below 0 (strictly: A is worse); *within noise* otherwise: the interval holds or
    touches 0, or seeds disagree. Fewer than :data:`MIN_SEEDS` seeds with a difference (or
    no interval) give *no verdict*: too little to tell noise from an effect."""
    got, seeds, mean, sd = summary(differences, expected)
    lo_hi = None if interval is None else (float(interval[0]), float(interval[1]))
    if len(got) < MIN_SEEDS or lo_hi is None:
        return Verdict(NO_VERDICT, seeds, mean, sd, lo_hi, f"{seeds}: too few to tell")
    lo, hi = lo_hi
    against = sum(d <= 0 for d in got)
    if lo > 0 and not against:
        return Verdict(HOLDS, seeds, mean, sd, lo_hi, "the interval lies above 0 and every seed agrees")
    if hi < 0:
        return Verdict(DOES_NOT_HOLD, seeds, mean, sd, lo_hi, "the interval lies below 0: the control is better")
    if lo > 0:
        return Verdict(WITHIN_NOISE, seeds, mean, sd, lo_hi, f"the interval lies above 0, but {against} of "
                       f"{len(got)} seeds disagree")
    return Verdict(WITHIN_NOISE, seeds, mean, sd, lo_hi, "the interval holds or touches 0")


def paired_interval(arm: Mapping[int, Mapping[str, np.ndarray]], control: Mapping[int, Mapping[str, np.ndarray]],
                    metric: Callable[[Mapping[str, np.ndarray]], float], n: int = 200, seed: int = 0,
                    alpha: float = 0.05) -> tuple[float, float] | None:
    """The interval of the mean over seeds of ``metric(arm) - metric(control)``: per seed,
    per-video additive statistics (name -> array [videos, ...], the same videos for every
    seed and both arms), the videos resampled once per replicate for all of them. Seeds
    missing from either side are left out (the verdict says how many remain)."""
    seeds = sorted(set(arm) & set(control))
    if not seeds:
        return None
    stats = {f"{side}{s}:{name}": values for s in seeds for side, stats in (("a", arm[s]), ("b", control[s]))
             for name, values in stats.items()}

    def mean_difference(sums):
        def of(side, s):
            return metric({name.split(":", 1)[1]: v for name, v in sums.items() if name.startswith(f"{side}{s}:")})
        pairs = [(of("a", s), of("b", s)) for s in seeds]
        if any(a is None or b is None for a, b in pairs):  # a task without labels in this draw
            return None
        return float(np.mean([a - b for a, b in pairs]))

    interval = bootstrap_ci(stats, mean_difference, n=n, seed=seed, alpha=alpha)
    return None if interval is None else (interval[0], interval[1])
