"""``rnn_teacher``: the temporal teacher (Eq. 13 on windows of features), one per sequence length."""
from __future__ import annotations

import click

from stages.common import follows_out, friendly_errors, load, params_option, provenance_option, set_option, use_threads
from stages.rnn_common import input_options, open_features, per_length


@click.command("rnn-teacher")
@params_option
@set_option
@input_options
@click.option("--out", "out_dir", default="models/rnn/teacher", show_default=True, type=click.Path(file_okay=False),
              help="Folder of the best checkpoints, T<length>.pt.")
@click.option("--log", "log_dir", default="reports/plots/rnn/teacher", show_default=True, type=click.Path(file_okay=False),
              help="Folder of the per-epoch logs, T<length>.csv.")
@click.option("--report", default="reports/rnn/teacher.json", show_default=True, type=click.Path(dir_okay=False),
              help="Best epochs and scores.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@provenance_option("rnn_teacher")
@friendly_errors
@follows_out(log_dir="", report=".json")
def cli(params_path, features_path, table, students_dir, cnn_teacher, out_dir, log_dir, report, quiet, provenance_path):
    """Train one bidirectional GRU per task on windows of the cached CNN features of the
    Aff-Wild2 training videos, for every length in temporal.sequence_lengths. Reads the
    features only: no face is opened, no CNN is run."""
    from pipeline.core.fileio import write_json
    from pipeline.core import provenance
    from pipeline.temporal.sequences import SequenceData
    from stages.training import run_training

    from pipeline.build.params import BuildParams
    from pipeline.core.schema import label_schema
    from pipeline.extraction.params import ExtractParams
    from pipeline.inference.params import EnsembleParams
    from pipeline.temporal.params import FeaturesParams, TemporalParams, RnnParams

    p = load(params_path, RnnParams, TemporalParams, FeaturesParams, EnsembleParams, ExtractParams, BuildParams)
    use_threads(p.threads)
    params = p.rnn_teacher
    features, frames = open_features(p.features.checkpoint, p.ensemble.members, p.extract.out,
                                      label_schema(p.build.label_schema, p.build.aus), features_path, table,
                                      students_dir, cnn_teacher)
    # every length's windows first: a bad length stops the stage before anything is written
    datas = {n: SequenceData(features, frames, n, params.selection_videos) for n in p.temporal.sequence_lengths}
    results = {}
    for length, data in datas.items():
        result = run_training(params, data, str(per_length(out_dir, length)), str(per_length(log_dir, length, ".csv")),
                              None, f"scratch/rnn_teacher/T{length}/resume.pt", f"rnn_teacher T{length}", quiet,
                              extra={"sequence_length": length})
        if result is None:  # interrupted, or not the first of several processes
            return
        results[f"T{length}"] = {k: v for k, v in result.items() if k != "history"}
    write_json(report, results)
    provenance.write(provenance_path, __spec__.name, {"rnn_teacher": params.model_dump(mode="json"),
                                                     "temporal": p.temporal.model_dump(mode="json")},
                     {"features": features_path}, {"models": out_dir, "logs": log_dir, "report": report})


if __name__ == "__main__":
    cli()
