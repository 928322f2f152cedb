"""The study's numbers: every arm's scores over seeds on the test videos, paired
differences against the controls, a verdict per claim (docs/study.md), all from the
recorded predictions, training reports and stage times alone."""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.core.errors import DataError
from pipeline.core.labels import TASKS
from pipeline.core.schema import LabelSchema
from pipeline.evaluation.scoring import per_video_stats, scores_of
from pipeline.evaluation.truth import read_ground_truth, with_true_labels
from pipeline.study.params import ARMS
from pipeline.study.plan import Run, budget_steps, images_seen
from pipeline.study.verdicts import paired_interval, summary, verdict

#: The figures reported, per metrics era: the summed score first (what the verdicts read).
FIGURES = {"2020": {"total": "abaw_total", "AU": "AU.score", "EXPR": "EXPR.score", "VA": "VA.ccc_mean"},
           "2022": {"total": "abaw2022_total", "AU": "AU.f1", "EXPR": "EXPR.f1", "VA": "VA.ccc_mean"}}
#: Each claim: arm, control, the claim in words.
CLAIMS = [
    ("student", "teacher", "a student beats its teacher"),
    ("student", "teacher_long", "a student beats a teacher trained for as many steps as teacher and student together"),
    ("student", "student_no_fill", "filling the missing labels helps a student (against distilling its labelled "
                                   "task only)"),
    ("student", "student_no_distill", "the teacher helps a student at all (against lambda = 1 and no filling: the "
                                      "same steps, no teacher)"),
    ("teacher_long", "teacher", "training the teacher longer helps"),
    ("student_ensemble", "teacher", "the ensemble of students beats the teacher"),
    ("student_ensemble", "teacher_ensemble", "the ensemble of students beats an ensemble of as many teachers"),
    ("teacher", "teacher_imbalanced", "balancing the task sets helps the teacher (the paper's Table I: AU and EXPR, "
                                      "not VA)"),
    ("student", "student_imbalanced", "balancing the task sets helps the students"),
    ("pixel_probe", "pixel_probe_imbalanced", "balancing the task sets helps the pixel probe"),
    ("teacher", "single_task", "one multitask network beats a network per task (the paper's Figure 5)"),
    ("teacher", "pixel_probe", "the teacher has learned more than pixels (it beats the linear probe)"),
]
#: Every arm is also compared with these (when the study has them).
CONTROLS = ("teacher", "teacher_long", "teacher_ensemble")
BASELINE = "baseline"


#: Fewer test videos than this make every interval a guess: said beside the verdicts.
FEW_VIDEOS = 10


def read_predictions(path: str | Path, name: str) -> pd.DataFrame | None:
    """A run's prediction table (model ``name``), None if the run has not produced it."""
    if not Path(path).exists():
        return None
    try:
        table = pd.read_parquet(path)
    except PermissionError as e:
        raise DataError(f"{path}: {e.strerror}") from None
    except (OSError, ValueError, pa.ArrowException) as e:
        raise DataError(f"{path}: not a readable prediction table ({type(e).__name__}): rerun its study stage") from None
    if "model" not in table or set(table["model"]) != {name} or not len(table):
        found = sorted(set(table["model"])) if "model" in table else "no model column"
        raise DataError(f"{path}: not {name}'s predictions ({len(table)} rows of {found}): rerun its study stage")
    predicted = [c for c in table.columns if c.startswith(("pred_", "p_"))]
    if not np.isfinite(table[predicted].to_numpy(dtype=float)).all():
        raise DataError(f"{path}: predictions that are not finite: rerun its study stage")
    return table


#: What a training run's report must hold for its budget (steps, images seen).
BUDGET_KEYS = ("epochs", "steps_per_epoch", "batch_per_task")


def read_json(path: str | Path, keys=()) -> dict | None:
    """A run's recorded report, holding whole numbers at ``keys``; None if the run has not
    produced it."""
    if not Path(path).exists():
        return None
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable run report ({type(e).__name__}): rerun its study stage") from None
    if not isinstance(report, dict):
        raise DataError(f"{path}: a run report that is no mapping: rerun its study stage")
    missing = next((k for k in keys if type(report.get(k)) is not int), None)
    if missing:
        raise DataError(f"{path}: a run report without {missing} (a whole number): rerun its study stage")
    return report


def stage_times(path: Path) -> tuple[dict[str, float], str | None]:
    """``study run``'s measured stage times, and what is wrong with the file if anything."""
    try:
        times = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError) as e:
        return {}, f"{path}: unreadable ({type(e).__name__}): times left out (the next `study run` writes it anew)"
    if not isinstance(times, dict) or not all(isinstance(v, (int, float)) for v in times.values()):
        return {}, f"{path}: not a mapping of stage names to seconds: times left out"
    return times, None


def read_tables(runs: list[Run], baseline: str) -> tuple[dict, pd.DataFrame | None]:
    """Every run's prediction table (None where it has none) and the baseline's."""
    tables = {(r.arm, r.seed): read_predictions(r.scores, r.arm) for r in runs}
    base = read_predictions(baseline, BASELINE)
    if all(t is None for t in [*tables.values(), base]):
        raise DataError("no run of the study has test predictions yet: run `mtaffect study run` first")
    return tables, base


def arm_stats(runs: list[Run], tables: dict, base: pd.DataFrame | None, baseline: str, schema: LabelSchema):
    """``{arm: {seed: per-video statistics or None}}``, the baseline's, and the test videos."""
    known = [t for t in [*tables.values(), base] if t is not None]
    videos = np.array(sorted(set().union(*(set(t["video"]) for t in known))))
    for t in known:
        if set(t["video"]) != set(videos):
            raise DataError(f"the runs were scored on different test videos ({len(set(t['video']))} and "
                            f"{len(videos)}): rerun the study (did teacher.selection_videos change?)")

    def stats(table, path):
        if table is None:
            return None
        try:
            return per_video_stats(table, np.searchsorted(videos, table["video"].to_numpy()), len(videos), schema)
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{path}: not a prediction table of the study's ({type(e).__name__}: {e})") from None

    arms: dict = {}
    for r in runs:
        arms.setdefault(r.arm, {})[r.seed] = stats(tables[(r.arm, r.seed)], r.scores)
    first = known[0]
    return arms, stats(base, baseline), {"videos": len(videos), "frames": len(first),
                                         "labelled": labelled_frames(first, schema)}


def labelled_frames(table: pd.DataFrame, schema: LabelSchema) -> dict[str, int]:
    """Frames of a prediction table with a label of each task (an AU frame: any AU known)."""
    return {"AU": int((table[list(schema.aus)].to_numpy() >= 0).any(axis=1).sum()),
            "EXPR": int((table["expr"].to_numpy() >= 0).sum()),
            "VA": int(np.isfinite(table[["valence", "arousal"]].to_numpy(dtype=float)).all(axis=1).sum())}


def relabelled(tables: dict, base: pd.DataFrame | None, ground_truth: str | Path | None, schema: LabelSchema):
    """The tables with the synthetic ground truth's labels on every task of every test
    frame (the tasks the files leave unlabelled too), or None without a ground truth that
    knows the test frames (real data)."""
    if ground_truth is None or not Path(ground_truth).exists():
        return None
    known = [t for t in [*tables.values(), base] if t is not None]
    truth = read_ground_truth(ground_truth, known[0]["uid"])
    if truth is None or not all(t["uid"].isin(truth.index).all() for t in known):
        return None
    def swap(table):
        return None if table is None else with_true_labels(table, truth, schema)
    return {key: swap(t) for key, t in tables.items()}, swap(base)


def figures_of(stats: Mapping | None, schema: LabelSchema) -> dict[str, float | None]:
    if stats is None:
        return {name: None for name in FIGURES[schema.era]}
    flat = scores_of({t: np.asarray(stats[t]).sum(axis=0) for t in TASKS}, schema)
    return {name: flat[key] for name, key in FIGURES[schema.era].items()}


def metric_of(figure: str, schema: LabelSchema):
    key = FIGURES[schema.era][figure]
    return lambda sums: scores_of(sums, schema)[key]


def compare(arm: dict, control: dict, seeds: int, schema: LabelSchema, n_boot: int) -> dict:
    """Per figure: the seeds' paired differences, their interval and the verdict."""
    out = {}
    for figure in FIGURES[schema.era]:
        both = [s for s in range(seeds) if arm.get(s) is not None and control.get(s) is not None]
        diffs = {s: None for s in range(seeds)}
        for s in both:
            a, b = figures_of(arm[s], schema)[figure], figures_of(control[s], schema)[figure]
            diffs[s] = None if a is None or b is None else a - b
        scored = [s for s in both if diffs[s] is not None]  # a figure without labels (no VA truth) has no difference
        interval = paired_interval({s: arm[s] for s in scored}, {s: control[s] for s in scored},
                                   metric_of(figure, schema), n=n_boot)
        v = verdict(diffs, interval, seeds)
        out[figure] = {"differences": {str(s): d for s, d in diffs.items()}, "mean": v.mean, "sd": v.sd,
                       "interval": list(v.interval) if v.interval else None, "seeds": v.seeds, "verdict": v.verdict,
                       "why": v.why}
    return out


def budgets(out: str, seeds: int, teacher_seed: int, first: str) -> dict:
    """Steps and images seen of the runs that trained, from their recorded reports, and
    whether the equal-budget teacher had teacher plus student steps in every seed."""
    per_arm, equal = {}, []
    for k in range(seeds):
        teacher = read_json(f"{out}/runs/teachers/seed{teacher_seed + k}.json", BUDGET_KEYS)
        long = read_json(f"{out}/runs/teacher_long/seed{teacher_seed + k}.json", BUDGET_KEYS)
        student = read_json(f"{out}/runs/students/seed{k}/{first}.json", BUDGET_KEYS)
        for arm, report in (("teacher", teacher), ("teacher_long", long), ("student", student),
                            ("student_no_fill", read_json(f"{out}/runs/student_no_fill/seed{k}.json", BUDGET_KEYS)),
                            ("student_no_distill", read_json(f"{out}/runs/student_no_distill/seed{k}.json",
                                                             BUDGET_KEYS))):
            if report is not None:
                per_arm.setdefault(arm, {"steps": budget_steps(report), "images": images_seen(report)})
        single = [read_json(f"{out}/runs/single_task/{t}/seed{teacher_seed + k}.json", BUDGET_KEYS) for t in TASKS]
        if all(single):  # three networks, each one batch (of its task) a step
            per_arm.setdefault("single_task", {"steps": sum(map(budget_steps, single)),
                                               "images": sum(images_seen(r, tasks=1) for r in single)})
        if teacher and long and student:
            equal.append({"seed": k, "teacher": budget_steps(teacher), "student": budget_steps(student),
                          "teacher_long": budget_steps(long),
                          "equal": budget_steps(long) == budget_steps(teacher) + budget_steps(student)})
    return {"per_arm": per_arm, "equal_budget": equal}


def ensemble_sizes(out: str, seeds: int) -> dict:
    sizes = {}
    for arm in ("student_ensemble", "teacher_ensemble"):
        for k in range(seeds):
            report = read_json(f"{out}/runs/{arm}/seed{k}.json")
            if report is not None:
                sizes.setdefault(arm, {})[str(k)] = len(report.get("members", []))
    return sizes


def times(out: str, arm_of: dict[str, str]) -> dict:
    """Seconds per arm from ``<out>/times.json`` (what ``mtaffect study run`` measured of
    the stages it ran; a stage DVC restored from its cache took none)."""
    measured, _ = stage_times(Path(out) / "times.json")  # ``study run`` says when it is unreadable
    per_arm: dict[str, float] = {}
    for stage, seconds in measured.items():
        if stage in arm_of:
            per_arm[arm_of[stage]] = round(per_arm.get(arm_of[stage], 0.0) + seconds, 1)
    return {"total_seconds": round(sum(per_arm.values()), 1), "per_arm": dict(sorted(per_arm.items())),
            "stages_timed": sum(s in arm_of for s in measured), "stages": len(arm_of)}


def scored(stats: dict, base, seeds: int, schema: LabelSchema, n_boot: int) -> dict:
    """Each arm's figures over seeds, the claims' verdicts and the comparisons with the controls."""
    arms = {}
    for arm, per_seed in stats.items():
        values = {s: figures_of(per_seed[s], schema) if per_seed[s] is not None else None for s in range(seeds)}
        entry = {"what": ARMS[arm], "missing": [f"seed {s}" for s in range(seeds) if values[s] is None]}
        for figure in FIGURES[schema.era]:
            got, count, mean, sd = summary({s: v and v[figure] for s, v in values.items()}, seeds)
            entry.setdefault("seeds", count)
            entry[figure] = {"per_seed": {str(s): v and v[figure] for s, v in values.items()}, "mean": mean, "sd": sd}
        arms[arm] = entry
    claims = [{"claim": text, "arm": a, "control": c, **compare(stats[a], stats[c], seeds, schema, n_boot)}
              for a, c, text in CLAIMS if a in stats and c in stats]
    against = [{"arm": a, "control": c, **compare(stats[a], stats[c], seeds, schema, n_boot)}
               for c in CONTROLS if c in stats for a in stats if a != c]
    return {"baseline": figures_of(base, schema), "arms": arms, "claims": claims, "against_controls": against}


def study_report(p, runs: list[Run], arm_of: dict[str, str], schema: LabelSchema,
                 ground_truth: str | Path | None = None) -> dict:
    """The whole report as one dict (``study.json``); with the synthetic data's
    ``ground_truth``, every arm also scored on all three tasks of every test frame."""
    out, seeds, n_boot = p.study.out, p.study.seeds, p.study.bootstrap
    baseline = f"{out}/scores/{BASELINE}.parquet"
    tables, base = read_tables(runs, baseline)
    stats, base_stats, test = arm_stats(runs, tables, base, baseline, schema)
    truth = None
    if (swapped := relabelled(tables, base, ground_truth, schema)) is not None:
        true_stats, true_base, true_test = arm_stats(runs, *swapped, baseline, schema)
        truth = {"note": "the same predictions scored against the synthetic ground truth: every task of every test "
                         "frame, including the tasks its video's files leave unlabelled",
                 "labelled": true_test["labelled"],
                 **scored(true_stats, true_base, seeds, schema, n_boot)}
    notes = []
    if test["videos"] < FEW_VIDEOS:
        notes.append(f"only {test['videos']} test videos: every interval and verdict rests on them (leave more "
                     "validation videos to testing)")
    return {"seeds": seeds, "era": schema.era, "figures": FIGURES[schema.era], "notes": notes,
            "test": {**test, "selection_videos": p.teacher.selection_videos},
            **scored(stats, base_stats, seeds, schema, n_boot), "ground_truth": truth,
            "budget": budgets(out, seeds, p.teacher.seed, p.ensemble.members[0]),
            "ensemble_members": ensemble_sizes(out, seeds), "time": times(out, arm_of), "bootstrap": n_boot}
