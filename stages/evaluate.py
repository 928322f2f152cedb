"""``evaluate``: every model and the trivial baselines on the validation set, one code path."""
from __future__ import annotations

from pathlib import Path

import click

from pipeline.fileio import write_json
from stages.common import friendly_errors, load, params_option


@click.command("evaluate")
@params_option
@click.option("--index", "index_dir", default=None, type=click.Path(file_okay=False),
              help="Folder of the build stage's indexes (default: build.out).")
@click.option("--predictions", default="reports/val_predictions.parquet", show_default=True,
              help="Long table: one row per validation frame and model.")
@click.option("--out", default="reports/evaluation.json", show_default=True, help="Metrics per model.")
@click.option("--plots", default="reports/plots/evaluate", show_default=True, help="Folder for PNG and DVC plot data.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@friendly_errors
def cli(params_path, index_dir, predictions, out, plots, quiet):
    """Score the models of evaluate.models and the baselines with the ABAW metrics.

    Writes the per-frame predictions, evaluation.json (computed from exactly those rows),
    a per-AU F1 bar chart and expression confusion matrices.
    """
    import pyarrow as pa

    from pipeline.data import FrameIndex
    from pipeline.evaluate import evaluate
    from pipeline.labels import TASKS
    from pipeline.plots import evaluation_plots
    from pipeline.store import write_parquet
    from pipeline.device import resolve_device

    p = load(params_path)
    e = p.evaluate
    index_dir = Path(index_dir or p.build.out)
    train = {t: FrameIndex.read(index_dir / f"train_{t}.parquet") for t in TASKS}
    val = FrameIndex.read(index_dir / "val.parquet")
    table, evaluation = evaluate(e.models, train, val, resolve_device(e.device), e.batch, e.au_thresholds,
                                 e.bootstrap, e.seed, progress=not quiet)
    write_parquet(pa.Table.from_pandas(table, preserve_index=False), predictions)
    write_json(out, evaluation)
    evaluation_plots(table, evaluation, plots)
    for name, r in evaluation.items():
        au, ex, va = r["AU"], r["EXPR"], r["VA"]
        click.echo(f"{name:>10}: AU {au['score']:.4f} (F1 {au['f1']:.4f})  EXPR {ex['score']:.4f} "
                   f"(F1 {ex['f1']:.4f})  CCC V {va['ccc_valence']:.4f} A {va['ccc_arousal']:.4f}"
                   if au and ex and va else f"{name}: {r}")


if __name__ == "__main__":
    cli()
