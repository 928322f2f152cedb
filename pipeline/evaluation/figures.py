"""The evaluation's pictures and plot data: per-AU F1, confusion matrices, every model's
scores (the paper's Figure 5) and the temporal models against the sequence length (Figure 6)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.core.plots import plt, save_png, write_csv
from pipeline.core.schema import prob_column
from pipeline.evaluation.metrics import abaw_total


def evaluation_plots(table, evaluation: dict, folder: str | Path) -> list[Path]:
    """Per-AU F1 bars (every model) and expression confusion matrices, as PNG and DVC data."""
    folder = Path(folder)
    models = [m for m, r in evaluation.items() if "AU" in r]  # not the mean of the students
    # the schema's AUs and classes, from any model scored on them (a task without labels is None)
    aus = next((list(evaluation[m]["AU"]["per_au_f1"]) for m in models if evaluation[m]["AU"]), [])
    classes = next((list(evaluation[m]["EXPR"]["per_class_f1"]) for m in models if evaluation[m]["EXPR"]), [])
    files = []
    rows = [[m, au, round(float(evaluation[m]["AU"]["per_au_f1"][au] or 0.0), 6)]
            for m in models if evaluation[m]["AU"] for au in aus]
    files.append(folder / "per_au_f1.csv")
    write_csv(files[-1], ["model", "au", "f1"], rows)

    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / max(len(models), 1)
    x = np.arange(len(aus))
    for i, m in enumerate(models):
        if evaluation[m]["AU"]:
            f1 = [evaluation[m]["AU"]["per_au_f1"][au] or 0.0 for au in aus]
            ax.bar(x + (i - (len(models) - 1) / 2) * width, f1, width, label=m)
    ax.set_xticks(x, aus)
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1 on validation")
    ax.set_title("Per-AU F1")
    ax.legend(fontsize=8)
    files.append(folder / "per_au_f1.png")
    save_png(fig, files[-1])

    for m in models:
        ex = evaluation[m]["EXPR"]
        if not ex:
            continue
        rows_m = table[(table["model"] == m) & (table["expr"] >= 0)]
        pred = rows_m[[prob_column(e) for e in classes]].to_numpy().argmax(axis=1)
        files.append(folder / f"confusion_{m}.csv")
        write_csv(files[-1], ["actual", "predicted"],
                  [[classes[a], classes[p]] for a, p in zip(rows_m["expr"].to_numpy(), pred)])
        cm = np.asarray(ex["confusion"], dtype=float)
        norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        fig, ax = plt.subplots(figsize=(6.5, 5.5))
        im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        for i in range(len(classes)):
            for j in range(len(classes)):
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
        ax.set_xticks(range(len(classes)), classes, rotation=45)
        ax.set_yticks(range(len(classes)), classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("actual")
        ax.set_title(f"{m}: expression confusion (row-normalised colour, counts)")
        fig.colorbar(im, ax=ax, fraction=0.046)
        fig.tight_layout()
        files.append(folder / f"confusion_{m}.png")
        save_png(fig, files[-1])
    return files


#: The comparison of the paper's Figure 5, left to right.
FIGURE = [("AU.score", "AU score"), ("EXPR.score", "EXPR score"), ("VA.ccc_valence", "CCC valence"),
          ("VA.ccc_arousal", "CCC arousal"), ("abaw_total", "sum")]


def _figure(result: dict, key: str):
    """A figure's value in an evaluation entry (a model's, or a mean's)."""
    if "mean" in result:
        return result["mean"][key]
    if key == "abaw_total":
        return abaw_total(result)
    task, name = key.split(".")
    return None if result[task] is None else result[task][name]


def comparison_plot(evaluation: dict, folder: str | Path) -> list[Path]:
    """Every model on every task with its bootstrap interval, and each one's paired
    difference to the teacher (the paper's Figure 5, with the spread it leaves out)."""
    folder = Path(folder)
    models = list(evaluation)
    rows = []
    for m in models:
        for key, _ in FIGURE:
            value, ci = _figure(evaluation[m], key), evaluation[m]["ci"]["intervals"].get(key)
            diff = evaluation[m].get("vs_teacher", {})
            d_ci = diff.get("intervals", {}).get(key)
            rows.append([m, key, *(None if v is None else round(float(v), 6) for v in (
                value, *(ci or (None, None)), diff.get("difference", {}).get(key), *(d_ci or (None, None))))])
    files = [folder / "comparison.csv"]
    write_csv(files[0], ["model", "metric", "value", "low", "high", "vs_teacher", "vs_teacher_low", "vs_teacher_high"],
              rows)
    fig, axes = plt.subplots(1, len(FIGURE) + 1, figsize=(4 * (len(FIGURE) + 1), 4.8))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    y = np.arange(len(models))
    for a, (key, title) in zip(axes, FIGURE):
        values = [_figure(evaluation[m], key) for m in models]
        cis = [evaluation[m]["ci"]["intervals"].get(key) for m in models]
        for i, (v, ci) in enumerate(zip(values, cis)):
            if v is None:
                continue
            # a percentile interval need not contain the point estimate (two videos, say)
            err = None if ci is None else [[max(v - ci[0], 0)], [max(ci[1] - v, 0)]]
            a.barh(i, v, xerr=err, color=colours[i % len(colours)], capsize=3)
        a.set_yticks(y, models if a is axes[0] else [""] * len(models))
        a.invert_yaxis()
        a.set_title(title)
    a = axes[-1]
    for i, m in enumerate(models):
        d = evaluation[m].get("vs_teacher")
        if d and d["difference"]["abaw_total"] is not None:
            lo, hi = d["intervals"]["abaw_total"]
            v = d["difference"]["abaw_total"]
            a.errorbar(v, i, xerr=[[max(v - lo, 0)], [max(hi - v, 0)]], fmt="o", color=colours[i % len(colours)],
                       capsize=3)
    a.axvline(0, color="grey", lw=0.8)
    a.set_yticks(y, [""] * len(models))
    a.set_ylim(len(models) - 0.5, -0.5)
    a.set_title("sum minus teacher's\n(paired 95% interval)")
    fig.suptitle("Validation scores with 95% bootstrap intervals over videos")
    fig.tight_layout()
    files.append(folder / "comparison.png")
    save_png(fig, files[-1])
    return files


def sequence_length_plot(evaluation: dict, folder: str | Path) -> list[Path]:
    """The temporal teacher and ensemble against the sequence length, beside the CNN
    ensemble and its smoothed outputs (the paper's Figure 6, with 95% intervals)."""
    lengths = sorted(int(m.rsplit("_T", 1)[1]) for m in evaluation if m.startswith("rnn_ensemble_T"))
    if not lengths:
        return []
    folder = Path(folder)
    rows = [[m, length, key, round(float(v), 6)] for length in lengths for m in (f"rnn_teacher_T{length}",
            f"rnn_ensemble_T{length}") if m in evaluation for key, _ in FIGURE
            if (v := _figure(evaluation[m], key)) is not None]
    files = [folder / "sequence_length.csv"]
    write_csv(files[0], ["model", "sequence_length", "metric", "value"], rows)
    fig, axes = plt.subplots(1, len(FIGURE), figsize=(3.6 * len(FIGURE), 3.8))
    for a, (key, title) in zip(axes, FIGURE):
        for kind, colour in (("rnn_teacher", "C0"), ("rnn_ensemble", "C1")):
            names = [f"{kind}_T{length}" for length in lengths if f"{kind}_T{length}" in evaluation
                     and _figure(evaluation[f"{kind}_T{length}"], key) is not None]  # a task without labels: none
            values = [_figure(evaluation[m], key) for m in names]
            cis = [evaluation[m]["ci"]["intervals"].get(key) or (v, v) for m, v in zip(names, values)]
            err = [[max(v - lo, 0) for v, (lo, _) in zip(values, cis)], [max(hi - v, 0) for v, (_, hi) in zip(values, cis)]]
            a.errorbar([int(m.rsplit("_T", 1)[1]) for m in names], values, yerr=err, fmt="o-", color=colour, capsize=3,
                       label=kind.replace("_", " "))
        for m, style in (("ensemble", "--"), ("ensemble_smoothed", ":")):
            if m in evaluation and (v := _figure(evaluation[m], key)) is not None:
                a.axhline(v, color="grey", ls=style, label=f"CNN {m.replace('_', ' ')}")
        a.set_xscale("log", base=2)
        a.set_xticks(lengths, [str(length) for length in lengths])
        a.set_xlabel("sequence length (frames)")
        a.set_title(title)
    axes[0].legend(fontsize=8)
    fig.suptitle("Temporal models by sequence length (validation, 95% bootstrap intervals over videos)")
    fig.tight_layout()
    files.append(folder / "sequence_length.png")
    save_png(fig, files[-1])
    return files
