"""``reports/study/study.md``: the study's report (``pipeline.study.report``) in words and tables."""
from __future__ import annotations

from pipeline.study.verdicts import MIN_SEEDS

RULE = ("Each claim \"A beats B\" is read from the paired differences A - B of the K training seeds (A and B of "
        "one seed are scored on the same test videos). Its 95% interval is a percentile bootstrap over the test "
        "videos, each replicate drawing the videos once for every seed and both arms and averaging the seeds' "
        "differences. **holds**: the interval lies strictly above 0 and every seed's own difference is positive. "
        "**does not hold**: the interval lies strictly below 0 (B is better). **within noise**: anything else (the "
        f"interval holds or touches 0, or a seed disagrees). **no verdict**: fewer than {MIN_SEEDS} seeds have a "
        "difference. A missing seed "
        "is never averaged over silently: the table says \"2 of 3 seeds\".")


def number(value, signed: bool = False) -> str:
    return "n/a" if value is None else f"{value:+.3f}" if signed else f"{value:.3f}"


def interval(values) -> str:
    return "n/a" if not values else f"[{values[0]:+.3f}, {values[1]:+.3f}]"


def mean_sd(entry: dict) -> str:
    return f"{number(entry['mean'])} ± {number(entry['sd'])}" if entry["sd"] is not None else number(entry["mean"])


def verdict_table(claims: list[dict], names: list[str]) -> list[str]:
    lines = ["| claim | A - B | total: mean difference | 95% interval | seeds | verdict | " + " | ".join(names[1:]) + " |",
             "|---|---|---|---|---|---|" + "---|" * (len(names) - 1)]
    for c in claims:
        t = c["total"]
        lines.append(f"| {c['claim']} | {c['arm']} - {c['control']} | {number(t['mean'], True)} | "
                     f"{interval(t['interval'])} | {t['seeds']} | **{t['verdict']}** | "
                     + " | ".join(f"{number(c[f]['mean'], True)} {interval(c[f]['interval'])}: {c[f]['verdict']}"
                                  for f in names[1:]) + " |")
    return lines


def arm_table(scores: dict, names: list[str]) -> list[str]:
    lines = ["| arm | what | seeds | " + " | ".join(names) + " |", "|---|---|---|" + "---|" * len(names)]
    for arm, entry in scores["arms"].items():
        lines.append(f"| {arm} | {entry['what']} | {entry['seeds']} | "
                     + " | ".join(mean_sd(entry[f]) for f in names) + " |")
    base = scores["baseline"]
    lines.append("| baseline | no AU, the majority class, the mean VA of the training set | - | "
                 + " | ".join(number(base[f]) for f in names) + " |")
    return lines


def frames(labelled: dict[str, int]) -> str:
    return ", ".join(f"{task} {n}" for task, n in labelled.items())


def render(report: dict, figures: list[str]) -> str:
    names = list(report["figures"])
    test = report["test"]
    lines = [
        "# The controlled study", "",
        "Written by `mtaffect study report` from the study's recorded predictions, training reports and stage "
        "times (docs/study.md). Every arm is trained with "
        f"{report['seeds']} training seeds on the same data; every choice (best epoch) is made on the first "
        f"{test['selection_videos']} validation videos and every score below is taken on the other "
        f"{test['videos']} videos ({test['frames']} frames; labelled: {frames(test['labelled'])}), which no choice "
        "has seen. Scores are the ABAW "
        f"{report['era']} figures; `total` is their sum.", "",
        *(f"**Note:** {note}.\n" for note in report["notes"]),
        "## Verdicts", "", *verdict_table(report["claims"], names),
        "", "## Every arm (mean ± sd over seeds)", "", *arm_table(report, names)]
    lines += ["", "## Paired differences against the controls (total)", "",
              "| arm | control | mean difference | sd over seeds | 95% interval | seeds | verdict |",
              "|---|---|---|---|---|---|---|"]
    for c in report["against_controls"]:
        t = c["total"]
        lines.append(f"| {c['arm']} | {c['control']} | {number(t['mean'], True)} | {number(t['sd'])} | "
                     f"{interval(t['interval'])} | {t['seeds']} | {t['verdict']} |")
    if truth := report["ground_truth"]:
        lines += ["", "## Against the complete ground truth (synthetic data)", "",
                  f"The same predictions scored against the generator's true labels of every task of every test frame "
                  f"(labelled: {frames(truth['labelled'])}), the tasks their videos' files leave unlabelled included. "
                  "Filling the missing labels should show here if it works at all.", "",
                  *verdict_table(truth["claims"], names), "", *arm_table(truth, names)]
    lines += ["", "## Budgets", "", "| arm | training steps | images seen |", "|---|---|---|"]
    for arm, b in report["budget"]["per_arm"].items():
        lines.append(f"| {arm} | {b['steps']} | {b['images']} |")
    for e in report["budget"]["equal_budget"]:
        lines.append(f"\nSeed {e['seed']}: teacher {e['teacher']} + student {e['student']} steps = "
                     f"{e['teacher'] + e['student']}; equal-budget teacher {e['teacher_long']} "
                     f"({'equal' if e['equal'] else 'NOT EQUAL'}).")
    for arm, sizes in report["ensemble_members"].items():
        lines.append(f"\n{arm}: {', '.join(f'seed {k}: {n} members' for k, n in sizes.items())}.")
    time = report["time"]
    lines += ["", "## Time", "",
              f"{time['total_seconds'] / 60:.1f} minutes measured over {time['stages_timed']} of {time['stages']} "
              "stages (a stage DVC restored from its cache took none)." + "".join(
                  f" {arm}: {s / 60:.1f} min ({100 * s / time['total_seconds']:.0f}%)."
                  for arm, s in time["per_arm"].items() if time["total_seconds"])]
    lines += ["", "## The rule", "", RULE, "", "## Figures", ""]
    lines += [f"![{f}]({f})" for f in figures]
    return "\n".join(lines) + "\n"
