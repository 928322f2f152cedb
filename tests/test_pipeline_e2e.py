"""The whole pipeline with the real `dvc` command, in a temporary git repository, on the
tiny preset: repro, no-op repro, byte-identical forced rerun, targeted reruns after a
param change, and push / fresh clone / pull through a local remote."""
import json

import pandas as pd
import pytest
import torch
import yaml
from conftest import make_dvc_project
from reference import assert_close_dicts, sklearn_evaluation

from pipeline.core.schema import ABAW2020, ABAW2022

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
    refuse_a_teacher_of_the_other_schema(p, tmp_path, ABAW2022, ABAW2020)
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


def check_evaluation_against_sklearn(table: pd.DataFrame, evaluation: dict, schema=ABAW2020) -> None:
    """evaluation.json is recomputable from val_predictions.parquet (to 1e-6), every model;
    in the 2022 schema, its era's total too (AU mean F1 + EXPR macro F1 + mean CCC)."""
    for model, rows in table.groupby("model"):
        expected = sklearn_evaluation(rows, schema.aus, schema.expressions)
        assert_close_dicts(evaluation[model], expected, tol=1e-6)
        if schema.era == "2022":
            total = expected["AU"]["f1"] + expected["EXPR"]["f1"] + expected["VA"]["ccc_mean"]
            assert evaluation[model]["abaw2022_total"] == pytest.approx(total, abs=1e-6), model


def test_dvc_pipeline_in_the_2022_schema(tmp_path):
    """The tiny2022 preset under real DVC: the synthetic files of the 2022+ releases, heads of
    12 AUs and 8 classes, the 2022 era's metrics recomputed with scikit-learn, predict's 12 AU
    columns, an s-Aff-Wild2 export that its reader parses back, and a checkpoint of the other
    schema refused in one line with nothing written."""
    from pipeline.extraction.sources.saffwild2 import HEADER, parse_row

    p = make_dvc_project(tmp_path, "tiny2022")
    p.dvc("repro")
    assert (p.path / "data/synth/affwild2/annotations/AU_Detection_Challenge/Train_Set").is_dir()
    # s-Aff-Wild2 and AffectNet, written by synth and read by their readers, train every task they label
    for task, sources in (("AU", {"saffwild2"}), ("EXPR", {"saffwild2", "affectnet"}), ("VA", {"saffwild2", "affectnet"})):
        assert sources <= set(pd.read_parquet(p.path / f"data/build/train_{task}.parquet")["source"]), task
    weights = torch.load(p.path / "models/teacher.pt", weights_only=True)["state_dict"]
    outputs = {task: [v for k, v in weights.items() if k.startswith(f"heads.{task}.") and v.dim() == 2][-1].shape[0]
               for task in ("AU", "EXPR")}
    assert outputs == {"AU": 12, "EXPR": 8}
    evaluation = json.loads((p.path / "reports/evaluation.json").read_text())
    assert list(evaluation["teacher"]["AU"]["per_au_f1"]) == list(ABAW2022.aus)
    assert list(evaluation["teacher"]["EXPR"]["per_class_f1"]) == list(ABAW2022.expressions)
    table = pd.read_parquet(p.path / "reports/val_predictions.parquet")
    check_evaluation_against_sklearn(table, evaluation, ABAW2022)

    video = sorted((p.path / "data/synth/affwild2/cropped_aligned").iterdir())[0]
    p.run("python", "-m", "stages.predict", "--aligned", str(video), "--model", "models/ensemble.pt", "--out",
          "scratch/predict", "--quiet")
    predicted = pd.read_csv(p.path / "scratch/predict" / f"{video.name}.csv")
    assert [c for c in predicted if c in ABAW2022.aus] == list(ABAW2022.aus) and "p_Other" in predicted
    p.run("python", "-m", "stages.export_abaw", "--mtl", f"scratch/predict/{video.name}.csv", "--out", "scratch/mtl")
    lines = (p.path / "scratch/mtl/MTL_predictions.txt").read_text().splitlines()
    assert tuple(lines[0].split(",")) == HEADER and len(lines) == 1 + len(predicted)
    rows = [parse_row(line) for line in lines[1:]]
    assert [r[0] for r in rows] == [video.name] * len(predicted) and [r[1] for r in rows] == list(predicted["frame"])
    assert [r[3] for r in rows] == list(predicted["expression"].map(list(ABAW2022.expressions).index))

    refuse_a_teacher_of_the_other_schema(p, tmp_path, ABAW2020, ABAW2022)


def refuse_a_teacher_of_the_other_schema(p, tmp_path, other, used) -> None:
    """soft-labels given a teacher of schema ``other`` in a project of ``used``: one line
    naming both, nothing written."""
    from pipeline.training.models import MultitaskNet, save_checkpoint

    teacher = tmp_path / f"teacher-{other.name}.pt"
    save_checkpoint(teacher, MultitaskNet("mobilenet_v3_small", schema=other))
    refused = p.run("python", "-m", "stages.soft_labels", "--teacher", str(teacher), "--out", "scratch/soft.h5",
                    "--report", "scratch/soft.json", "--quiet", check=False)
    assert refused.returncode == 1 and other.name in refused.stderr and used.name in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert not (p.path / "scratch/soft.h5").exists() and not (p.path / "scratch/soft.json").exists()
