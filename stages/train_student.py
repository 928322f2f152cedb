"""``train_student@<name>``: one student (Eq. 14) against the soft-label cache."""
from __future__ import annotations

import click

from stages.common import follows_out, friendly_errors, load, params_option, provenance_option, set_option, use_threads
from stages.training import run_training


@click.command("train-student")
@params_option
@set_option
@click.option("--name", required=True, help="The student: a key of `students` in params.yaml.")
@click.option("--index", "index_dir", default=None, type=click.Path(file_okay=False),
              help="Folder of the build stage's indexes (default: build.out).")
@click.option("--soft-labels", "soft_labels", default="data/soft_labels.h5", show_default=True,
              type=click.Path(dir_okay=False), help="The teacher's cached logits (the teacher is never loaded).")
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="Best-epoch checkpoint (default: models/students/<name>.pt).")
@click.option("--log", "log_csv", default=None, type=click.Path(dir_okay=False),
              help="Per-epoch log (default: reports/plots/students/<name>.csv).")
@click.option("--report", default=None, type=click.Path(dir_okay=False),
              help="The best epoch's metrics (default: reports/students/<name>.json).")
@click.option("--resume", "resume_file", default=None, type=click.Path(dir_okay=False),
              help="Resume file (default: scratch/students/<name>/resume.pt; not a DVC output).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@provenance_option("train_student", per_name=True)
@friendly_errors
@follows_out(log_csv=".csv", report=".json")
def cli(params_path, name, index_dir, soft_labels, out, log_csv, report, resume_file, quiet, provenance_path):
    """Train one student on the ground truth and the teacher's soft labels (Eq. 14).

    The cache must come from the same indexes: a cache from other indexes is refused,
    naming both hashes, before any training. Runs under torchrun like the teacher.
    """
    from pipeline.core.errors import ParamsError
    from pipeline.core import provenance
    from pipeline.core.hashing import file_sha256
    from pipeline.core.provenance import record_path
    from pipeline.training.softlabels import SoftLabels

    from pipeline.build.params import BuildParams
    from pipeline.core.index import check_built_for
    from pipeline.core.schema import label_schema
    from pipeline.training.params import StudentParams

    p = load(params_path, StudentParams, BuildParams)
    use_threads(p.threads)
    if name not in p.students:
        raise ParamsError(f"params.yaml: students: no student {name!r} (students: {', '.join(p.students)})")
    index_dir = index_dir or p.build.out
    check_built_for(index_dir, label_schema(p.build.label_schema, p.build.aus))
    cache = SoftLabels(soft_labels)
    cache.check_index(index_dir)
    params = p.students[name]
    if not params.augment and cache.mode == "views":
        raise ParamsError(f"params.yaml: students.{name}.augment: false needs a centre-mode cache "
                          f"(soft_labels.mode: centre); {soft_labels} holds {cache.views} views")
    extra = {"soft_labels": {"sha256": file_sha256(soft_labels), "mode": cache.mode, "views": cache.views,
                             "teacher_sha256": cache.attrs["teacher_sha256"], "index_sha256": cache.index_sha256}}
    out, log_csv = out or f"models/students/{name}.pt", log_csv or f"reports/plots/students/{name}.csv"
    report = report or f"reports/students/{name}.json"
    result = run_training(params, index_dir, out, log_csv, report, resume_file or f"scratch/students/{name}/resume.pt",
                          name, quiet, cache, extra)
    if result is not None:
        provenance.write(provenance_path or record_path("train_student", name), __spec__.name,
                         {"student": name, "students": {name: params.model_dump(mode="json")}},
                         {"build": index_dir, "soft_labels": soft_labels},
                         {"checkpoint": out, "log": log_csv, "report": report})


if __name__ == "__main__":
    cli()
