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


@pytest.mark.parametrize("stage", sorted(s for s in DVC if s != "check_params"))
def test_every_stage_takes_set_overrides_as_dvc_exp_run_does(stage):
    # a stage run by hand must be able to try a value, as `dvc exp run -S` does
    from click.testing import CliRunner

    cli = importlib.import_module(stage_module(stage)).cli
    family = yaml.safe_load((ROOT / "params.yaml").read_text()).get(foreach_of(stage) or "", {"x": None})
    args = [a.replace("${key}", next(iter(family))) for a in shlex.split(stage_body(stage)["cmd"])[3:]]
    result = CliRunner().invoke(cli, [*args, "--params", str(ROOT / "params.yaml"), "--set", "threads=-1"])
    assert result.exit_code != 0 and "--set threads=-1: threads: expected a whole number" in result.output, result.output


def test_students_never_depend_on_the_teacher_checkpoint():
    # they learn from the soft-label cache; the teacher is never loaded by a student
    student = stage_body("train_student")
    assert "models/teacher.pt" not in student["deps"] and "data/soft_labels.h5" in student["deps"]
    assert "pipeline/training/models.py" in student["deps"]  # the student's own network
    assert DVC["train_student"]["foreach"] == "${students}"


def rewrite_lists(text: str, key: str, items, skip=()) -> str:
    """dvc.yaml's text with each stage's ``key:`` list replaced by ``items(stage, old)`` (but
    in the stages ``skip``), everything else kept as written."""
    out, lines, stage, i = [], text.splitlines(), None, 0
    while i < len(lines):
        line = lines[i]
        top = re.match(r"^  (\w+):$", line)
        if top:
            stage = top.group(1)
        out.append(line)
        if re.match(rf"^\s+{key}:$", line) and stage in DVC and stage not in skip:
            indent = re.match(r"^(\s+)", lines[i + 1]).group(1)
            i += 1
            old = []
            while i < len(lines) and lines[i].startswith(f"{indent}- "):
                old.append(lines[i][len(indent) + 2:])
                i += 1
            out += [f"{indent}- {item}" for item in items(stage, old)]
            continue
        i += 1
    return "\n".join(out) + "\n"


def rewrite_code_deps(text: str) -> str:
    """Each stage's code dependencies replaced by the derived ones (the others kept)."""
    return rewrite_lists(text, "deps", lambda stage, old: sorted(code_of(stage_module(stage))) + [
        item for item in old if not (item.endswith(".py") or item in PACKAGES)])


def rewrite_params(text: str) -> str:
    """Each stage's params replaced by the ones it reads."""
    def reads(stage, _old):
        found = param_reads(stage_module(stage), foreach_of(stage))
        return sorted(r for r in found if not any(r.startswith(o + ".") for o in found))
    return rewrite_lists(text, "params", reads, skip=("check_params",))  # it reads the whole file


# --- parameters: what a stage reads is what DVC tracks ---------------------------------------

#: A family of named entries: reading any of it reads the sections its values start from.
FAMILIES = {"students": ("teacher", "student"), "rnn_students": ("rnn_teacher", "rnn_student")}


def param_reads(module: str, foreach: str | None) -> set[str]:
    """The parameters a stage module reads: ``p.<section>[.<key>]`` of the ``p`` its
    ``load(...)`` returns (a family, or ``sources``, read by a stage run per entry reads
    that entry: ``students.${key}``). Handing ``p`` itself to another function is refused:
    what that function read would escape this count."""
    import ast

    from pipeline.core.provenance import module_file

    tree = ast.parse(module_file(module).read_text())
    names = {t.id for node in ast.walk(tree) if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
             and getattr(node.value.func, "id", None) == "load" for t in node.targets if isinstance(t, ast.Name)}
    reads = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            passed = [a for a in [*node.args, *(k.value for k in node.keywords)] if isinstance(a, ast.Name)]
            assert not any(a.id in names for a in passed), f"{module}: hands its params to a function"
        if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in names):
            continue
        section = node.attr
        parent = next((n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.value is node), None)
        key = f"{section}.{parent.attr}" if parent is not None and not parent.attr.startswith("model_") else section
        if section in (*FAMILIES, "sources") and section == foreach:
            key = f"{section}.${{key}}"
        reads |= {key, *FAMILIES.get(section, ())}
    return reads


def tracked_params(stage: str) -> set[str]:
    return {p if isinstance(p, str) else next(iter(p)) for p in stage_body(stage).get("params", [])}


def foreach_of(stage: str) -> str | None:
    return DVC[stage]["foreach"].strip("${}") if "foreach" in DVC[stage] else None


@pytest.mark.parametrize("stage", sorted(s for s in DVC if s != "check_params"))
def test_stage_tracks_exactly_the_params_it_reads(stage):
    reads, tracked = param_reads(stage_module(stage), foreach_of(stage)), tracked_params(stage)
    covered = lambda name, by: name == by or name.startswith(by + ".")  # noqa: E731
    missing = sorted(r for r in reads if not any(covered(r, t) for t in tracked))
    unread = sorted(t for t in tracked if not any(covered(r, t) or covered(t, r) for r in reads))
    assert not missing, f"{stage}: dvc.yaml does not track params it reads: {missing}"
    assert not unread, f"{stage}: dvc.yaml tracks params it never reads: {unread}"


def test_the_params_check_runs_first_over_the_whole_file():
    check = DVC["check_params"]
    assert check["params"] == [{"params.yaml": None}] and check["outs"] == ["reports/params.json"]
    waiting = [s for s in DVC if s != "check_params"]
    assert all("reports/params.json" in stage_body(s)["deps"] for s in waiting)


if __name__ == "__main__":  # python tests/test_dvc_yaml.py: derive dvc.yaml's code and params dependencies again
    (ROOT / "dvc.yaml").write_text(rewrite_params(rewrite_code_deps((ROOT / "dvc.yaml").read_text())))
