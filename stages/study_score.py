"""``study_score``: an arm of the study on the test videos, one table per seed (docs/study.md)."""
from __future__ import annotations

from pathlib import Path

import click

from stages.common import friendly_errors, load, params_option, provenance_option, use_threads


@click.command("study-score")
@params_option
@click.option("--index", "index_dir", default=None, type=click.Path(file_okay=False),
              help="Folder of the build stage's indexes (default: build.out).")
@click.option("--kind", type=click.Choice(["checkpoint", "bundle", "tasks", "probe", "baseline"]), required=True,
              help="What is scored: each --model, a network's checkpoint or an ensemble's bundle; each three "
                   "--model, networks of AU, EXPR and VA (tasks), each scored on its own task; or, fitted on "
                   "--train-index, the pixel linear probe (one per --seed) or the trivial baseline (no AU, the "
                   "majority class, the mean VA).")
@click.option("--train-index", "train_index", default=None, type=click.Path(file_okay=False),
              help="The task sets the probe and the baseline are fitted on (default: --index).")
@click.option("--seed", "seeds", multiple=True, type=int, help="The probe's seed, one per --out (repeatable).")
@click.option("--weighted", is_flag=True, help="Fit the probe with each training frame weighted by its draws per "
              "epoch in --train-index (the balancing the networks sample by); default: every frame once.")
@click.option("--name", required=True, help="The arm: the model column of the tables.")
@click.option("--model", "models", multiple=True, type=click.Path(dir_okay=False),
              help="A checkpoint or bundle, one per seed (three for --kind tasks; repeatable; none for the baseline).")
@click.option("--out", "outs", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="Its predictions on the test videos (Parquet), one per --model (per three for --kind tasks), in "
                   "their order.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@provenance_option("study_score", per_name=True)
@friendly_errors
def cli(params_path, index_dir, kind, train_index, seeds, weighted, name, models, outs, quiet, provenance_path):
    """Predict every frame of the test videos (the validation videos after the first
    teacher.selection_videos, which no choice has seen) with each model of an arm."""
    import pyarrow as pa

    from pipeline.build.params import BuildParams
    from pipeline.core import provenance
    from pipeline.core.device import resolve_device
    from pipeline.core.errors import ParamsError
    from pipeline.core.index import FrameIndex, check_built_for
    from pipeline.core.labels import TASKS
    from pipeline.core.schema import label_schema
    from pipeline.core.tables import write_parquet
    from pipeline.evaluation.params import EvaluateParams
    from pipeline.study.scores import predictions, test_split
    from pipeline.training.params import TrainParams

    triples = [list(models[i:i + len(TASKS)]) for i in range(0, len(models), len(TASKS))]
    per_out = {"checkpoint": models, "bundle": models, "tasks": triples, "probe": seeds, "baseline": [None]}[kind]
    if (len(per_out) != len(outs) or (kind in ("probe", "baseline") and models)
            or (kind == "tasks" and len(models) % len(TASKS))):
        raise click.UsageError(f"--kind {kind}: {len(models)} --model, {len(seeds)} --seed and {len(outs)} --out: "
                               "give one --out per --model (per three for tasks, per --seed for the probe; one for the "
                               "baseline)")
    p = load(params_path, BuildParams, TrainParams, EvaluateParams)
    use_threads(p.threads)
    index_dir = Path(index_dir or p.build.out)
    check_built_for(index_dir, label_schema(p.build.label_schema, p.build.aus))
    for model in models:
        if not Path(model).exists():
            raise FileNotFoundError(f"{model}: not found (run its stage of the study first)")
    if p.teacher.selection_videos is None:
        raise ParamsError(f"{params_path}: teacher.selection_videos is null: the study's test videos are the "
                          "validation videos after the first n; set it")
    test = test_split(FrameIndex.read(index_dir / "val.parquet"), p.teacher.selection_videos, str(index_dir / "val.parquet"))
    device = resolve_device(p.evaluate.device)
    fitted = Path(train_index or index_dir)
    train = {t: FrameIndex.read(fitted / f"train_{t}.parquet") for t in TASKS} if kind in ("probe", "baseline") else None
    for what, out in zip(per_out, outs):
        table = predictions(name, test, device, p.evaluate.batch, what if kind == "checkpoint" else None,
                            what if kind == "bundle" else None, train, what if kind == "probe" else None, not quiet,
                            weighted, what if kind == "tasks" else None)
        write_parquet(pa.Table.from_pandas(table, preserve_index=False), out)
        click.echo(f"{name}: {len(test)} test frames of {len(set(test.video))} videos -> {out}")
    inputs = {"build": index_dir, **({"train_index": fitted} if train else {}),
              **{f"model {i}": m for i, m in enumerate(models)}}
    provenance.write(provenance_path or provenance.record_path("study_score", name), __spec__.name,
                     {"kind": kind, "seeds": list(seeds), "weighted": weighted, "selection_videos": p.teacher.selection_videos,
                      "batch": p.evaluate.batch}, inputs, {f"predictions {i}": o for i, o in enumerate(outs)})


if __name__ == "__main__":
    cli()
