"""The study's verdict rule on made-up per-seed tables, and its paired interval against a
brute-force resampling of the same draws."""
import numpy as np
import pytest

from pipeline.study.verdicts import DOES_NOT_HOLD, HOLDS, WITHIN_NOISE, paired_interval, verdict


@pytest.mark.parametrize("differences, interval, expected, seeds, why", [
    ({0: 0.03, 1: 0.02, 2: 0.04}, (0.01, 0.05), HOLDS, "3 of 3 seeds", "every seed agrees"),
    ({0: 0.03, 1: 0.02, 2: 0.04}, (0.0, 0.05), WITHIN_NOISE, "3 of 3 seeds", "touches 0"),  # touching 0
    ({0: 0.05, 1: -0.01, 2: 0.06}, (0.005, 0.07), WITHIN_NOISE, "3 of 3 seeds", "1 of 3 seeds disagree"),
    ({0: -0.03, 1: -0.02, 2: 0.01}, (-0.05, -0.001), DOES_NOT_HOLD, "3 of 3 seeds", "control is better"),
    ({0: 0.01, 1: -0.01, 2: 0.02}, (-0.01, 0.03), WITHIN_NOISE, "3 of 3 seeds", "holds or touches 0"),
    ({0: 0.03, 1: None, 2: 0.04}, (0.01, 0.05), HOLDS, "2 of 3 seeds", "every seed agrees"),  # a seed missing
    ({0: 0.03, 1: None, 2: float("nan")}, (0.01, 0.05), WITHIN_NOISE, "1 of 3 seeds", "too few"),
    ({0: 0.03, 1: 0.02}, None, WITHIN_NOISE, "2 of 3 seeds", "too few"),
])
def test_each_verdict_follows_from_the_numbers(differences, interval, expected, seeds, why):
    v = verdict(differences, interval, 3)
    assert (v.verdict, v.seeds) == (expected, seeds) and why in v.why
    got = [d for d in differences.values() if d is not None and np.isfinite(d)]
    assert v.mean == pytest.approx(np.mean(got))
    assert v.sd == (pytest.approx(np.std(got, ddof=1)) if len(got) > 1 else None)


def test_the_paired_interval_resamples_the_same_videos_for_every_seed_and_both_arms():
    rng = np.random.default_rng(3)
    videos, n, seed = 7, 50, 11

    def counts():
        total = rng.integers(5, 40, videos)
        return {"hits": rng.binomial(total, rng.uniform(0.2, 0.8)), "total": total}

    arm, control = {0: counts(), 1: counts(), 2: counts()}, {0: counts(), 1: counts(), 3: counts()}
    rate = lambda s: s["hits"] / s["total"]  # noqa: E731 - a metric of summed per-video statistics
    low, high = paired_interval(arm, control, rate, n=n, seed=seed)
    draws = np.random.default_rng(seed).integers(0, videos, size=(n, videos))  # bootstrap_ci's draws
    replicates = [np.mean([rate({k: v[d].sum() for k, v in arm[s].items()})
                           - rate({k: v[d].sum() for k, v in control[s].items()}) for s in (0, 1)])  # seeds of both
                  for d in draws]
    assert (low, high) == pytest.approx(tuple(np.percentile(replicates, [2.5, 97.5])))
    assert paired_interval({0: counts()}, {1: counts()}, rate) is None  # no seed in common
