"""``rnn_soft_labels``: the temporal teacher's logits of every training frame, cached once
per sequence length for the temporal students."""
from __future__ import annotations

import click

from stages.common import follows_out, friendly_errors, load, params_option, provenance_option, set_option, use_threads
from stages.rnn_common import input_options, open_features, per_length


@click.command("rnn-soft-labels")
@params_option
@set_option
@input_options
@click.option("--teacher-dir", "teacher_dir", default="models/rnn/teacher", show_default=True,
              type=click.Path(file_okay=False), help="The temporal teachers, T<length>.pt.")
@click.option("--out", "out_dir", default="data/rnn_soft_labels", show_default=True, type=click.Path(file_okay=False),
              help="Folder of the caches, T<length>.h5 (the soft-label cache's format).")
@click.option("--report", default="reports/rnn/soft_labels.json", show_default=True, type=click.Path(dir_okay=False),
              help="Frames and hashes.")
@provenance_option("rnn_soft_labels")
@friendly_errors
@follows_out(report=".json")
def cli(params_path, features_path, table, students_dir, cnn_teacher, teacher_dir, out_dir, report, provenance_path):
    """For every length in temporal.sequence_lengths, run that length's temporal teacher
    over the training videos (evaluation windows, a frame in two windows gets the mean of
    its logits) and store each frame's logits."""
    from pipeline.core.device import resolve_device
    from pipeline.core.fileio import write_json
    from pipeline.core import provenance
    from pipeline.temporal.sequences import dump_soft_labels
    from pipeline.temporal.model import load_temporal
    from pipeline.training.models import va_centres_of

    from pipeline.build.params import BuildParams
    from pipeline.core.schema import label_schema
    from pipeline.extraction.params import ExtractParams
    from pipeline.inference.params import EnsembleParams
    from pipeline.temporal.params import FeaturesParams, TemporalParams, RnnParams

    p = load(params_path, RnnParams, TemporalParams, FeaturesParams, EnsembleParams, ExtractParams, BuildParams)
    use_threads(p.threads)
    features, _ = open_features(p.features.checkpoint, p.ensemble.members, p.extract.out,
                                      label_schema(p.build.label_schema, p.build.aus), features_path, table,
                                      students_dir, cnn_teacher)
    device = resolve_device(p.rnn_teacher.device)
    teachers = {n: (per_length(teacher_dir, n), *load_temporal(per_length(teacher_dir, n), device))
                for n in p.temporal.sequence_lengths}  # all checked before anything is written
    for length, (teacher, _, ckpt) in teachers.items():
        if ckpt.get("sequence_length") != length:
            raise click.ClickException(f"{teacher}: trained at sequence length {ckpt.get('sequence_length')}, "
                                       f"not {length}: rerun `dvc repro rnn_teacher`")
    summaries = {}
    for length, (teacher, model, ckpt) in teachers.items():
        out = per_length(out_dir, length, ".h5")
        out.parent.mkdir(parents=True, exist_ok=True)
        summaries[f"T{length}"] = dump_soft_labels(model, features, length, out, teacher, p.rnn_teacher.eval_batch,
                                                   device, va_centres_of(ckpt))
        click.echo(f"rnn soft labels T{length}: {summaries[f'T{length}']['frames']} frames -> {out}")
    write_json(report, summaries)
    provenance.write(provenance_path, __spec__.name, {"temporal": p.temporal.model_dump(mode="json")},
                     {"features": features_path, "teachers": teacher_dir}, {"caches": out_dir, "report": report})


if __name__ == "__main__":
    cli()
