"""dvc.yaml stays true to the code: each stage depends on exactly the project modules it
imports (directly or through other project modules), and every path a stage's command
passes equals the command's own default, so running a stage by hand writes where DVC
expects it."""
import importlib
import re
import shlex

import pytest
import yaml

from pipeline.core.provenance import PACKAGES, ROOT, code_files, imported_modules

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def code_of(module: str) -> set[str]:
    return set(code_files(module))


def stage_body(name: str) -> dict:
    stage = DVC[name]
    return stage["do"] if "foreach" in stage else stage


def stage_module(name: str) -> str:
    return re.match(r"python -m (stages\.\w+)", stage_body(name)["cmd"]).group(1)


@pytest.mark.parametrize("stage", sorted(DVC))
def test_stage_depends_on_exactly_the_code_it_runs(stage):
    listed = {d for d in stage_body(stage)["deps"] if d.endswith(".py") or d in PACKAGES}
    expected = code_of(stage_module(stage))
    assert not listed - expected, f"{stage}: dvc.yaml lists code the stage does not import: {sorted(listed - expected)}"
    assert not expected - listed, f"{stage}: dvc.yaml misses code the stage imports: {sorted(expected - listed)}"


def test_the_dependency_finder_sees_lazy_and_relative_imports():
    # stages import the library inside their command functions, and the synthetic package
    # imports its siblings relatively: both must be found, or the lists above mean nothing
    assert "pipeline.training.train" in imported_modules("stages.training")  # inside a function
    assert "pipeline/core/labels.py" in code_of("stages.train_teacher")
    teacher = code_of("stages.train_teacher")
    assert not any("synthetic" in f for f in teacher) and "pipeline/training/softlabels.py" not in teacher
    synth = code_of("stages.synth")
    assert "synthetic/writers.py" in synth and "synthetic/__init__.py" in synth


@pytest.mark.parametrize("stage", sorted(DVC))
def test_paths_in_the_command_are_the_commands_defaults(stage):
    cli = importlib.import_module(stage_module(stage)).cli
    defaults = {opt: p.default for p in cli.params for opt in getattr(p, "opts", [])}
    tokens = shlex.split(stage_body(stage)["cmd"])
    for option, value in zip(tokens, tokens[1:]):
        if option.startswith("--") and "${" not in value and defaults.get(option) is not None:
            assert defaults[option] == value, f"{stage}: {option} is {value} in dvc.yaml, {defaults[option]} by default"


def test_students_never_depend_on_the_teacher_checkpoint():
    # they learn from the soft-label cache; the teacher is never loaded by a student
    student = stage_body("train_student")
    assert "models/teacher.pt" not in student["deps"] and "data/soft_labels.h5" in student["deps"]
    assert "pipeline/training/models.py" in student["deps"]  # the student's own network
    assert DVC["train_student"]["foreach"] == "${students}"


def rewrite_code_deps(text: str) -> str:
    """dvc.yaml's text with each stage's code dependencies replaced by the derived ones
    (the other dependencies, and everything else, kept as written)."""
    out, lines, stage, i = [], text.splitlines(), None, 0
    while i < len(lines):
        line = lines[i]
        top = re.match(r"^  (\w+):$", line)
        if top:
            stage = top.group(1)
        out.append(line)
        if re.match(r"^\s+deps:$", line) and stage in DVC:
            indent = re.match(r"^(\s+)", lines[i + 1]).group(1)
            i += 1
            rest = []
            while i < len(lines) and lines[i].startswith(f"{indent}- "):
                item = lines[i][len(indent) + 2:]
                if not (item.endswith(".py") or item in PACKAGES):
                    rest.append(lines[i])
                i += 1
            out += [f"{indent}- {f}" for f in sorted(code_of(stage_module(stage)))] + rest
            continue
        i += 1
    return "\n".join(out) + "\n"


if __name__ == "__main__":  # python tests/test_dvc_yaml.py: derive dvc.yaml's code dependencies again
    (ROOT / "dvc.yaml").write_text(rewrite_code_deps((ROOT / "dvc.yaml").read_text()))
