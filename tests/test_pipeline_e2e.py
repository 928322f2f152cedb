"""The whole pipeline with the real `dvc` command, in a temporary git repository, on the
tiny preset: repro, no-op repro, byte-identical forced rerun, targeted reruns after a
param change, and push / fresh clone / pull through a local remote."""
import json

import pandas as pd
import pytest
import yaml
from reference import assert_close_dicts, sklearn_evaluation

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


TEMPORAL = ["rnn_ensemble", "rnn_soft_labels", "rnn_student@r1", "rnn_student@r2", "rnn_student@r3", "rnn_teacher"]


def ran_stages(output: str) -> list[str]:
    """The stages a `dvc repro` ran, but the params check, which runs whenever params.yaml
    changes and, its output being the same bytes, reruns nothing by itself."""
    return sorted(line.split("'")[1] for line in output.splitlines()
                  if line.startswith("Running stage") and "'check_params'" not in line)


def test_dvc_pipeline_end_to_end(dvc_project, tmp_path):
    p = dvc_project
    assert "train_teacher" in p.dvc("stage", "list").stdout

    first = p.dvc("repro")
    assert next(line for line in first.stdout.splitlines() if line.startswith("Running stage")) == \
        "Running stage 'check_params':"  # the whole params file is checked before any stage works
    stages = ran_stages(first.stdout)
    assert stages == sorted(["synth", "extract@affwild2", "extract@disfa", "extract@expw", "extract@afewva",
                             "build", "train_teacher", "soft_labels", "train_student@s1", "train_student@s2",
                             "ensemble", "evaluate", "features", *TEMPORAL]), first.stdout
    assert p.dvc("status", "-q", check=False).returncode == 0
    evaluation = json.loads((p.path / "reports/evaluation.json").read_text())
    assert set(evaluation) == {"baseline", "pixel_probe", "teacher", "s1", "s2", "ensemble", "ensemble_smoothed",
                               "students_mean", "rnn_teacher_T4", "rnn_teacher_T8", "rnn_ensemble_T4",
                               "rnn_ensemble_T8"}
    assert set(evaluation["rnn_ensemble_T8"]) >= {"vs_teacher", "vs_ensemble", "vs_ensemble_smoothed"}
    table = pd.read_parquet(p.path / "reports/val_predictions.parquet")
    assert set(table["model"]) == set(evaluation) - {"students_mean"}
    check_evaluation_against_sklearn(table, evaluation)
    lock = (p.path / "dvc.lock").read_text()

    # every model and report says where it came from: the committed code, inputs as now
    head = p.git("rev-parse", "HEAD").stdout.strip()
    info = p.run("python", "-m", "stages.info", "models/ensemble.pt", "reports/evaluation.json").stdout
    assert info.count(f"code    commit {head[:12]}") == 4, info  # ensemble, s1, s2, evaluate
    assert "stage   train_student" in info and "input   teacher: models/teacher.pt" in info
    assert "(differs now)" not in info and "dirty" not in info

    # nothing changed: nothing runs
    assert ran_stages(p.dvc("repro").stdout) == []

    # extraction depends on each dataset's version file, not on its folder, and the synthetic
    # data sets are no DVC outputs (as real ones are not): a hand edit of one is not DVC's to
    # see, and an extraction run on it stops, naming the change and how to undo it
    lock_entry = yaml.safe_load(lock)["stages"]["extract@disfa"]
    assert "data/synth/disfa.version.json" in [d["path"] for d in lock_entry["deps"]]
    assert "data/synth/disfa" not in [o["path"] for o in yaml.safe_load(lock)["stages"]["synth"]["outs"]]
    label = sorted((p.path / "data/synth/disfa/ActionUnit_Labels").rglob("*.txt"))[0]
    original = label.read_bytes()
    label.write_bytes(original.replace(b"0", b"5", 1))
    assert p.dvc("status", "-q", check=False).returncode == 0
    edited = p.run("python", "-m", "stages.extract", "--source", "disfa", "--out", "scratch/disfa", "--quiet",
                   check=False)
    assert edited.returncode != 0 and "its files differ from those data/synth/disfa.version.json was written " \
        "for" in edited.stderr and "dvc repro --force synth" in edited.stderr, edited.stderr
    label.write_bytes(original)

    # editing code only the generator runs reruns synth alone: its outputs are the same
    # bytes, so DVC stops there (extraction and the teacher do not depend on that code)
    episodes = p.path / "synthetic/episodes.py"
    episodes.write_text(episodes.read_text() + "\n# an edit that changes no output\n")
    assert ran_stages(p.dvc("repro").stdout) == ["synth"]
    # early cutoff: a comment in code one stage runs reruns that stage, which writes the same
    # data (only its provenance record, which nothing depends on, changes): nothing after it runs
    balance = p.path / "pipeline/build/balance.py"
    balance.write_text(balance.read_text() + "\n# a comment that changes no output\n")
    assert ran_stages(p.dvc("repro").stdout) == ["build"]
    lock = (p.path / "dvc.lock").read_text()

    # every output is byte-identical when recomputed: dvc.lock does not change
    p.dvc("repro", "--force", "--no-run-cache")
    assert (p.path / "dvc.lock").read_text() == lock
    # an uncommitted edit of code extraction does not run leaves its record clean
    info = p.run("python", "-m", "stages.info", "reports/extract/affwild2.json").stdout
    assert "code    commit" in info and "dirty" not in info  # the synth edit is not extraction's code

    # one student's seed reruns that student, the ensemble, the evaluation and the features
    # (they come from the best member); the temporal stages rerun if the features changed
    params = yaml.safe_load((p.path / "params.yaml").read_text())
    params["students"]["s2"]["seed"] = 7
    (p.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    ran = ran_stages(p.dvc("repro").stdout)
    assert [s for s in ran if s not in TEMPORAL] == ["ensemble", "evaluate", "features", "train_student@s2"]
    assert set(ran) & set(TEMPORAL) in (set(), set(TEMPORAL))

    # a teacher parameter reruns the teacher and everything after it, not extraction or build
    params["teacher"]["lr"] = 0.0002
    (p.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran_stages(p.dvc("repro").stdout) == sorted(["ensemble", "evaluate", "features", "soft_labels",
                                                        "train_student@s1", "train_student@s2", "train_teacher",
                                                        *TEMPORAL])

    # the sequence lengths rerun the temporal stages and the evaluation, nothing else
    params["temporal"]["sequence_lengths"] = [4, 6]
    (p.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran_stages(p.dvc("repro").stdout) == sorted(["evaluate", *TEMPORAL])
    assert "rnn_ensemble_T6" in json.loads((p.path / "reports/evaluation.json").read_text())
    # ... and one temporal student's seed reruns that student, the temporal ensemble and the evaluation
    params["rnn_students"]["r2"]["seed"] = 9
    (p.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran_stages(p.dvc("repro").stdout) == ["evaluate", "rnn_ensemble", "rnn_student@r2"]

    # a parameter of one stage reruns that stage only
    params["evaluate"]["bootstrap"] = 10
    (p.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran_stages(p.dvc("repro").stdout) == ["evaluate"]
    # ... and a comment in params.yaml reruns nothing (not even the check)
    (p.path / "params.yaml").write_text("# my note\n" + (p.path / "params.yaml").read_text())
    assert ran_stages(p.dvc("repro").stdout) == []

    # share through the remote: a fresh clone pulls everything and has nothing to run
    p.git("add", "-A")
    p.git("commit", "-q", "-m", "pipeline outputs")
    p.dvc("push")
    clone = tmp_path / "clone"
    p.run("git", "clone", "-q", str(p.path), str(clone))
    pulled = type(p)(clone, p.remote, p.env)
    pulled.dvc("pull")
    assert pulled.dvc("status", "-q", check=False).returncode == 0
    assert ran_stages(pulled.dvc("repro").stdout) == []
    assert (clone / "models/teacher.pt").read_bytes() == (p.path / "models/teacher.pt").read_bytes()
    assert (clone / "models/ensemble.pt").read_bytes() == (p.path / "models/ensemble.pt").read_bytes()
    # the synthetic data sets came as their version files only; synth writes them again, the same bytes
    assert (clone / "data/synth/disfa.version.json").is_file() and not (clone / "data/synth/disfa").exists()
    assert ran_stages(pulled.dvc("repro", "--force", "synth").stdout) == ["synth"]
    assert (clone / "dvc.lock").read_text() == (p.path / "dvc.lock").read_text()


def test_bad_params_stop_before_any_work(dvc_project):
    p = dvc_project
    params = yaml.safe_load((p.path / "params.yaml").read_text())
    params["teacher"]["epochs"] = "eight"
    (p.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = p.dvc("repro", check=False)
    assert result.returncode != 0
    assert "teacher.epochs: expected an integer, got 'eight'" in result.stdout + result.stderr
    assert not (p.path / "data").exists()


def check_evaluation_against_sklearn(table: pd.DataFrame, evaluation: dict) -> None:
    """evaluation.json is recomputable from val_predictions.parquet (to 1e-6), every model."""
    for model, rows in table.groupby("model"):
        assert_close_dicts(evaluation[model], sklearn_evaluation(rows), tol=1e-6)
