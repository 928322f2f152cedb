"""The build's pictures and plot data: the paper's Figure 2 distributions before and after
balancing."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.core.labels import VA_BIN_CENTRES, VA_BIN_EDGES
from pipeline.core.plots import plt, save_png, write_csv


def build_plot_data(report: dict, folder: str | Path) -> list[Path]:
    """CSV files for ``dvc plots``: AU positives, expression classes, VA bins, before/after."""
    folder = Path(folder)
    au, ex, va = report["AU"], report["EXPR"], report["VA"]  # AUs and classes of the build's label schema
    files = [folder / "build_au.csv", folder / "build_expr.csv", folder / "build_va.csv"]
    write_csv(files[0], ["au", "before", "after"],
              [[a, au["positives_before"][a], round(au["positives_after"][a], 6)] for a in au["positives_before"]])
    write_csv(files[1], ["expression", "before", "after"],
              [[e, ex["class_counts_before"][e], round(ex["class_counts_after"][e], 6)] for e in ex["class_counts_before"]])
    vb, vaf = np.asarray(va["bin_counts_before"]), np.asarray(va["bin_counts_after"])
    write_csv(files[2], ["bin_centre", "valence_before", "valence_after", "arousal_before", "arousal_after"],
              [[round(float(c), 4), int(vb[0, k]), round(float(vaf[0, k]), 6), int(vb[1, k]),
                round(float(vaf[1, k]), 6)] for k, c in enumerate(VA_BIN_CENTRES)])
    return files


def build_figure(report: dict, path: str | Path) -> None:
    """The paper's Figure 2 distributions (AU, expression, VA), before and after balancing."""
    au, ex, va = report["AU"], report["EXPR"], report["VA"]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    aus, classes = list(au["positives_before"]), list(ex["class_counts_before"])
    x = np.arange(len(aus))
    for row, (when, title) in enumerate([("before", "before balancing"), ("after", "after balancing")]):
        a = axes[row, 0]
        a.bar(x, [au[f"positives_{when}"][n] for n in aus], color="tab:blue")
        a.set_xticks(x, aus, rotation=45)
        a.set_title(f"AU positives {title}\nMeanIR {au[f'meanir_{when}']:.2f}")
        a = axes[row, 1]
        a.bar(np.arange(len(classes)), [ex[f"class_counts_{when}"][n] for n in classes], color="tab:orange")
        a.set_xticks(np.arange(len(classes)), classes, rotation=45)
        a.set_title(f"Expression classes {title}")
        a = axes[row, 2]
        grid = np.asarray(va[f"joint_counts_{when}"], dtype=float)
        im = a.imshow(np.log1p(grid.T), origin="lower", cmap="viridis",
                      extent=[VA_BIN_EDGES[0], VA_BIN_EDGES[-1], VA_BIN_EDGES[0], VA_BIN_EDGES[-1]])
        a.set_xlabel("valence")
        a.set_ylabel("arousal")
        a.set_title(f"VA 2-D histogram {title} (log(1+count))")
        fig.colorbar(im, ax=a, fraction=0.046)
    fig.tight_layout()
    save_png(fig, path)
