"""The whole pipeline with the real `dvc` command, in a temporary git repository, on the
tiny profile: repro, no-op repro, byte-identical forced rerun, targeted reruns after a
param change, and push / fresh clone / pull through a local remote."""
import json

import pytest
import yaml

pytestmark = pytest.mark.slow


def ran_stages(output: str) -> list[str]:
    return sorted(line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage"))


def test_dvc_pipeline_end_to_end(dvc_project, tmp_path):
    p = dvc_project
    assert "train_teacher" in p.dvc("stage", "list").stdout

    first = p.dvc("repro")
    stages = ran_stages(first.stdout)
    assert stages == sorted(["synth", "extract@affwild2", "extract@disfa", "extract@expw", "extract@afewva",
                             "build", "train_teacher", "evaluate"]), first.stdout
    assert p.dvc("status", "-q", check=False).returncode == 0
    evaluation = json.loads((p.path / "reports/evaluation.json").read_text())
    assert {"baseline", "teacher"} <= set(evaluation)
    lock = (p.path / "dvc.lock").read_text()

    # nothing changed: nothing runs
    assert ran_stages(p.dvc("repro").stdout) == []

    # every output is byte-identical when recomputed: dvc.lock does not change
    p.dvc("repro", "--force", "--no-run-cache")
    assert (p.path / "dvc.lock").read_text() == lock

    # a parameter of one stage reruns that stage only
    params = yaml.safe_load((p.path / "params.yaml").read_text())
    params["profiles"]["tiny"]["evaluate"]["bootstrap"] = 10
    (p.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran_stages(p.dvc("repro").stdout) == ["evaluate"]
    # ... and editing an inactive profile reruns nothing
    params["profiles"]["demo"]["teacher"]["epochs"] = 7
    (p.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
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


def test_bad_params_stop_before_any_work(dvc_project):
    p = dvc_project
    params = yaml.safe_load((p.path / "params.yaml").read_text())
    params["teacher"]["epochs"] = "eight"
    (p.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = p.dvc("repro", check=False)
    assert result.returncode != 0
    assert "teacher.epochs: expected an integer, got 'eight'" in result.stdout + result.stderr
    assert not (p.path / "data").exists()
