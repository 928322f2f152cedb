"""``evaluate``: every model and the baselines on the validation set, one code path."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import click

from pipeline.core.fileio import check_output_folder, replacing_folder, write_json
from stages.common import (follows_out, friendly_errors, GROUND_TRUTH, load, params_option, provenance_option, set_option,
                           use_threads)


@contextmanager
def all_or_none(*paths: str):
    """Yield hidden siblings of ``paths`` to write; they move into place together once all
    are written, so a failure halfway (a full disk) leaves none of this run's outputs."""
    staged = [Path(path).with_name(f".{Path(path).name}.new") for path in paths]
    try:
        yield staged
        for path, new in zip(paths, staged):
            os.replace(new, path)
    except OSError as e:  # named by the file the user gave
        names = [str(new) for new in staged]
        if e.filename not in names:
            raise
        raise OSError(e.errno, e.strerror, paths[names.index(e.filename)]) from None
    finally:
        for new in staged:
            new.unlink(missing_ok=True)


@click.command("evaluate")
@params_option
@set_option
@click.option("--index", "index_dir", default=None, type=click.Path(file_okay=False),
              help="Folder of the build stage's indexes (default: build.out).")
@click.option("--teacher", default="models/teacher.pt", show_default=True, help="The teacher checkpoint.")
@click.option("--students", "students_dir", default="models/students", show_default=True,
              help="Folder of the students' checkpoints (<name>.pt, one per entry of `students`).")
@click.option("--ensemble", default="models/ensemble.pt", show_default=True, help="The ensemble bundle.")
@click.option("--features", "features", default="data/features.h5", show_default=True,
              help="The temporal models' input features.")
@click.option("--rnn-teacher", "rnn_teacher", default="models/rnn/teacher", show_default=True,
              help="Folder of the temporal teachers, T<length>.pt.")
@click.option("--rnn-ensemble", "rnn_ensemble", default="models/rnn/ensemble", show_default=True,
              help="Folder of the temporal ensembles' bundles, T<length>.pt.")
@click.option("--soft-labels", "soft_labels", default="data/soft_labels.h5", show_default=True,
              help="The soft-label cache (its teacher must be --teacher; its quality is reported).")
@click.option("--ground-truth", "ground_truth", default=GROUND_TRUTH, show_default=True,
              help="Synthetic data's complete labels (skipped when absent or about other frames).")
@click.option("--predictions", default="reports/val_predictions.parquet", show_default=True,
              help="Long table: one row per validation frame and model.")
@click.option("--out", default="reports/evaluation.json", show_default=True, help="Metrics per model.")
@click.option("--soft-label-report", "soft_label_report", default="reports/soft_label_quality.json",
              show_default=True, help="The soft labels against the ground truth, per source and task.")
@click.option("--plots", default="reports/plots/evaluate", show_default=True, help="Folder for PNG and DVC plot data.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@provenance_option("evaluate")
@friendly_errors
@follows_out(predictions=".parquet", soft_label_report=".json", plots="")
def cli(params_path, index_dir, teacher, students_dir, ensemble, features, rnn_teacher, rnn_ensemble, soft_labels,
        ground_truth, predictions, out, soft_label_report, plots, quiet, provenance_path):
    """Score the teacher, each student, the mean of the students and the ensemble with the
    ABAW metrics, beside the trivial baseline and a pixel linear probe.

    Then the temporal teacher and ensemble of every length in temporal.sequence_lengths,
    each ensemble with paired intervals against the CNN ensemble and its smoothed outputs.

    Writes the per-frame predictions, evaluation.json (computed from exactly those rows,
    with bootstrap intervals over videos and paired intervals against the teacher), the
    soft-label quality report, and plots: the comparison of the models (the paper's
    Figure 5), the temporal models by sequence length (its Figure 6), per-AU F1 and
    expression confusion matrices.
    """
    import pyarrow as pa

    from pipeline.core.index import FrameIndex
    from pipeline.core.device import resolve_device
    from pipeline.core.errors import DataError
    from pipeline.evaluation.evaluate import Models, check_distinct, check_same_teacher, evaluate
    from pipeline.core.labels import TASKS
    from pipeline.evaluation.figures import comparison_plot, evaluation_plots, sequence_length_plot
    from pipeline.core import provenance
    from pipeline.evaluation.scoring import evaluate_predictions
    from pipeline.training.softlabels import SoftLabels
    from pipeline.core.tables import write_parquet
    from pipeline.evaluation.truth import read_ground_truth, soft_label_quality, with_true_labels

    from pipeline.build.params import BuildParams
    from pipeline.core.index import check_built_for
    from pipeline.core.schema import label_schema
    from pipeline.evaluation.params import EvaluateParams
    from pipeline.temporal.params import TemporalParams
    from pipeline.training.params import StudentParams

    p = load(params_path, EvaluateParams, StudentParams, TemporalParams, BuildParams)
    use_threads(p.threads)
    e = p.evaluate
    index_dir = Path(index_dir or p.build.out)
    check_built_for(index_dir, label_schema(p.build.label_schema, p.build.aus))
    check_output_folder(plots, "comparison.csv", own=["*.csv", "*.png"], option="--plots")  # replaced whole
    train = {t: FrameIndex.read(index_dir / f"train_{t}.parquet") for t in TASKS}
    val = FrameIndex.read(index_dir / "val.parquet")
    if not len(val):
        raise DataError(f"{index_dir / 'val.parquet'}: holds no validation frame: nothing to score (rerun the build)")
    students = {name: str(Path(students_dir) / f"{name}.pt") for name in p.students}
    check_distinct({name: path for name, path in {"teacher": teacher, **students}.items() if Path(path).exists()})
    lengths = p.temporal.sequence_lengths
    models = Models(teacher=teacher, students=students, ensemble=ensemble, features=features,
                    rnn_teachers={n: str(Path(rnn_teacher) / f"T{n}.pt") for n in lengths},
                    rnn_ensembles={n: str(Path(rnn_ensemble) / f"T{n}.pt") for n in lengths})
    for path in (teacher, *students.values(), ensemble, features, *models.rnn_teachers.values(),
                 *models.rnn_ensembles.values()):
        if not Path(path).exists():
            raise FileNotFoundError(f"{path}: not found (run `dvc repro` up to the stage that writes it)")
    cache = SoftLabels(soft_labels)
    check_same_teacher(models, cache.attrs["teacher_sha256"])

    table, evaluation = evaluate(models, train, val, resolve_device(e.device), e.batch, e.au_thresholds,
                                 e.bootstrap, e.seed, progress=not quiet)
    gt = read_ground_truth(ground_truth, val.uid)
    if gt is not None:  # the same rows scored against the complete true labels
        complete = evaluate_predictions(with_true_labels(table, gt, val.schema), n_boot=e.bootstrap, seed=e.seed,
                                        means={"students_mean": list(students)}, schema=val.schema)
        for name, result in complete.items():
            evaluation[name]["ground_truth"] = {k: v for k, v in result.items() if k != "ci"}
    quality = soft_label_quality(cache, train, ground_truth, cache.attrs.get("va_centres", "centres"))
    inputs = {"build": index_dir, "teacher": teacher, "ensemble": ensemble, "soft_labels": soft_labels,
              "features": features, "rnn_teacher": rnn_teacher, "rnn_ensemble": rnn_ensemble,
              **{f"student {name}": path for name, path in students.items()}}
    if Path(ground_truth).exists():
        inputs["ground_truth"] = ground_truth
    with all_or_none(predictions, out, soft_label_report) as (rows_file, out_file, quality_file), \
            replacing_folder(plots) as work:  # whole or not at all, even when killed while drawing
        write_parquet(pa.Table.from_pandas(table, preserve_index=False), rows_file)
        write_json(out_file, evaluation)
        write_json(quality_file, quality or {"note": "no ground truth for these frames (real data)"})
        evaluation_plots(table, evaluation, work)
        comparison_plot(evaluation, work)
        sequence_length_plot(evaluation, work)
    provenance.write(provenance_path, __spec__.name, {"evaluate": e.model_dump(mode="json"), "students": list(p.students),
                                                     "temporal": p.temporal.model_dump(mode="json")}, inputs,
                     {"predictions": predictions, "evaluation": out, "soft_label_quality": soft_label_report,
                      "plots": plots})
    for name, r in evaluation.items():
        if "mean" in r:
            click.echo(f"{name:>17}: total {r['mean']['abaw_total']:.4f} "
                       f"(spread {r['spread_across_members']['abaw_total']:.4f})")
            continue
        au, ex, va = r["AU"], r["EXPR"], r["VA"]
        vs = r.get("vs_teacher", {}).get("intervals", {}).get("abaw_total")
        paired = f"  vs teacher [{vs[0]:+.3f}, {vs[1]:+.3f}]" if vs else ""
        click.echo(f"{name:>17}: AU {au['score']:.4f}  EXPR {ex['score']:.4f}  CCC V {va['ccc_valence']:.4f} "
                   f"A {va['ccc_arousal']:.4f}{paired}" if au and ex and va else f"{name}: {r}")


if __name__ == "__main__":
    cli()
