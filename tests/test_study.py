"""The study's verdict rule on made-up per-seed tables, and its paired interval against a
brute-force resampling of the same draws."""
import shutil
import subprocess

import numpy as np
import pytest

from pipeline.study.verdicts import DOES_NOT_HOLD, HOLDS, NO_VERDICT, WITHIN_NOISE, paired_interval, verdict


@pytest.mark.parametrize("differences, interval, expected, seeds, why", [
    ({0: 0.03, 1: 0.02, 2: 0.04}, (0.01, 0.05), HOLDS, "3 of 3 seeds", "every seed agrees"),
    ({0: 0.03, 1: 0.02, 2: 0.04}, (0.0, 0.05), WITHIN_NOISE, "3 of 3 seeds", "touches 0"),  # touching 0
    ({0: 0.05, 1: -0.01, 2: 0.06}, (0.005, 0.07), WITHIN_NOISE, "3 of 3 seeds", "1 of 3 seeds disagree"),
    ({0: -0.03, 1: -0.02, 2: 0.01}, (-0.05, -0.001), DOES_NOT_HOLD, "3 of 3 seeds", "control is better"),
    ({0: 0.01, 1: -0.01, 2: 0.02}, (-0.01, 0.03), WITHIN_NOISE, "3 of 3 seeds", "holds or touches 0"),
    ({0: 0.03, 1: None, 2: 0.04}, (0.01, 0.05), HOLDS, "2 of 3 seeds", "every seed agrees"),  # a seed missing
    ({0: 0.03, 1: None, 2: float("nan")}, (0.01, 0.05), NO_VERDICT, "1 of 3 seeds", "too few"),
    ({0: 0.03, 1: 0.02}, None, NO_VERDICT, "2 of 3 seeds", "too few"),
])
def test_each_verdict_follows_from_the_numbers(differences, interval, expected, seeds, why):
    v = verdict(differences, interval, 3)
    assert (v.verdict, v.seeds) == (expected, seeds) and why in v.why
    got = [d for d in differences.values() if d is not None and np.isfinite(d)]
    assert v.mean == pytest.approx(np.mean(got))
    assert v.sd == (pytest.approx(np.std(got, ddof=1)) if len(got) > 1 else None)


def test_the_paired_interval_resamples_the_same_videos_for_every_seed_and_both_arms():
    rng = np.random.default_rng(3)
    videos, n, seed = 7, 50, 11

    def counts():
        total = rng.integers(5, 40, videos)
        return {"hits": rng.binomial(total, rng.uniform(0.2, 0.8)), "total": total}

    arm, control = {0: counts(), 1: counts(), 2: counts()}, {0: counts(), 1: counts(), 3: counts()}
    rate = lambda s: s["hits"] / s["total"]  # noqa: E731 - a metric of summed per-video statistics
    low, high = paired_interval(arm, control, rate, n=n, seed=seed)
    draws = np.random.default_rng(seed).integers(0, videos, size=(n, videos))  # bootstrap_ci's draws
    replicates = [np.mean([rate({k: v[d].sum() for k, v in arm[s].items()})
                           - rate({k: v[d].sum() for k, v in control[s].items()}) for s in (0, 1)])  # seeds of both
                  for d in draws]
    assert (low, high) == pytest.approx(tuple(np.percentile(replicates, [2.5, 97.5])))
    assert paired_interval({0: counts()}, {1: counts()}, rate) is None  # no seed in common


# --- the plan: budgets, seeds, stages ------------------------------------------------------

from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from pipeline.core.catalogue import check_all  # noqa: E402
from pipeline.core.errors import DataError, ParamsError  # noqa: E402
from pipeline.core.params import load  # noqa: E402
from pipeline.core.schema import ABAW2020  # noqa: E402
from pipeline.evaluation.scoring import PRED_VA, thr_au  # noqa: E402
from pipeline.inference.params import EnsembleParams  # noqa: E402
from pipeline.study.params import ARMS, StudyParams  # noqa: E402
from pipeline.study.plan import equal_budget, plan  # noqa: E402
from pipeline.study.report import study_report  # noqa: E402
from pipeline.study.markdown import render  # noqa: E402
from pipeline.build.params import BuildParams  # noqa: E402
from pipeline.extraction.params import ExtractParams, SourceParams  # noqa: E402
from pipeline.training.params import StudentParams, TrainParams  # noqa: E402
from tests.conftest import ROOT  # noqa: E402


@pytest.mark.parametrize("teacher, student, epochs, steps", [
    ((10, 150), (5, 100), 16, 125),  # 2000 steps: 16 epochs of 125 are nearest the teacher's 150
    ((1, 4), (1, 4), 2, 4),
    ((8, 100), (3, 100), 11, 100),  # the teacher's own epoch length when it divides
    ((3, 7), (1, 5), 13, 2),  # 26 steps: epochs of 26, 13, 2 or 1 steps; 2 is the nearest 7
])
def test_the_equal_budget_teacher_trains_exactly_teacher_plus_student_steps(teacher, student, epochs, steps):
    b = equal_budget(*teacher, *student)
    assert (b.long_epochs, b.long_steps_per_epoch) == (epochs, steps)
    assert b.long_steps == teacher[0] * teacher[1] + student[0] * student[1] == b.teacher_steps + b.student_steps


def params_file(tmp_path, **changes) -> Path:
    """The project's params.yaml with ``section__key=value`` changes."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for key, value in changes.items():
        section, name = key.split("__")
        raw[section][name] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def study_params(tmp_path, **changes):
    return load(params_file(tmp_path, **changes), StudyParams, TrainParams, StudentParams, EnsembleParams, BuildParams,
                ExtractParams, SourceParams)


def test_the_plan_trains_each_teacher_once_and_gives_both_ensembles_as_many_members(tmp_path):
    p = study_params(tmp_path, study__seeds=2)
    stages, runs, arm_of = plan(p)
    K, members = 2, p.ensemble.members
    assert {(r.arm, r.seed) for r in runs} == {(a, k) for a in ARMS for k in range(K)}
    teachers = sorted(n for n in stages if n.startswith("teachers_seed"))
    assert teachers == sorted(f"teachers_seed{s}" for s in range(K * len(members)))  # seeds 0..5, each once
    for k in range(K):
        te, se = stages[f"teacher_ensemble_seed{k}"]["cmd"], stages[f"student_ensemble_seed{k}"]["cmd"]
        assert f"ensemble.members=[{', '.join(f'seed{k + K * j}' for j in range(len(members)))}]" in te
        assert f"ensemble.members=[{', '.join(members)}]" in se and "--of-teachers" in te
        student = stages[f"students_seed{k}_{members[0]}"]
        assert f"students.{members[0]}.seed={p.students[members[0]].seed + k}" in student["cmd"]
        assert f"study/data/soft_labels/seed{k}.h5" in student["deps"] and "students.s1" in student["params"]
        assert "students.s1.distill_unlabelled=false" in stages[f"student_no_fill_seed{k}"]["cmd"]
        no_distill = stages[f"student_no_distill_seed{k}"]["cmd"]
        assert "students.s1.lam=1" in no_distill and "distill_unlabelled=false" in no_distill
        long = stages[f"teacher_long_seed{k}"]["cmd"]  # the demo: 10 x 150 + 5 x 100 = 16 x 125
        assert f"teacher.seed={k}" in long and "teacher.epochs=16" in long and "teacher.steps_per_epoch=125" in long
    assert all(s["wdir"] == ".." and "stages/common.py" in s["deps"] for s in stages.values())
    assert set(arm_of.values()) <= {*ARMS, "scoring"} and set(arm_of) == set(stages)
    # both probes fit each frame by its draws: the balanced task sets' weights, the imbalanced ones' (all 1)
    probes = {a: stages[f"score_{a}"]["cmd"] for a in ("pixel_probe", "pixel_probe_imbalanced")}
    assert all("--weighted" in c for c in probes.values())
    assert f"--train-index {p.build.out} " in probes["pixel_probe"]
    assert "--train-index study/data/build_imbalanced " in probes["pixel_probe_imbalanced"]
    for k in range(K):  # a network per task: the teacher's seed and steps, the other tasks' weights 0
        for task, weights in (("AU", "{AU: 1, EXPR: 0, VA: 0}"), ("VA", "{AU: 0, EXPR: 0, VA: 1}")):
            cmd = stages[f"single_task_{task}_seed{k}"]["cmd"]
            assert f"'teacher.task_weights={weights}'" in cmd and f"teacher.seed={k}" in cmd and "epochs" not in cmd
    scored = stages["score_single_task"]["cmd"]
    assert "--kind tasks --name single_task --model study/models/single_task/AU/seed0.pt --model " \
           "study/models/single_task/EXPR/seed0.pt --model study/models/single_task/VA/seed0.pt --out " in scored


@pytest.mark.parametrize("changes, message", [
    ({"teacher__selection_videos": None}, "teacher.selection_videos is null"),
    ({"teacher__steps_per_epoch": None}, "teacher.steps_per_epoch is null"),
])
def test_what_the_study_needs_of_the_params_is_one_line(tmp_path, changes, message):
    p = study_params(tmp_path, **changes)
    with pytest.raises(ParamsError, match=message):
        plan(p)


@pytest.mark.parametrize("changes, message", [
    ({"study__seeds": 0}, "study.seeds: must be >= 1, got 0"),
    ({"study__arms": ["teacher", "students"]}, r"study.arms.1: .*'teacher_long'"),
    ({"study__arms": ["teacher", "teacher"]}, "'teacher' listed twice"),
])
def test_bad_study_params_are_named(tmp_path, changes, message):
    with pytest.raises(ParamsError, match=message):
        check_all(params_file(tmp_path, **changes))


# --- the report: from made-up predictions to the verdicts --------------------------------------

def save(table: pd.DataFrame, path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(path)


def predictions(rng, videos: int, skill: float, model: str = "m") -> pd.DataFrame:
    """Frames of ``videos`` videos, labels drawn at random, predictions right with
    probability ``skill`` (so a better arm scores higher on every task)."""
    n, s = videos * 20, ABAW2020
    df = pd.DataFrame({"video": np.repeat([f"v{i:02d}" for i in range(videos)], 20), "model": model})
    au = rng.integers(0, 2, (n, len(s.aus)))
    expr = rng.integers(0, len(s.expressions), n)
    va = rng.uniform(-1, 1, (n, 2))
    right = rng.random((n, 1)) < skill
    for j, name in enumerate(s.aus):
        df[name] = au[:, j]
        df[s.au_probs[j]] = np.where(right[:, 0], au[:, j], 1 - au[:, j]).astype(float)
        df[thr_au(s)[j]] = 0.5
    df["expr"] = expr
    guess = np.where(right[:, 0], expr, (expr + 1) % len(s.expressions))
    for k, name in enumerate(s.expr_probs):
        df[name] = (guess == k).astype(float)
    df["valence"], df["arousal"] = va[:, 0], va[:, 1]
    noisy = va + rng.normal(0, 1.5 * (1 - skill), va.shape)
    df[PRED_VA[0]], df[PRED_VA[1]] = noisy[:, 0], noisy[:, 1]
    return df


def test_the_report_says_what_the_numbers_say_and_never_hides_a_missing_seed(tmp_path):
    p = study_params(tmp_path, study__seeds=3, study__arms=["teacher", "student"], study__bootstrap=50)
    _, runs, arm_of = plan(p)
    rng = np.random.default_rng(0)
    skill = {"teacher": 0.6, "student": 0.8}
    for r in runs:
        if (r.arm, r.seed) != ("student", 2):  # that run failed
            save(predictions(rng, 12, skill[r.arm] + 0.02 * r.seed, r.arm), r.scores)
    save(predictions(rng, 12, 0.0, "baseline"), tmp_path / "study/scores/baseline.parquet")
    report = study_report(p, runs, arm_of, ABAW2020)
    assert report["arms"]["student"]["missing"] == ["seed 2"] and report["arms"]["student"]["seeds"] == "2 of 3 seeds"
    (claim,) = report["claims"]
    assert (claim["arm"], claim["control"]) == ("student", "teacher")
    t = report["arms"]["teacher"]["total"]["per_seed"]
    s = report["arms"]["student"]["total"]["per_seed"]
    assert claim["total"]["differences"] == {"0": pytest.approx(s["0"] - t["0"]), "1": pytest.approx(s["1"] - t["1"]),
                                             "2": None}
    assert claim["total"]["seeds"] == "2 of 3 seeds" and claim["total"]["verdict"] == HOLDS  # a clear gain
    assert report["arms"]["teacher"]["total"]["mean"] == pytest.approx(np.mean(list(t.values())))
    text = render(report, [])
    assert "2 of 3 seeds" in text and "**holds**" in text and "a student beats its teacher" in text



def test_every_planned_command_takes_the_options_it_is_given(tmp_path):
    import importlib
    import re
    import shlex

    stages, _, _ = plan(study_params(tmp_path, study__seeds=2))
    for name, stage in stages.items():
        tokens = shlex.split(stage["cmd"])
        cli = importlib.import_module(re.match(r"python -m (stages\.\w+)", stage["cmd"]).group(1)).cli
        options = {o for p in cli.params for o in getattr(p, "opts", [])}
        given = {t for t in tokens if t.startswith("--")}
        assert given <= options, f"{name}: {sorted(given - options)} not options of {cli.name}"


@pytest.mark.parametrize("out", ["", ".", "./", "../elsewhere", "/tmp/study", "my study", ".git", ".dvc/tmp/st"])
def test_the_study_folder_is_a_folder_of_its_own_inside_the_project(tmp_path, out):
    with pytest.raises(ParamsError, match="study.out: must"):
        study_params(tmp_path, study__out=out)  # "" or "." would put its dvc.yaml over the project's


def test_another_params_file_is_the_one_every_stage_reads_and_tracks(tmp_path):
    p = study_params(tmp_path, study__seeds=1)
    stages, _, _ = plan(p, "other.yaml")
    assert all("--params other.yaml" in s["cmd"] and list(s["params"][0]) == ["other.yaml"] for s in stages.values())
    with pytest.raises(ParamsError, match=r"^other.yaml: teacher.selection_videos is null"):
        plan(study_params(tmp_path, teacher__selection_videos=None), "other.yaml")



def test_the_written_plan_names_the_params_file_it_came_from(tmp_path, monkeypatch):
    from stages.study import write_plan

    monkeypatch.chdir(tmp_path)
    (tmp_path / ".dvc").mkdir()
    params_file(tmp_path, study__seeds=1).rename(tmp_path / "other.yaml")
    write_plan(str(tmp_path / "other.yaml"))  # named by its absolute path: written relative to the project
    written = (tmp_path / "study/dvc.yaml").read_text()
    header = [line for line in written.splitlines() if line.startswith("#")]
    assert "from other.yaml (study," in header[0] and "change other.yaml and run" in header[2]
    assert "params.yaml" not in "\n".join(header) and str(tmp_path) not in written


def test_a_plan_outside_a_project_or_over_a_file_is_refused_in_one_line(tmp_path, monkeypatch):
    import click

    from stages.study import write_plan

    (tmp_path / "project").mkdir()
    monkeypatch.chdir(tmp_path / "project")
    params = params_file(tmp_path, study__seeds=1)  # tmp_path/params.yaml: outside the project
    with pytest.raises(click.ClickException, match=r"project: not the root of a DVC project \(no .dvc folder\)"):
        write_plan(str(params))
    (tmp_path / "project" / ".dvc").mkdir()
    with pytest.raises(click.ClickException, match=r"params.yaml: outside the project .*: the study's stages must read"):
        write_plan(str(params))
    params_file(tmp_path / "project", study__seeds=1, study__out="mine.txt")
    params.unlink()
    (tmp_path / "project" / "mine.txt").write_text("the user's")
    with pytest.raises(click.ClickException, match=r"^params.yaml: study.out: mine.txt is a file, not a folder"):
        write_plan("params.yaml")
    assert (tmp_path / "project" / "mine.txt").read_text() == "the user's"
    assert sorted(p.name for p in (tmp_path / "project").iterdir()) == [".dvc", "mine.txt", "params.yaml"]
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "project" / "dvc.yaml")  # the pipeline's outputs are no study folder
    subprocess.run(["git", "init", "-q"], cwd=tmp_path / "project", check=True)
    for out, tracked in (("data/build", "data/build"), ("data/build/study", "data/build"), ("models", "models/ensemble.pt")):
        params_file(tmp_path / "project", study__seeds=1, study__out=out)
        with pytest.raises(click.ClickException, match=rf"study.out: {out} overlaps {tracked}, an output of dvc.yaml"):
            write_plan("params.yaml")
    assert not (tmp_path / "project" / "data").exists() and not (tmp_path / "project" / "models").exists()


def test_damaged_or_foreign_run_records_are_named_never_a_traceback(tmp_path):
    from pipeline.core.errors import DataError
    from pipeline.study.report import stage_times

    p = study_params(tmp_path, study__seeds=2, study__arms=["teacher", "student"], study__bootstrap=20)
    _, runs, arm_of = plan(p)
    rng = np.random.default_rng(1)
    for r in runs:
        save(predictions(rng, 4, 0.7, r.arm), r.scores)
    teacher, student = (next(r.scores for r in runs if r.arm == a and r.seed == 0) for a in ("teacher", "student"))
    Path(student).write_bytes(Path(teacher).read_bytes())  # the teacher's table copied over the student's
    with pytest.raises(DataError, match=f"{student}: not student's predictions .* of \\['teacher'\\]"):
        study_report(p, runs, arm_of, ABAW2020)
    table = predictions(rng, 4, 0.7, "student")
    table.loc[3, "pred_valence"] = np.nan
    table.to_parquet(student)
    with pytest.raises(DataError, match=f"{student}: predictions that are not finite"):
        study_report(p, runs, arm_of, ABAW2020)
    table["pred_valence"] = 0.0
    table.to_parquet(student)
    Path("study/runs/teachers").mkdir(parents=True)
    Path("study/runs/teachers/seed0.json").write_text('{"epochs": 1, "steps')  # cut short
    with pytest.raises(DataError, match="study/runs/teachers/seed0.json: not a readable run report"):
        study_report(p, runs, arm_of, ABAW2020)
    for text, key in (("{}", "without epochs"),
                      ('{"epochs": 2, "steps_per_epoch": "9", "batch_per_task": 4}', "without steps_per_epoch"),
                      ("[1, 2]", "that is no mapping")):
        Path("study/runs/teachers/seed0.json").write_text(text)
        with pytest.raises(DataError, match=f"study/runs/teachers/seed0.json: a run report {key}"):
            study_report(p, runs, arm_of, ABAW2020)
    Path("study/runs/teachers/seed0.json").unlink()
    for text, problem in (("{", "unreadable"), ('{"teachers_seed0": "long"}', "not a mapping")):
        Path("study/times.json").write_text(text)
        assert stage_times(Path("study/times.json"))[1].startswith(f"study/times.json: {problem}")
        assert study_report(p, runs, arm_of, ABAW2020)["time"]["total_seconds"] == 0  # left out, said by the command


def test_a_seed_whose_test_frames_lack_a_task_s_labels_has_no_difference_on_it(tmp_path):
    p = study_params(tmp_path, study__seeds=2, study__arms=["teacher", "student"], study__bootstrap=20)
    _, runs, arm_of = plan(p)
    rng = np.random.default_rng(0)
    for r in runs:
        table = predictions(rng, 6, 0.7, r.arm)
        if (r.arm, r.seed) == ("teacher", 0):
            table["valence"] = table["arousal"] = np.nan  # unknown, never 0
        save(table, r.scores)
    (claim,) = study_report(p, runs, arm_of, ABAW2020)["claims"]
    assert claim["VA"]["differences"]["0"] is None and claim["VA"]["seeds"] == "1 of 2 seeds"
    assert claim["VA"]["verdict"] == NO_VERDICT and claim["total"]["differences"]["0"] is not None


def test_against_the_ground_truth_every_test_frame_counts_for_every_task(tmp_path):
    """The files of half the test videos leave EXPR and VA unlabelled; scored against the
    complete truth, each arm's figures are those of the fully labelled tables."""
    p = study_params(tmp_path, study__seeds=2, study__arms=["teacher", "student"], study__bootstrap=20)
    _, runs, arm_of = plan(p)
    rng = np.random.default_rng(1)
    full = {}
    for r in [*runs, None]:
        table = predictions(rng, 8, 0.5 if r is None else 0.7 + 0.1 * (r.arm == "student"),
                            "baseline" if r is None else r.arm)
        table["uid"] = [f"affwild2/{v}/{i}" for i, v in enumerate(table["video"])]
        path = tmp_path / "study/scores/baseline.parquet" if r is None else r.scores
        full[path] = table.copy()
        masked = table["video"].isin(["v00", "v01", "v02", "v03"])
        table.loc[masked, "expr"] = -1
        table.loc[masked, ["valence", "arousal"]] = np.nan
        save(table, path)
    truth = full[runs[0].scores][["uid", *ABAW2020.aus, "expr", "valence", "arousal"]]
    truth.to_parquet(tmp_path / "ground_truth.parquet")
    from_files = study_report(p, runs, arm_of, ABAW2020, tmp_path / "ground_truth.parquet")
    for path, table in full.items():  # the truth's labels, written into every table
        table[[*ABAW2020.aus, "expr", "valence", "arousal"]] = truth[[*ABAW2020.aus, "expr", "valence", "arousal"]]
        save(table, path)
    complete = study_report(p, runs, arm_of, ABAW2020)
    assert complete["ground_truth"] is None  # no ground truth given: nothing to add
    truth_section = from_files["ground_truth"]
    assert truth_section["labelled"] == {"AU": 160, "EXPR": 160, "VA": 160}
    assert from_files["test"]["labelled"] == {"AU": 160, "EXPR": 80, "VA": 80}
    for arm in ("teacher", "student"):
        assert truth_section["arms"][arm]["total"]["per_seed"] == pytest.approx(complete["arms"][arm]["total"]["per_seed"])
        assert from_files["arms"][arm]["total"]["per_seed"] != pytest.approx(complete["arms"][arm]["total"]["per_seed"])
    assert truth_section["claims"][0]["total"]["differences"] == pytest.approx(complete["claims"][0]["total"]["differences"])
    assert "## Against the complete ground truth" in render(from_files, [])
    assert "## Against the complete ground truth" not in render(complete, [])
    # a table with a row per model and face (the predictions) is no ground truth: said, no traceback
    pd.concat([truth, truth]).to_parquet(tmp_path / "predictions.parquet")
    with pytest.raises(DataError, match=r"predictions.parquet: face affwild2/v00/0 has 2 rows: not a ground-truth"):
        study_report(p, runs, arm_of, ABAW2020, tmp_path / "predictions.parquet")


def test_a_ground_truth_named_but_absent_is_refused(tmp_path):
    from click.testing import CliRunner

    from stages.cli import main

    result = CliRunner().invoke(main, ["study", "report", "--params", str(params_file(tmp_path)), "--ground-truth",
                                       str(tmp_path / "typo.parquet")])
    assert result.exit_code == 2 and f"{tmp_path / 'typo.parquet'}: no such file" in result.output


def test_the_report_command_says_a_damaged_times_file_is_left_out(tmp_path):
    from click.testing import CliRunner

    from stages.study import cli

    p = study_params(tmp_path, study__seeds=2, study__arms=["teacher", "student"], study__bootstrap=20)
    _, runs, _ = plan(p)
    rng = np.random.default_rng(2)
    for r in runs:
        save(predictions(rng, 4, 0.7, r.arm), r.scores)
    Path("study/times.json").write_text('{"teachers_seed0": 12')  # cut short
    result = CliRunner().invoke(cli, ["report", "--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "study/times.json: unreadable (JSONDecodeError): times left out" in result.output
