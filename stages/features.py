"""``features``: the frozen CNN's per-task features of every Aff-Wild2 frame, once."""
from __future__ import annotations

from pathlib import Path

import click

from stages.common import follows_out, friendly_errors, load, params_option, provenance_option, set_option, use_threads


@click.command("features")
@params_option
@set_option
@click.option("--faces", "table", default=None, type=click.Path(dir_okay=False),
              help="Aff-Wild2's frame table (default: <extract.out>/affwild2/frames.parquet).")
@click.option("--students", "students_dir", default="models/students", show_default=True,
              type=click.Path(file_okay=False), help="Folder of the students' checkpoints (<name>.pt).")
@click.option("--teacher", default="models/teacher.pt", show_default=True, type=click.Path(dir_okay=False),
              help="The teacher (used when features.checkpoint is teacher).")
@click.option("--out", default="data/features.h5", show_default=True, type=click.Path(dir_okay=False),
              help="Features and logits per frame (HDF5).")
@click.option("--report", default="reports/features.json", show_default=True, type=click.Path(dir_okay=False),
              help="Frames, videos and the checkpoint's hash.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@provenance_option("features")
@friendly_errors
@follows_out(report=".json")
def cli(params_path, table, students_dir, teacher, out, report, quiet, provenance_path):
    """Run the frozen CNN (eval mode, centre view) once over every Aff-Wild2 frame of the
    training and validation videos and store its 128-d per-task features and its logits,
    for the temporal model to train on."""
    from tqdm import tqdm

    from pipeline.core.device import resolve_device
    from pipeline.temporal.features import choose_checkpoint, dump
    from pipeline.core.fileio import write_json
    from pipeline.training.models import load_checkpoint, va_centres_of
    from pipeline.core import provenance

    from pipeline.build.params import BuildParams
    from pipeline.core.schema import label_schema
    from pipeline.extraction.params import ExtractParams
    from pipeline.inference.params import EnsembleParams
    from pipeline.temporal.params import FeaturesParams

    p = load(params_path, FeaturesParams, EnsembleParams, ExtractParams, BuildParams)
    use_threads(p.threads)
    f = p.features
    table = table or str(Path(p.extract.out) / "affwild2" / "frames.parquet")
    if not Path(table).exists():
        raise FileNotFoundError(f"{table}: Aff-Wild2's frame table not found (run `dvc repro extract@affwild2`)")
    checkpoint = choose_checkpoint(f.checkpoint, p.ensemble.members, students_dir, teacher)
    device = resolve_device(f.device)
    model, ckpt = load_checkpoint(checkpoint, device, label_schema(p.build.label_schema, p.build.aus))
    with tqdm(desc="features", unit="frame", disable=quiet) as bar:
        summary = dump(model, table, out, checkpoint, f.batch, device, va_centres_of(ckpt),
                       bar)
    write_json(report, summary | {"checkpoint": checkpoint})
    provenance.write(provenance_path, __spec__.name, {"features": f.model_dump(mode="json"), "checkpoint": checkpoint},
                     {"frames": table, "checkpoint": checkpoint}, {"features": out, "report": report})
    click.echo(f"features: {summary['frames']} frames of {summary['videos']} videos from {checkpoint} -> {out}")


if __name__ == "__main__":
    cli()
