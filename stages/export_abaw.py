"""``mtaffect export-abaw``: ABAW submission files (of the era of the model that predicted) from predict's tables."""
from __future__ import annotations

from pathlib import Path

import click

from pipeline.core.labels import TASKS
from stages.common import friendly_errors


@click.command("export-abaw")
@click.argument("tables", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for AU_Set/, EXPR_Set/, VA_Set/.")
@click.option("--task", "tasks", multiple=True, type=click.Choice(TASKS),
              help="Only these tasks (repeatable; default: all three).")
@click.option("--mtl", is_flag=True,
              help="Write s-Aff-Wild2's multi-task file <out>/MTL_predictions.txt instead: one row per image of "
                   "the tables of `predict --aligned` on cropped_aligned/<video>/ folders (an abaw2022 model). "
                   "It lists exactly the tables given: an earlier one of this --out is replaced.")
@friendly_errors
def cli(tables, out, tasks, mtl):
    """Write <out>/<task>_Set/<video>.txt for each TABLE (a video's predict output, .csv or
    .parquet, named after the video): a header, then one line per frame; frames without a
    face take the nearest earlier prediction (the nearest later one at the start).

    Files in --out are replaced only when an earlier export-abaw wrote them and nobody
    changed them since; two tables of one video name are refused before anything is written.
    """
    from pipeline.predict.export import MTL_FILE, export, export_mtl, output_paths, read_image_predictions, \
        read_predictions
    from pipeline.predict.outputs import OutputFolder, check_out_option

    out_dir = check_out_option(out)
    target = OutputFolder(out_dir, "export-abaw")
    if mtl:
        if tasks:
            raise click.UsageError("--mtl writes every task into one file: leave --task out")
        if len({Path(t).stem for t in tables}) < len(tables):
            raise click.UsageError("two tables of one video name: their images would be listed twice")
        target.claim([out_dir / MTL_FILE])
        for table in tables:  # every table is checked before the file is written
            read_image_predictions(Path(table))
        with target.writing([out_dir / MTL_FILE]):  # a failed run leaves no --out folder it made
            target.record(export_mtl([Path(t) for t in tables], out_dir))
        click.echo(f"{len(tables)} table(s) -> {out_dir / MTL_FILE} (only these tables' images)")
        return
    tasks = tasks or TASKS
    outputs = [p for table in tables for p in output_paths(Path(table), out_dir, tasks).values()]
    target.claim(outputs)
    for table in tables:  # every table is checked before the first file is written
        read_predictions(Path(table), tasks)
    with target.writing(outputs):  # a failed run leaves no --out folder it made
        for table in tables:
            written = export(Path(table), out_dir, tasks, done=target.record)  # each file recorded once written
            click.echo(f"{table} -> " + ", ".join(str(p) for p in written.values()))


if __name__ == "__main__":
    cli()
