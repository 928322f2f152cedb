"""``rnn_ensemble``: the temporal students named in ``rnn_ensemble.members``, one bundle per
sequence length."""
from __future__ import annotations

import click

from stages.common import follows_out, friendly_errors, load, params_option, provenance_option, set_option, use_threads
from stages.rnn_common import input_options, open_features, per_length


@click.command("rnn-ensemble")
@params_option
@set_option
@input_options
@click.option("--members", "members_dir", default="models/rnn/students", show_default=True,
              type=click.Path(file_okay=False), help="The temporal students' folders, <name>/T<length>.pt.")
@click.option("--out", "out_dir", default="models/rnn/ensemble", show_default=True, type=click.Path(file_okay=False),
              help="Folder of the bundles, T<length>.pt.")
@click.option("--report", default="reports/rnn/ensemble.json", show_default=True, type=click.Path(dir_okay=False),
              help="Members, hashes, thresholds and validation scores per length.")
@provenance_option("rnn_ensemble")
@friendly_errors
@follows_out(report=".json")
def cli(params_path, features_path, table, students_dir, cnn_teacher, members_dir, out_dir, report, provenance_path):
    """Average the temporal members' probabilities (AU, EXPR) and VA expectations, as the
    CNN ensemble does; AU thresholds 0.5, or tuned per AU on the validation set."""
    from pathlib import Path

    import numpy as np

    from pipeline.core.labels import AU_THRESHOLD

    from pipeline.core.device import resolve_device
    from pipeline.core.fileio import write_json
    from pipeline.evaluation.scoring import score
    from pipeline.evaluation.thresholds import tune_thresholds
    from pipeline.core import provenance
    from pipeline.temporal.sequences import Split, ensemble_predict
    from pipeline.temporal.model import load_temporal, save_rnn_bundle
    from pipeline.training.models import va_centres_of

    from pipeline.build.params import BuildParams
    from pipeline.core.schema import label_schema
    from pipeline.extraction.params import ExtractParams
    from pipeline.inference.params import EnsembleParams
    from pipeline.temporal.params import FeaturesParams, TemporalParams, RnnEnsembleParams

    p = load(params_path, RnnEnsembleParams, TemporalParams, FeaturesParams, EnsembleParams, ExtractParams, BuildParams)
    use_threads(p.threads)
    e = p.rnn_ensemble
    features, frames = open_features(p.features.checkpoint, p.ensemble.members, p.extract.out,
                                      label_schema(p.build.label_schema, p.build.aus), features_path, table,
                                      students_dir, cnn_teacher)
    device = resolve_device(e.device)
    val_rows = np.flatnonzero(features.split == "val")
    val = frames.subset(val_rows)
    every = {n: {name: str(per_length(Path(members_dir) / name, n)) for name in e.members}
             for n in p.temporal.sequence_lengths}
    for members in every.values():  # all found before anything is written
        for name, path in members.items():
            if not Path(path).exists():
                raise FileNotFoundError(f"{path}: checkpoint of temporal member {name!r} not found "
                                        f"(run `dvc repro rnn_student@{name}`)")
    summaries = {}
    for length, members in every.items():
        models = [(name, *load_temporal(path, device)) for name, path in members.items()]
        preds = ensemble_predict([(name, model, va_centres_of(ckpt)) for name, model, ckpt in models],
                                 features, Split.of(features, val_rows, length, training=False), device, e.batch)
        thresholds, mode = AU_THRESHOLD, f"fixed {AU_THRESHOLD}"
        if e.au_thresholds == "tuned":
            thresholds, mode = tune_thresholds(val.au, preds["AU"]), "tuned per AU on the validation set"
        out = per_length(out_dir, length)
        extra = {"sequence_length": length, "features_sha256": features.attrs["checkpoint_sha256"]}
        summary = save_rnn_bundle(out, members, thresholds, mode, extra)
        summary["validation"] = score(val, preds, summary["au_thresholds"])
        summaries[f"T{length}"] = summary
        click.echo(f"rnn ensemble T{length} of {', '.join(members)}: validation total "
                   f"{summary['validation']['total']:.4f} -> {out}")
    write_json(report, summaries)
    provenance.write(provenance_path, __spec__.name, {"rnn_ensemble": e.model_dump(mode="json"),
                                                     "temporal": p.temporal.model_dump(mode="json")},
                     {"features": features_path, **{name: str(Path(members_dir) / name) for name in e.members}},
                     {"bundles": out_dir, "report": report})


if __name__ == "__main__":
    cli()
