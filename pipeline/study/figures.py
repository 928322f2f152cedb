"""One picture per claim: each seed's score of the arm and its control, and the paired
differences of every figure with their intervals."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.core.plots import plt, save_png


def claim_figure(report: dict, claim: dict, path: str | Path) -> None:
    names = list(report["figures"])
    arm, control = report["arms"][claim["arm"]], report["arms"][claim["control"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    seeds = sorted(arm["total"]["per_seed"], key=int)
    for s in seeds:
        a, b = arm["total"]["per_seed"][s], control["total"]["per_seed"][s]
        if a is not None and b is not None:
            left.plot([0, 1], [b, a], "-o", color="tab:gray", alpha=0.7)
            left.annotate(f"seed {s}", (1, a), xytext=(4, 0), textcoords="offset points", fontsize=8)
    for x, entry in ((0, control), (1, arm)):
        if entry["total"]["mean"] is not None:
            left.hlines(entry["total"]["mean"], x - 0.15, x + 0.15, color="tab:red", lw=2)
    left.set_xticks([0, 1], [claim["control"], claim["arm"]])
    left.set_xlim(-0.4, 1.5)
    left.set_ylabel("total on the test videos")
    left.set_title("each seed (grey), the mean (red)")
    x = np.arange(len(names))
    for i, name in enumerate(names):
        c = claim[name]
        if c["mean"] is None:
            continue
        colour = {"holds": "tab:green", "does not hold": "tab:red"}.get(c["verdict"], "tab:gray")
        if c["interval"]:
            right.vlines(i, c["interval"][0], c["interval"][1], color=colour, lw=3)
        right.plot(i, c["mean"], "o", color=colour)
        right.plot([i] * len(c["differences"]), [d for d in c["differences"].values() if d is not None]
                   + [np.nan] * sum(d is None for d in c["differences"].values()), "x", color="k", ms=4)
    right.axhline(0, color="k", lw=0.8)
    right.set_xticks(x, names)
    right.set_ylabel(f"{claim['arm']} - {claim['control']}")
    right.set_title("paired differences: mean, 95% interval, seeds (x)")
    fig.suptitle(f"{claim['claim']}: {claim['total']['verdict']}", fontsize=11)
    fig.tight_layout()
    save_png(fig, path)
