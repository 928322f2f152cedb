"""The whole pipeline with the real `dvc` command, in a temporary git repository, on the
tiny profile: repro, no-op repro, byte-identical forced rerun, targeted reruns after a
param change, and push / fresh clone / pull through a local remote."""
import json

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import f1_score

from pipeline.labels import AU_NAMES, EXPR_NAMES

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


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
    check_evaluation_against_sklearn(pd.read_parquet(p.path / "reports/val_predictions.parquet"), evaluation)
    lock = (p.path / "dvc.lock").read_text()

    # nothing changed: nothing runs
    assert ran_stages(p.dvc("repro").stdout) == []

    # editing code only the generator runs reruns synth alone: its outputs are the same
    # bytes, so DVC stops there (extraction and the teacher do not depend on that code)
    episodes = p.path / "pipeline/sources/synthetic/episodes.py"
    episodes.write_text(episodes.read_text() + "\n# an edit that changes no output\n")
    assert ran_stages(p.dvc("repro").stdout) == ["synth"]

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


def ccc(x, y):
    return 2 * np.cov(x, y, bias=True)[0, 1] / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


def check_evaluation_against_sklearn(table: pd.DataFrame, evaluation: dict) -> None:
    """evaluation.json is recomputable from val_predictions.parquet (to 1e-6)."""
    for model, rows in table.groupby("model"):
        ev = evaluation[model]
        y = rows[list(AU_NAMES)].to_numpy()
        pred = (rows[[f"p_{a}" for a in AU_NAMES]].to_numpy() >= rows[[f"thr_{a}" for a in AU_NAMES]].to_numpy())
        known = y >= 0
        f1s = [f1_score(y[known[:, j], j], pred[known[:, j], j], zero_division=0) for j in range(8)]
        acc = (pred[known] == (y[known] == 1)).mean()
        assert ev["AU"]["f1"] == pytest.approx(np.mean(f1s), abs=1e-6)
        assert ev["AU"]["score"] == pytest.approx(0.5 * np.mean(f1s) + 0.5 * acc, abs=1e-6)
        e = rows[rows["expr"] >= 0]
        p = e[[f"p_{c}" for c in EXPR_NAMES]].to_numpy().argmax(axis=1)
        f1 = f1_score(e["expr"], p, average="macro")
        assert ev["EXPR"]["score"] == pytest.approx(0.67 * f1 + 0.33 * (p == e["expr"].to_numpy()).mean(), abs=1e-6)
        v = rows[rows["valence"].notna()]
        assert ev["VA"]["ccc_valence"] == pytest.approx(ccc(v["valence"].to_numpy(np.float64),
                                                            v["pred_valence"].to_numpy(np.float64)), abs=1e-6)
