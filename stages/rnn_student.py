"""``rnn_student@<name>``: one temporal student (Eq. 14 on windows), one per sequence length."""
from __future__ import annotations

import click

from stages.common import follows_out, friendly_errors, load, params_option, provenance_option, set_option, use_threads
from stages.rnn_common import input_options, open_features, per_length


@click.command("rnn-student")
@params_option
@set_option
@click.option("--name", required=True, help="The student: a key of `rnn_students` in params.yaml.")
@input_options
@click.option("--soft-labels", "soft_dir", default="data/rnn_soft_labels", show_default=True,
              type=click.Path(file_okay=False), help="The temporal teacher's caches, T<length>.h5.")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Folder of its checkpoints, T<length>.pt (default: models/rnn/students/<name>).")
@click.option("--log", "log_dir", default=None, type=click.Path(file_okay=False),
              help="Per-epoch logs (default: reports/plots/rnn/students/<name>).")
@click.option("--report", default=None, type=click.Path(dir_okay=False),
              help="Best epochs and scores (default: reports/rnn/students/<name>.json).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@provenance_option("rnn_student", per_name=True)
@friendly_errors
@follows_out(log_dir="", report=".json")
def cli(params_path, name, features_path, table, students_dir, cnn_teacher, soft_dir, out_dir, log_dir, report, quiet,
        provenance_path):
    """Train one temporal student on the ground truth and the temporal teacher's cached
    logits, for every length in temporal.sequence_lengths (the teacher is never loaded)."""
    from pipeline.core.errors import ParamsError
    from pipeline.core.fileio import write_json
    from pipeline.core import provenance
    from pipeline.core.provenance import record_path
    from pipeline.temporal.sequences import SequenceData, check_cache
    from pipeline.training.softlabels import SoftLabels
    from stages.training import run_training

    from pipeline.build.params import BuildParams
    from pipeline.core.schema import label_schema
    from pipeline.extraction.params import ExtractParams
    from pipeline.inference.params import EnsembleParams
    from pipeline.temporal.params import FeaturesParams, TemporalParams, RnnStudentParams

    p = load(params_path, RnnStudentParams, TemporalParams, FeaturesParams, EnsembleParams, ExtractParams, BuildParams)
    use_threads(p.threads)
    if name not in p.rnn_students:
        raise ParamsError(f"params.yaml: rnn_students: no student {name!r} (rnn_students: {', '.join(p.rnn_students)})")
    params = p.rnn_students[name]
    features, frames = open_features(p.features.checkpoint, p.ensemble.members, p.extract.out,
                                      label_schema(p.build.label_schema, p.build.aus), features_path, table,
                                      students_dir, cnn_teacher)
    out_dir, log_dir = out_dir or f"models/rnn/students/{name}", log_dir or f"reports/plots/rnn/students/{name}"
    caches = {n: SoftLabels(per_length(soft_dir, n, ".h5"), "rnn_soft_labels") for n in p.temporal.sequence_lengths}
    datas = {}  # every length checked first: bad input stops the stage before anything is written
    for length, cache in caches.items():
        check_cache(cache, features, length)
        datas[length] = SequenceData(features, frames, length, params.selection_videos, cache)
    results = {}
    for length, data in datas.items():
        result = run_training(params, data, str(per_length(out_dir, length)), str(per_length(log_dir, length, ".csv")),
                              None, f"scratch/rnn_students/{name}/T{length}/resume.pt", f"rnn_student {name} T{length}",
                              quiet, extra={"sequence_length": length,
                                            "soft_labels": {"teacher_sha256": caches[length].attrs["teacher_sha256"]}})
        if result is None:  # interrupted, or not the first of several processes
            return
        results[f"T{length}"] = {k: v for k, v in result.items() if k != "history"}
    report = report or f"reports/rnn/students/{name}.json"
    write_json(report, results)
    provenance.write(provenance_path or record_path("rnn_student", name), __spec__.name,
                     {"student": name, "rnn_students": {name: params.model_dump(mode="json")},
                      "temporal": p.temporal.model_dump(mode="json")},
                     {"features": features_path, "soft_labels": soft_dir},
                     {"models": out_dir, "logs": log_dir, "report": report})


if __name__ == "__main__":
    cli()
