"""The study's stages: every arm x seed as a DVC stage running the project's own stage
commands with ``--set`` overrides, written to ``<study.out>/dvc.yaml`` (docs/study.md).

Seeds: study seed k (0..K-1) adds k to every training seed of the main pipeline (the
teacher's, each student's), so seed 0 is the main pipeline's setting. The teacher of seed
k is trained once and serves every arm that needs it (its own arm, the soft labels of that
seed's students, the teacher ensemble); the teacher ensemble of seed k adds the teachers
of seeds k + K, k + 2K, ... until it has as many members as the student ensemble.
"""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass

from pipeline.core.errors import ParamsError
from pipeline.core.labels import TASKS
from pipeline.core.provenance import code_files

#: The params each stage command reads (besides ``threads``), as the main dvc.yaml tracks them.
READS = {
    "train_teacher": ["build.aus", "build.label_schema", "build.out", "teacher"],
    "soft_labels": ["build.aus", "build.label_schema", "build.out", "soft_labels"],
    "train_student": ["build.aus", "build.label_schema", "build.out", "student", "teacher"],
    "ensemble": ["build.aus", "build.label_schema", "build.out", "ensemble", "extract.batch", "extract.detect_size",
                 "extract.face_size", "extract.min_face", "extract.min_prob", "extract.template_scale"],
    "study_score": ["build.aus", "build.label_schema", "build.out", "evaluate.batch", "evaluate.device",
                    "teacher.selection_videos"],
    "build": ["build", "extract.out"],
}


@dataclass(frozen=True)
class Run:
    """One scored model: an arm's network (or bundle) of one study seed."""

    arm: str
    seed: int     # the study seed k, 0..K-1
    model: str    # checkpoint, bundle, (a probe) the task sets it is fitted on, or (single-task) one per task, " "-joined
    scores: str   # its test-set predictions


@dataclass(frozen=True)
class Budget:
    """Training steps of the teacher, of one student, and the equal-budget teacher's epochs."""

    teacher_steps: int
    student_steps: int
    long_epochs: int
    long_steps_per_epoch: int

    @property
    def long_steps(self) -> int:
        return self.long_epochs * self.long_steps_per_epoch


def equal_budget(teacher_epochs: int, teacher_spe: int, student_epochs: int, student_spe: int) -> Budget:
    """The equal-budget teacher: exactly teacher + student steps, in the whole number of
    epochs whose length is nearest the teacher's own (its validation checks as often)."""
    total = teacher_epochs * teacher_spe + student_epochs * student_spe
    epochs = min((e for e in range(1, total + 1) if total % e == 0), key=lambda e: (abs(total / e - teacher_spe), e))
    return Budget(teacher_epochs * teacher_spe, student_epochs * student_spe, epochs, total // epochs)


def budget_of(p, where: str = "params.yaml") -> Budget:
    """The teacher's and the first student's steps from the params (both must be fixed)."""
    first = p.ensemble.members[0]
    student = p.students[first]
    for key, section in (("teacher", p.teacher), (f"students.{first}", student)):
        if section.steps_per_epoch is None:
            raise ParamsError(f"{where}: {key}.steps_per_epoch is null (taken from the data): the equal-budget "
                              "teacher needs a fixed number of steps; set it")
    return equal_budget(p.teacher.epochs, p.teacher.steps_per_epoch, student.epochs, student.steps_per_epoch)


def check(p, where: str = "params.yaml") -> None:
    """What the study needs of the params file ``where``, each in one line."""
    if p.teacher.selection_videos is None:
        raise ParamsError(f"{where}: teacher.selection_videos is null: the study chooses on the first n validation "
                          "videos and scores on the others; set it (the demo uses 60)")
    for name in p.ensemble.members:
        if name not in p.students:
            raise ParamsError(f"{where}: ensemble.members: {name!r} is not a student (students: {', '.join(p.students)})")
        if p.students[name].selection_videos != p.teacher.selection_videos:
            raise ParamsError(f"{where}: students.{name}.selection_videos is {p.students[name].selection_videos}, "
                              f"teacher.selection_videos {p.teacher.selection_videos}: the study needs one split")
    last = p.teacher.seed + p.study.seeds * len(p.ensemble.members) - 1  # the teacher ensembles' last seed
    if last >= 2**32:
        raise ParamsError(f"{where}: teacher.seed {p.teacher.seed}: the study's teachers would need seed {last}, "
                          "beyond 2**32 - 1; make it smaller")
    if "teacher_long" in p.study.arms:
        budget_of(p, where)


def stage_command(module: str, *args: str, sets: dict | None = None, quiet: bool = True, params: str = "params.yaml") -> str:
    """A stage command line on the params file ``params``: ``--set`` for each of ``sets``,
    no progress bars (``--quiet``)."""
    flags = [f"--set {shlex.quote(f'{k}={v}')}" for k, v in (sets or {}).items()]
    on = [f"--params {shlex.quote(params)}"] if params != "params.yaml" else []
    return " ".join(["python -m", f"stages.{module}", *on, *args, *flags, *(["--quiet"] if quiet else [])])


def stage(module: str, cmd: str, inputs: list[str], outs: list[str], metrics: list[str] = (),
          params: list[str] = (), params_file: str = "params.yaml") -> dict:
    keys = ["threads", *READS[module], *params]
    body = {"cmd": cmd, "deps": [*code_files(f"stages.{module}"), *inputs],
            "params": keys if params_file == "params.yaml" else [{params_file: keys}], "outs": outs}
    if metrics:
        body["metrics"] = list(metrics)
    return body


def plan(p, params_file: str = "params.yaml") -> tuple[dict, list[Run], dict[str, str]]:
    """The stages of ``<study.out>/dvc.yaml`` (run from the project root), the scored runs,
    and which arm each stage's time counts for; every stage reads ``params_file``."""
    check(p, params_file)
    out, K, build = p.study.out, p.study.seeds, p.build.out
    members, arms = p.ensemble.members, p.study.arms
    first = members[0]
    stages, runs, arm_of = {}, [], {}
    root = os.path.relpath(".", out)  # the stages run from the project root, as the main pipeline's

    def command(*args, **kwargs):
        return stage_command(*args, **kwargs, params=params_file)

    def add(name, arm, module, cmd, inputs, outs, metrics=(), params=()):
        if name not in stages:
            stages[name] = {**stage(module, cmd, ["reports/params.json", build, *inputs], outs, metrics, params,
                                    params_file), "wdir": root}
            arm_of[name] = arm

    def imbalanced_build():
        """The task sets without balancing (the paper's Table I), built once."""
        folder = f"{out}/data/build_imbalanced"
        add("build_imbalanced", "teacher_imbalanced", "build",
            command("build", "--no-balance", f"--out {folder}", f"--report {out}/runs/build_imbalanced.json",
                    f"--plots {out}/runs/build_imbalanced_plots", f"--provenance {out}/provenance/build_imbalanced.json",
                    quiet=False),
            [f"{p.extract.out}/{source}/frames.parquet" for source in p.sources],
            [folder, f"{out}/runs/build_imbalanced_plots", f"{out}/provenance/build_imbalanced.json"],
            [f"{out}/runs/build_imbalanced.json"])
        return folder

    def teacher(seed, arm, long=None, imbalanced=False, task=None):
        kind = ("teacher_long" if long else "teachers_imbalanced" if imbalanced else f"single_task/{task}" if task
                else "teachers")
        sets = {"teacher.seed": seed, **({"teacher.epochs": long.long_epochs,
                                         "teacher.steps_per_epoch": long.long_steps_per_epoch} if long else {}),
                **({"teacher.task_weights": f"{{{', '.join(f'{t}: {int(t == task)}' for t in TASKS)}}}"} if task else {})}
        where, index = f"{kind}/seed{seed}", [imbalanced_build()] if imbalanced else []
        path = f"{out}/models/{where}.pt"
        cmd = command("train_teacher", *(f"--index {i}" for i in index), f"--out {path}", f"--log {out}/runs/{where}.csv",
                      f"--report {out}/runs/{where}.json", f"--resume scratch/study/{where}.pt",
                      f"--provenance {out}/provenance/{where}.json", sets=sets)
        add(f"{kind.replace('/', '_')}_seed{seed}", arm, "train_teacher", cmd, index,
            [path, f"{out}/runs/{where}.csv", f"{out}/provenance/{where}.json"], [f"{out}/runs/{where}.json"])
        return path

    def student(k, member, arm, kind, sets=(), imbalanced=False):
        seed, cached = p.teacher.seed + k, "soft_labels_imbalanced" if imbalanced else "soft_labels"
        teacher_path = teacher(seed, "teacher_imbalanced" if imbalanced else "teacher", imbalanced=imbalanced)
        index = [imbalanced_build()] if imbalanced else []
        on_index = [f"--index {i}" for i in index]
        cache, labelled = f"{out}/data/{cached}/seed{seed}.h5", f"{cached}/seed{seed}"
        add(f"{cached}_seed{seed}", arm if imbalanced else "student", "soft_labels",
            command("soft_labels", *on_index, f"--teacher {teacher_path}", f"--out {cache}",
                    f"--report {out}/runs/{labelled}.json", f"--provenance {out}/provenance/{labelled}.json"),
            [teacher_path, *index], [cache, f"{out}/provenance/{labelled}.json"], [f"{out}/runs/{labelled}.json"])
        where = f"{kind}/seed{k}" + (f"/{member}" if kind == "students" else "")
        path = f"{out}/models/{where}.pt"
        cmd = command("train_student", *on_index, f"--name {member}", f"--soft-labels {cache}", f"--out {path}",
                      f"--log {out}/runs/{where}.csv", f"--report {out}/runs/{where}.json",
                      f"--resume scratch/study/{where}.pt", f"--provenance {out}/provenance/{where}.json",
                      sets={f"students.{member}.seed": p.students[member].seed + k, **dict(sets)})
        add(where.replace("/", "_"), arm, "train_student", cmd, [cache, *index],
            [path, f"{out}/runs/{where}.csv", f"{out}/provenance/{where}.json"], [f"{out}/runs/{where}.json"],
            [f"students.{member}"])
        return path

    def ensemble(k, arm, folder, names):
        path = f"{out}/models/{arm}/seed{k}.pt"
        teachers = ["--of-teachers"] if arm == "teacher_ensemble" else []
        cmd = command("ensemble", f"--students {folder}", *teachers, f"--out {path}",
                      f"--report {out}/runs/{arm}/seed{k}.json", f"--provenance {out}/provenance/{arm}/seed{k}.json",
                      sets={"ensemble.members": f"[{', '.join(names)}]", "ensemble.au_thresholds": "fixed"})
        add(f"{arm}_seed{k}", arm, "ensemble", cmd, [f"{folder}/{n}.pt" for n in names],
            [path, f"{out}/provenance/{arm}/seed{k}.json"], [f"{out}/runs/{arm}/seed{k}.json"])
        return path

    for k in range(K):
        made = {}
        if "teacher" in arms:
            made["teacher"] = teacher(p.teacher.seed + k, "teacher")
        if "teacher_long" in arms:
            made["teacher_long"] = teacher(p.teacher.seed + k, "teacher_long", budget_of(p))
        if "student" in arms:
            made["student"] = student(k, first, "student", "students")
        if "student_no_fill" in arms:
            made["student_no_fill"] = student(k, first, "student_no_fill", "student_no_fill",
                                              {f"students.{first}.distill_unlabelled": "false"})
        if "student_no_distill" in arms:
            made["student_no_distill"] = student(k, first, "student_no_distill", "student_no_distill",
                                                 {f"students.{first}.lam": 1, f"students.{first}.distill_unlabelled": "false"})
        if "student_ensemble" in arms:
            for m in members:
                student(k, m, "student" if m == first else "student_ensemble", "students")
            made["student_ensemble"] = ensemble(k, "student_ensemble", f"{out}/models/students/seed{k}", members)
        if "teacher_ensemble" in arms:
            seeds = [p.teacher.seed + k + K * j for j in range(len(members))]
            for j, s in enumerate(seeds):
                teacher(s, "teacher" if j == 0 else "teacher_ensemble")
            made["teacher_ensemble"] = ensemble(k, "teacher_ensemble", f"{out}/models/teachers",
                                                [f"seed{s}" for s in seeds])
        if "single_task" in arms:  # the teacher's steps each: as many images of its task as the teacher saw
            made["single_task"] = " ".join(teacher(p.teacher.seed + k, "single_task", task=t) for t in TASKS)
        if "teacher_imbalanced" in arms:
            made["teacher_imbalanced"] = teacher(p.teacher.seed + k, "teacher_imbalanced", imbalanced=True)
        if "student_imbalanced" in arms:
            made["student_imbalanced"] = student(k, first, "student_imbalanced", "students_imbalanced",
                                                 imbalanced=True)
        for arm, index in (("pixel_probe", build), ("pixel_probe_imbalanced", None)):
            if arm in arms:  # fitted in its scoring stage, with seed k
                made[arm] = index or imbalanced_build()
        runs += [Run(arm, k, model, f"{out}/scores/{arm}/seed{k}.parquet") for arm, model in made.items()]
    for arm in arms:  # one stage scores an arm's seeds: a stage's start-up costs more than a tiny model's scoring
        mine = [r for r in runs if r.arm == arm]
        kind = ("bundle" if arm.endswith("_ensemble") else "probe" if arm.startswith("pixel_probe") else
                "tasks" if arm == "single_task" else "checkpoint")
        models = [f"{' '.join(f'--model {m}' for m in r.model.split())} --out {r.scores}" for r in mine]
        if kind == "probe":  # fitted on its task sets, each frame by its draws (none on the imbalanced), seed k
            models = [f"--train-index {mine[0].model}", "--weighted",
                      *(f"--seed {p.teacher.seed + r.seed} --out {r.scores}" for r in mine)]
        record = f"{out}/provenance/scores/{arm}.json"
        add(f"score_{arm}", "scoring", "study_score",
            command("study_score", f"--kind {kind}", f"--name {arm}", *models, f"--provenance {record}"),
            sorted({m for r in mine for m in r.model.split()} - {build}), [*(r.scores for r in mine), record])
    record = f"{out}/provenance/scores/baseline.json"
    add("score_baseline", "scoring", "study_score",
        command("study_score", "--kind baseline", "--name baseline", f"--out {out}/scores/baseline.parquet",
                f"--provenance {record}"), [], [f"{out}/scores/baseline.parquet", record])
    return stages, runs, arm_of


def budget_steps(report: dict) -> int:
    """Training steps a run's report records (epochs x steps per epoch)."""
    return int(report["epochs"]) * int(report["steps_per_epoch"])


def images_seen(report: dict, tasks: int = 3) -> int:
    """Images a run's report says it trained on: one batch per task a step."""
    return budget_steps(report) * int(report["batch_per_task"]) * tasks

