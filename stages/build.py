"""``build``: merged, balanced per-task training indexes, the validation index, the report."""
from __future__ import annotations

from pathlib import Path

import click

from pipeline.build.params import BuildParams
from pipeline.core.params import with_overrides
from pipeline.extraction.params import ExtractParams
from pipeline.core.fileio import write_json
from stages.common import follows_out, friendly_errors, load, params_option, provenance_option, set_option


@click.command("build")
@params_option
@set_option
@click.option("--faces", default=None, type=click.Path(file_okay=False),
              help="Folder holding <source>/frames.parquet (default: extract.out).")
@click.option("--out", default=None, type=click.Path(file_okay=False), help="Index folder (default: build.out).")
@click.option("--report", default="reports/build.json", show_default=True, type=click.Path(dir_okay=False),
              help="Statistics: sizes, IRLbl/MeanIR, class and VA-bin counts before and after.")
@click.option("--plots", default="reports/plots/build", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the DVC plot data (CSV) and the distributions PNG.")
@click.option("--no-balance", is_flag=True, help="Turn balancing off for every task (Table I's 'imbalanced').")
@provenance_option("build")
@friendly_errors
@follows_out(report=".json", plots="")
def cli(params_path, faces, out, report, plots, no_balance, provenance_path):
    """Merge sources per task, downsample and balance (ML-ROS, classes, VA bins).

    Writes train_{AU,EXPR,VA}.parquet and val.parquet (indexes into the face shards, with
    per-epoch weights), the report, and plots of the distributions before and after.
    """
    from pipeline.build.indexes import build, input_tables
    from pipeline.build.figures import build_figure, build_plot_data
    from pipeline.core import provenance

    p = load(params_path, BuildParams, ExtractParams)
    params = p.build
    if no_balance:
        params = with_overrides(params, au_balance=False, expr_balance=False, va_balance=False)
    faces = faces or p.extract.out
    inputs = {f"frames {s}": path for s, path in input_tables(faces, params).items()}
    out = out or params.out
    result = build(faces, out, params)
    write_json(report, result)
    build_plot_data(result, plots)
    build_figure(result, Path(plots) / "build_distributions.png")
    provenance.write(provenance_path, __spec__.name, {"build": params.model_dump(mode="json")}, inputs,
                     {"indexes": out, "report": report, "plots": plots})
    au, ex, va = result["AU"], result["EXPR"], result["VA"]
    click.echo(f"AU {au['frames']} frames (MeanIR {au['meanir_before']:.2f} -> {au['meanir_after']:.2f}), "
               f"EXPR {ex['frames']}, VA {va['frames']}, val {result['val']['frames']} -> {out}")
    for w in result["warnings"]:
        click.echo(f"warning: {w}", err=True)


if __name__ == "__main__":
    cli()
