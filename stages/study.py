"""``mtaffect study``: the controlled study (docs/study.md): its DVC pipeline, run, report."""
from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path, PurePosixPath

import click
import yaml

from stages.common import GROUND_TRUTH, friendly_errors, load, params_option, use_threads, warn

HEADER = ("# The study's stages, written by `mtaffect study plan` from {params} (study, teacher, student,\n"
          "# students, ensemble): every arm x seed runs the project's stage commands with --set overrides.\n"
          "# Do not edit: change {params} and run `mtaffect study run` (docs/study.md).\n")
#: DVC's lines around each stage it runs (stage names as "<dvc.yaml>:<stage>").
STARTED = re.compile(r"^Running stage '(?:[^']*:)?([^']+)'")
ENDED = re.compile(r"^(Updating lock file|Running stage|Stage '|Restored stage|ERROR)")


def study_params(params_path: str):
    from pipeline.build.params import BuildParams
    from pipeline.extraction.params import ExtractParams, SourceParams
    from pipeline.inference.params import EnsembleParams
    from pipeline.study.params import StudyParams
    from pipeline.training.params import StudentParams, TrainParams

    return load(params_path, StudyParams, TrainParams, StudentParams, EnsembleParams, BuildParams, ExtractParams,
                SourceParams)


def write_plan(params_path: str):
    """``<study.out>/dvc.yaml`` from the params; returns the params, the runs and each stage's arm."""
    from pipeline.core.fileio import write_text
    from pipeline.study.plan import plan

    p = study_params(params_path)
    if not Path(".dvc").is_dir():  # the stages run from here (wdir): it must be the project's root
        raise click.ClickException(f"{Path.cwd()}: not the root of a DVC project (no .dvc folder): run the study "
                                   "from the project's root")
    params_path = project_path(params_path)
    stages, runs, arm_of = plan(p, params_path)
    check_test_videos(p, params_path)
    if p.study.seeds == 1:
        warn([f"{params_path}: study.seeds is 1: one seed has no spread, every verdict will be 'no verdict'"])
    path = Path(p.study.out) / "dvc.yaml"
    if path.parent.exists() and not path.parent.is_dir():
        raise click.ClickException(f"{params_path}: study.out: {path.parent} is a file, not a folder: choose another "
                                   "folder for the study")
    out = PurePosixPath(Path(p.study.out).as_posix())
    for tracked in pipeline_outputs():
        if out == tracked or tracked in out.parents or out in tracked.parents:
            raise click.ClickException(f"{params_path}: study.out: {out} overlaps {tracked}, an output of dvc.yaml "
                                       "(DVC would see it changed, or delete the study): choose a folder of its own")
    write_text(path, HEADER.format(params=params_path) + yaml.safe_dump({"stages": stages}, sort_keys=False, width=120))
    click.echo(f"{path}: {len(stages)} stages, {len(runs)} scored runs ({', '.join(p.study.arms)} x "
               f"{p.study.seeds} seeds)")
    return p, runs, arm_of


def pipeline_outputs() -> list[PurePosixPath]:
    """The outputs of the main pipeline's stages (dvc.yaml), as DVC reads them."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    if not Path("dvc.yaml").is_file():
        return []
    try:
        with Repo(".") as repo:
            return sorted({PurePosixPath(o.def_path) for s in repo.stage.load_file("dvc.yaml") for o in s.outs})
    except DvcException:  # a broken dvc.yaml: DVC names it when the study runs
        return []


def project_path(params_path: str) -> str:
    """The params file as the stages name it: relative to the project's root (so the plan
    works in every clone), never outside it."""
    path = Path(params_path)
    if not path.is_absolute():
        return params_path
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        raise click.ClickException(f"{params_path}: outside the project ({Path.cwd()}): the study's stages must "
                                   "read a params file inside it (they run in every clone); copy it in") from None


def check_test_videos(p, params_path: str) -> None:
    """Refuse, before any training, a split that leaves no test video (when the build is there)."""
    import pyarrow.parquet as pq

    val = Path(p.build.out) / "val.parquet"
    if not val.is_file():
        return
    videos = len(set(pq.read_table(val, columns=["video"]).column("video").to_pylist()))
    if p.teacher.selection_videos >= videos:
        raise click.ClickException(f"{params_path}: teacher.selection_videos {p.teacher.selection_videos} of the "
                                   f"{videos} validation videos in {val}: no video left to test on (make it smaller)")


def read_times(path: Path) -> dict[str, float]:
    """The stage times ``study run`` measured (an unreadable file is said and left out)."""
    from pipeline.study.report import stage_times

    times, problem = stage_times(path)
    if problem:
        warn([problem])
    return times


@click.group("study")
def cli():
    """The controlled study: each of the paper's claims tested against its control arm,
    over several training seeds, on test videos no choice has seen (docs/study.md)."""


@cli.command("plan")
@params_option
@friendly_errors
def plan_cmd(params_path):
    """Write the study's DVC pipeline (<study.out>/dvc.yaml) from params.yaml."""
    write_plan(params_path)


@cli.command("run", context_settings={"ignore_unknown_options": True})
@params_option
@click.argument("dvc_args", nargs=-1, type=click.UNPROCESSED)
@friendly_errors
def run_cmd(params_path, dvc_args):
    """Plan, run every arm with `dvc repro <study.out>/dvc.yaml` (a finished run is never
    recomputed; a failed one does not stop the others), time each stage, and report.
    Extra arguments go to dvc repro (e.g. --dry)."""
    from pipeline.core.fileio import write_json

    p, _, _ = write_plan(params_path)
    times_path = Path(p.study.out) / "times.json"
    times = read_times(times_path)
    command = [sys.executable, "-m", "dvc", "repro", "--keep-going", str(Path(p.study.out) / "dvc.yaml"), *dvc_args]
    stage, started = None, None
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) as dvc:
        for line in dvc.stdout:
            click.echo(line, nl=False)
            if stage and ENDED.match(line):
                times[stage] = round(time.monotonic() - started, 1)
                write_json(times_path, dict(sorted(times.items())))
                stage = None
            if match := STARTED.match(line):
                stage, started = match.group(1), time.monotonic()
    failed = dvc.returncode != 0
    if "--dry" in dvc_args:
        return
    report_of(params_path)
    if failed:
        raise click.ClickException(f"dvc repro {p.study.out}/dvc.yaml failed (exit {dvc.returncode}): see DVC's "
                                   "message above; the report leaves out what did not finish (rerun once fixed: "
                                   "finished runs are kept)")


def report_of(params_path: str, out: str = "reports/study", ground_truth: str = GROUND_TRUTH) -> None:
    from pipeline.core.fileio import check_output_folder, replacing_folder, write_json, write_text
    from pipeline.core.schema import label_schema
    from pipeline.study.figures import claim_figure
    from pipeline.study.markdown import render
    from pipeline.study.plan import plan
    from pipeline.study.report import study_report

    p = study_params(params_path)
    use_threads(p.threads)
    _, runs, arm_of = plan(p, params_path)
    schema = label_schema(p.build.label_schema, p.build.aus)
    read_times(Path(p.study.out) / "times.json")  # says what is wrong with it (the report leaves it out)
    report = study_report(p, runs, arm_of, schema, ground_truth)
    warn([f"{arm}: {', '.join(entry['missing'])} not scored (their stages of {p.study.out}/dvc.yaml have not run or "
          f"failed): reported over {entry['seeds']}" for arm, entry in report["arms"].items() if entry["missing"]]
         + report["notes"])
    check_output_folder(out, "study.json", own=["*.png", "*.md", "*.json"])
    with replacing_folder(out) as work:
        names = []
        for claim in report["claims"]:
            names.append(f"{claim['arm']}_vs_{claim['control']}.png")
            claim_figure(report, claim, Path(work) / names[-1])
        write_json(Path(work) / "study.json", report)
        write_text(Path(work) / "study.md", render(report, names))
    for c in report["claims"]:
        click.echo(f"{c['claim']}: {c['total']['verdict']} ({c['total']['seeds']})")
    click.echo(f"-> {out}/study.md")


@cli.command("report")
@params_option
@click.option("--out", default="reports/study", show_default=True, type=click.Path(file_okay=False),
              help="Folder of study.md, study.json and the figures.")
@click.option("--ground-truth", "ground_truth", default=GROUND_TRUTH, show_default=True,
              help="The synthetic data's true labels: every arm also scored on every task of every test frame "
                   "(skipped when absent or when it knows none of the test frames, as with real data).")
@friendly_errors
def report_cmd(params_path, out, ground_truth):
    """The study's report from what its runs recorded (no training)."""
    from pipeline.core.fileio import special_file

    if ground_truth != GROUND_TRUTH and not Path(ground_truth).is_file():  # only the default may be absent
        what = special_file(ground_truth) or ("a folder" if Path(ground_truth).is_dir() else "no such file")
        raise click.BadParameter(f"{ground_truth}: {what}" + (", not a file" if what != "no such file" else ""),
                                 param_hint="--ground-truth")
    report_of(params_path, out, ground_truth)


if __name__ == "__main__":
    cli()
