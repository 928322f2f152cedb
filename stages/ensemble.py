"""``ensemble``: the students named in ``ensemble.members``, in one bundle."""
from __future__ import annotations

from pathlib import Path

import click

from stages.common import follows_out, friendly_errors, load, params_option, provenance_option, set_option, use_threads


@click.command("ensemble")
@params_option
@set_option
@click.option("--index", "index_dir", default=None, type=click.Path(file_okay=False),
              help="Folder of the build stage's indexes (default: build.out); its val.parquet tunes thresholds.")
@click.option("--students", "students_dir", default="models/students", show_default=True,
              type=click.Path(file_okay=False), help="Folder of the students' checkpoints (<name>.pt).")
@click.option("--out", default="models/ensemble.pt", show_default=True, type=click.Path(dir_okay=False),
              help="The model bundle: members' weights, label schema, alignment, AU thresholds.")
@click.option("--report", default="reports/ensemble.json", show_default=True, type=click.Path(dir_okay=False),
              help="Members, their checkpoints' hashes, the AU thresholds.")
@click.option("--of-teachers", "of_teachers", is_flag=True,
              help="The members are teachers (the study's control: an ensemble of as many teachers).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@provenance_option("ensemble")
@friendly_errors
@follows_out(report=".json")
def cli(params_path, index_dir, students_dir, out, report, of_teachers, quiet, provenance_path):
    """Average the members' probabilities (AU, EXPR) and VA expectations; AU thresholds
    0.5, or tuned per AU on the validation set (ensemble.au_thresholds: tuned)."""
    from tqdm import tqdm

    from pipeline.extraction.align import template_points
    from pipeline.core.errors import DataError
    from pipeline.core.index import FrameIndex
    from pipeline.core.labels import AU_THRESHOLD
    from pipeline.core.device import resolve_device
    from pipeline.inference.ensemble import distinct_checkpoints, load_student, save_bundle
    from pipeline.training.models import load_checkpoint
    from pipeline.inference.outputs import combine
    from pipeline.core.fileio import write_json
    from pipeline.inference.runner import load_models, predict_many
    from pipeline.evaluation.thresholds import tune_thresholds
    from pipeline.core import provenance

    from pipeline.build.params import BuildParams
    from pipeline.core.index import check_built_for
    from pipeline.core.schema import label_schema
    from pipeline.extraction.params import ExtractParams
    from pipeline.inference.params import EnsembleParams
    from pipeline.training.params import StudentParams

    p = load(params_path, EnsembleParams, ExtractParams, BuildParams)
    use_threads(p.threads)
    e = p.ensemble
    schema = label_schema(p.build.label_schema, p.build.aus)
    members = {name: str(Path(students_dir) / f"{name}.pt") for name in e.members}
    for name, path in members.items():
        if Path(out).resolve() == Path(path).resolve():
            raise DataError(f"--out {out}: is the checkpoint of ensemble member {name}, which this command reads: "
                            "refusing to write there (choose another path)")
    for name, path in members.items():
        if not Path(path).exists() and of_teachers:
            raise FileNotFoundError(f"{path}: checkpoint of ensemble member {name!r} not found")
        if not Path(path).exists():
            # only this message reads the students' names: no dependency of the bundle
            students = list(load(params_path, EnsembleParams, ExtractParams, BuildParams, StudentParams).students)
            if name not in students:
                raise DataError(f"ensemble.members: {name!r} is not a student (students: {', '.join(students)}): "
                                "add it under `students`, or leave it out of the members")
            raise FileNotFoundError(f"{path}: checkpoint of ensemble member {name!r} not found "
                                    f"(run `dvc repro train_student@{name}`)")
        model = load_checkpoint(path)[0] if of_teachers else load_student(path)[0]
        schema.require_same(model.schema, f"{path}: ensemble member {name}")
    distinct_checkpoints(members)  # before the tuning's work
    thresholds, mode = AU_THRESHOLD, f"fixed {AU_THRESHOLD}"
    if e.au_thresholds == "tuned":
        device = resolve_device(e.device)
        check_built_for(index_dir or p.build.out, schema)
        val = FrameIndex.read(Path(index_dir or p.build.out) / "val.parquet")
        with tqdm(total=len(val), desc="ensemble members", unit="face", disable=quiet) as bar:
            preds = predict_many(load_models(members, device, val.schema), val, device, e.batch, bar)
        thresholds = tune_thresholds(val.au, combine(list(preds.values()))["AU"])
        mode = "tuned per AU on the validation set"
    # predict finds and aligns faces exactly as the extraction did
    size, scale = p.extract.face_size, p.extract.template_scale
    alignment = {"size": size, "template_scale": scale, "template": template_points(size, scale).tolist(),
                 "detection": {"detect_size": p.extract.detect_size, "min_face": p.extract.min_face,
                               "min_prob": p.extract.min_prob, "block": p.extract.batch}}
    inputs = members | ({"build": index_dir or p.build.out} if e.au_thresholds == "tuned" else {})
    summary = save_bundle(out, members, thresholds, mode, alignment)
    write_json(report, summary)
    provenance.write(provenance_path, __spec__.name, {"ensemble": e.model_dump(mode="json"), "extract": {
        k: v for k, v in alignment.items() if k != "template"}}, inputs, {"bundle": out, "report": report})
    click.echo(f"ensemble of {', '.join(members)} (AU thresholds {mode}) -> {out}")


if __name__ == "__main__":
    cli()
