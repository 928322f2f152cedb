"""``train_teacher``: the multitask teacher of Eq. 13 on the balanced task sets."""
from __future__ import annotations

import click

from pipeline.build.params import BuildParams
from pipeline.core.params import with_overrides
from pipeline.training.params import TrainParams, advice
from stages.common import follows_out, friendly_errors, load, params_option, provenance_option, set_option, use_threads, warn
from stages.training import run_training


@click.command("train-teacher")
@params_option
@set_option
@click.option("--index", "index_dir", default=None, type=click.Path(file_okay=False),
              help="Folder of the build stage's indexes (default: build.out).")
@click.option("--out", default="models/teacher.pt", show_default=True, type=click.Path(dir_okay=False),
              help="Best-epoch checkpoint (state dict + config).")
@click.option("--log", "log_csv", default="reports/plots/teacher/log.csv", show_default=True, type=click.Path(dir_okay=False),
              help="Per-epoch losses and validation metrics (DVC plots).")
@click.option("--report", default="reports/teacher.json", show_default=True, type=click.Path(dir_okay=False),
              help="The best epoch's validation metrics.")
@click.option("--resume", "resume_file", default="scratch/teacher/resume.pt", show_default=True,
              type=click.Path(dir_okay=False),
              help="Resume file (not a DVC output: survives an interrupted run).")
@click.option("--epochs", type=int, default=None, help="Override teacher.epochs.")
@click.option("--device", default=None, help="Override teacher.device (auto, cpu, cuda, cuda:N).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@provenance_option("train_teacher")
@friendly_errors
@follows_out(log_csv=".csv", report=".json")
def cli(params_path, index_dir, out, log_csv, report, resume_file, epochs, device, quiet, provenance_path):
    """Train the teacher; keep the best validation epoch by AU + EXPR + CCC_V + CCC_A.

    Rerunning after an interruption resumes from the resume file and reaches the same
    weights as an uninterrupted run. Run under `torchrun --nproc_per_node N` for
    DistributedDataParallel training.
    """
    from pipeline.core import provenance
    from pipeline.core.index import check_built_for
    from pipeline.core.schema import label_schema

    p = load(params_path, TrainParams, BuildParams)
    use_threads(p.threads)
    warn(advice(p.teacher))
    params = with_overrides(p.teacher, epochs=epochs, device=device)
    index_dir = index_dir or p.build.out
    check_built_for(index_dir, label_schema(p.build.label_schema, p.build.aus))
    result = run_training(params, index_dir, out, log_csv, report, resume_file, "teacher", quiet)
    if result is not None:
        provenance.write(provenance_path, __spec__.name, {"teacher": params.model_dump(mode="json")},
                         {"build": index_dir}, {"checkpoint": out, "log": log_csv, "report": report})


if __name__ == "__main__":
    cli()
