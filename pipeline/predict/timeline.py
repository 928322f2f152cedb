"""The picture of one video's predictions: AU probabilities as a heat map, the expression
as a coloured band, valence and arousal as curves; frames without a face are grey."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.plots import plt, save_png
from pipeline.core.schema import prob_column
from pipeline.predict.rows import table_labels

#: one colour per expression (EXPRESSIONS order, Other last), and grey for "no face"
EXPR_COLOURS = ["#bcbd22", "#d62728", "#8c564b", "#9467bd", "#2ca02c", "#1f77b4", "#ff7f0e", "#17becf"]
NO_FACE = "#d9d9d9"


def read_track(table: Path) -> tuple[pd.DataFrame, str]:
    """One row per frame of the table's main track (the one with the most faces; frames
    without it are rows with NaN), and a note naming the track when there are several."""
    columns = ["frame", "face", "track", "valence", "arousal", "expression"] + [prob_column(a) for a in table_labels(table)[0]]
    rows = (pd.read_parquet(table, columns=columns) if table.suffix == ".parquet"
            else pd.read_csv(table, usecols=columns))
    faces = rows[rows["face"].astype(bool)]
    note = ""
    if faces["track"].nunique() > 1:
        main = int(faces["track"].value_counts().idxmax())
        note = f" (track {main} of {faces['track'].nunique()})"
        faces = faces[faces["track"] == main]
    frames = pd.DataFrame({"frame": np.sort(rows["frame"].unique())})
    return frames.merge(faces.drop(columns=["face"]), on="frame", how="left"), note


def draw_timeline(table: Path, path: Path, title: str) -> Path:
    """Write the timeline PNG of the predictions in ``table`` to ``path``."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    track, note = read_track(Path(table))
    aus, classes = table_labels(Path(table))
    x = track["frame"].to_numpy()
    extent = (x[0] - 0.5, x[-1] + 0.5) if len(x) else (0, 1)
    fig, (ax_au, ax_ex, ax_va) = plt.subplots(3, 1, figsize=(12, 6.5), sharex=True,
                                              gridspec_kw={"height_ratios": [3, 0.6, 2.4]})
    heat = track[[prob_column(a) for a in aus]].to_numpy(dtype=float).T
    cmap = plt.get_cmap("viridis").with_extremes(bad=NO_FACE)
    im = ax_au.imshow(np.ma.masked_invalid(heat), aspect="auto", cmap=cmap, vmin=0, vmax=1, interpolation="nearest",
                      extent=(*extent, len(aus) - 0.5, -0.5))
    ax_au.set_yticks(range(len(aus)), aus)
    ax_au.set_title(f"{title}{note}: AU probabilities, expression, valence and arousal (grey: no face)")
    fig.colorbar(im, ax=[ax_au], fraction=0.02, pad=0.01, label="probability")
    codes = track["expression"].map({e: i for i, e in enumerate(classes)}).fillna(len(classes))
    ax_ex.imshow(codes.to_numpy(dtype=float)[None], aspect="auto", interpolation="nearest",
                 cmap=ListedColormap(EXPR_COLOURS[:len(classes)] + [NO_FACE]), vmin=-0.5, vmax=len(classes) + 0.5,
                 extent=(*extent, 0.5, -0.5))
    ax_ex.set_yticks([])
    ax_ex.set_ylabel("expr.", rotation=0, ha="right", va="center")
    ax_ex.legend(handles=[Patch(color=c, label=e) for c, e in zip(EXPR_COLOURS, classes)],
                 ncol=len(classes), loc="upper left", bbox_to_anchor=(0, -0.1), fontsize=8, frameon=False)
    ax_va.plot(x, track["valence"], label="valence", color="#1f77b4")
    ax_va.plot(x, track["arousal"], label="arousal", color="#d62728")
    missing = track["valence"].isna().to_numpy()
    ax_va.fill_between(x, -1, 1, where=missing, color=NO_FACE, step="mid", label="no face")
    ax_va.set_ylim(-1.05, 1.05)
    ax_va.axhline(0, color="black", lw=0.5)
    ax_va.set_xlabel("frame")
    ax_va.legend(loc="upper right", fontsize=8, ncol=3)
    fig.subplots_adjust(left=0.07, right=0.9, hspace=0.35)
    save_png(fig, path)
    plt.close(fig)
    return path
