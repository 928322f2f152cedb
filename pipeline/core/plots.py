"""Pictures and DVC plot data, written reproducibly: PNGs without timestamps, so the same
numbers give the same bytes; CSVs are what ``dvc plots show`` renders."""
from __future__ import annotations

import csv
import os
from pathlib import Path

# the pictures are files, always drawn by Agg: a user's MPLBACKEND (even one matplotlib
# does not know, which it refuses at import) has no say
os.environ.pop("MPLBACKEND", None)
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402,F401  (the pyplot every figure module uses)

from pipeline.core.fileio import atomic_write  # noqa: E402


def save_png(fig, path: str | Path) -> None:
    try:
        with atomic_write(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    finally:
        plt.close(fig)


def write_csv(path: str | Path, header: list[str], rows: list[list]) -> None:
    with atomic_write(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
