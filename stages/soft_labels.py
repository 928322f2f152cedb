"""``soft_labels``: the teacher's logits on fixed views of every training frame, once."""
from __future__ import annotations

import time
from pathlib import Path

import click

from stages.common import follows_out, friendly_errors, load, params_option, provenance_option, set_option, use_threads


@click.command("soft-labels")
@params_option
@set_option
@click.option("--index", "index_dir", default=None, type=click.Path(file_okay=False),
              help="Folder of the build stage's indexes (default: build.out).")
@click.option("--teacher", default="models/teacher.pt", show_default=True, type=click.Path(dir_okay=False),
              help="The teacher checkpoint.")
@click.option("--out", default="data/soft_labels.h5", show_default=True, type=click.Path(dir_okay=False),
              help="The cache (HDF5, frames by uid).")
@click.option("--report", default="reports/soft_labels.json", show_default=True, type=click.Path(dir_okay=False),
              help="Frames, views and hashes (no timings: the same inputs give the same bytes).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@provenance_option("soft_labels")
@friendly_errors
@follows_out(report=".json")
def cli(params_path, index_dir, teacher, out, report, quiet, provenance_path):
    """Run the teacher once over every frame of the training indexes, on K fixed views per
    frame (or the centre view), and store its logits for the students.

    Runs under `torchrun --nproc_per_node N -m stages.soft_labels` too: each process takes
    every N-th batch; the file is the same as a one-process dump.
    """
    from pipeline.core.device import distributed, resolve_device
    from pipeline.core.fileio import write_json
    from pipeline.training.models import load_checkpoint, va_centres_of
    from pipeline.core import provenance
    from pipeline.training.softlabels import dump

    from pipeline.build.params import BuildParams
    from pipeline.core.index import check_built_for
    from pipeline.core.schema import label_schema
    from pipeline.training.params import SoftLabelsParams

    p = load(params_path, SoftLabelsParams, BuildParams)
    use_threads(p.threads)
    s = p.soft_labels
    rank, _ = distributed()
    device = resolve_device(s.device)
    index_dir = index_dir or p.build.out
    schema = label_schema(p.build.label_schema, p.build.aus)
    check_built_for(index_dir, schema)
    model, ckpt = load_checkpoint(teacher, device, schema)
    started = time.perf_counter()
    summary = dump(model, index_dir, out, teacher, s.views, s.mode, s.batch, device,
                   va_centres_of(ckpt), progress=not quiet)
    seconds = time.perf_counter() - started
    if rank != 0:
        return
    write_json(report, summary)
    provenance.write(provenance_path, __spec__.name, {"soft_labels": s.model_dump(mode="json")},
                     {"build": index_dir, "teacher": teacher}, {"cache": out, "report": report})
    click.echo(f"soft labels: {summary['frames']} frames x {summary['views']} views ({s.mode}) in {seconds:.1f} s "
               f"({summary['frames'] / max(seconds, 1e-9):.0f} frames/s) -> {Path(out)}")


if __name__ == "__main__":
    cli()
