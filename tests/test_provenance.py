"""Provenance records: git object ids, input digests, records that keep outputs
byte-identical, reading them back from every kind of artefact, and naming the commit."""
import json
import os
import subprocess

import h5py
import numpy as np
import pyarrow as pa
import pytest
import torch
from click.testing import CliRunner

from pipeline.core.info import code_version, read
from pipeline.core.provenance import blob_id, code_files, record
from pipeline.core.tables import write_parquet

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "GIT_CONFIG_GLOBAL": "/dev/null"}


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV}).stdout.strip()


def test_blob_id_is_what_git_computes(tmp_path):
    f = tmp_path / "a.py"
    f.write_bytes(b"print('hello')\n\x00\xff")
    expected = subprocess.run(["git", "hash-object", str(f)], check=True, capture_output=True, text=True).stdout.strip()
    assert blob_id(f) == expected


def test_record_is_deterministic_relative_and_names_the_stage_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "t.parquet").write_bytes(b"table")
    one = record("stages.train_teacher", {"teacher": {"lr": 0.1}}, {"build": tmp_path / "data"})
    two = record("stages.train_teacher", {"teacher": {"lr": 0.1}}, {"build": "data"})
    assert json.dumps(one, sort_keys=True) == json.dumps(two, sort_keys=True)
    assert one["stage"] == "train_teacher" and one["inputs"]["build"]["path"] == "data"
    assert sorted(one["code"]) == code_files("stages.train_teacher")
    assert "pipeline/training/train.py" in one["code"] and "stages/train_teacher.py" in one["code"]


@pytest.fixture
def repo(tmp_path):
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    git(repo, "init", "-q")
    (repo / "pkg" / "a.py").write_text("A = 1\n")
    (repo / "pkg" / "b.py").write_text("B = 1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "first")
    first = git(repo, "rev-parse", "HEAD")
    (repo / "pkg" / "a.py").write_text("A = 2\n")
    git(repo, "commit", "-qam", "second")
    (repo / "other.txt").write_text("unrelated\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "third touches other files")
    return repo, first, git(repo, "rev-parse", "HEAD~1")


def test_code_version_names_the_commit_or_says_dirty(repo):
    repo, first, second = repo
    code = lambda a: {"pkg/a.py": blob_id_of(a), "pkg/b.py": blob_id_of("B = 1\n")}  # noqa: E731
    now = code_version(code("A = 2\n"), repo)
    assert now["commit"] == second and now["subject"] == "second" and not now["dirty"] and now["changed_now"] == []
    old = code_version(code("A = 1\n"), repo)
    assert old["commit"] == first and old["changed_now"] == ["pkg/a.py"]
    (repo / "pkg" / "a.py").write_text("A = 3\n")  # run on an uncommitted edit
    dirty = code_version(code("A = 3\n"), repo)
    assert dirty["commit"] is None and dirty["dirty"] and dirty["changed_now"] == []
    assert code_version(code("A = 2\n"), repo.parent / "not-a-repo")["git"] is False


def blob_id_of(text: str) -> str:
    """git's own id of a file with this text (independent of pipeline.core.provenance)."""
    return subprocess.run(["git", "hash-object", "--stdin"], input=text, check=True, capture_output=True,
                          text=True).stdout.strip()


def test_read_back_from_every_kind_of_artefact(tmp_path):
    rec = [{"format": 1, "stage": "s", "params": {"x": 1}, "code": {}, "inputs": {}}]
    torch.save({"state_dict": {}, "provenance": rec}, tmp_path / "m.pt")
    torch.save({"kind": "bundle", "provenance": rec, "members": [{"provenance": rec}, {"provenance": rec}]},
               tmp_path / "bundle.pt")
    (tmp_path / "r.json").write_text(json.dumps({"score": 1.0, "provenance": rec}))
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f.attrs["provenance"] = json.dumps(rec)
    write_parquet(pa.table({"a": np.arange(3)}), tmp_path / "t.parquet", rec)
    for name in ("m.pt", "r.json", "c.h5", "t.parquet"):
        assert read(tmp_path / name) == rec, name
    assert read(tmp_path / "bundle.pt") == rec * 3  # the bundle's own, then its members'


@pytest.mark.parametrize("name, content, message", [
    ("old.json", json.dumps({"score": 1}), "no provenance recorded"),
    ("bad.json", "{not json", "not a JSON report"),
    ("notes.txt", "hello", "not an mtaffect artefact"),
])
def test_info_refuses_what_holds_no_record_in_one_line(tmp_path, name, content, message):
    from stages.info import cli

    (tmp_path / name).write_text(content)
    result = CliRunner().invoke(cli, [str(tmp_path / name)])
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output
    missing = CliRunner().invoke(cli, [str(tmp_path / "absent.pt")])
    assert missing.exit_code != 0 and "Traceback" not in missing.output


def test_info_prints_stage_inputs_and_params(tmp_path, monkeypatch):
    from stages.info import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.bin").write_bytes(b"input")
    rec = record("stages.ensemble", {"ensemble": {"members": ["s1"]}}, {"s1": "in.bin"})
    (tmp_path / "report.json").write_text(json.dumps({"provenance": [rec]}))
    out = CliRunner().invoke(cli, ["report.json"]).output
    assert "stage   ensemble" in out and "input   s1: in.bin sha256" in out and "(same now)" in out
    assert 'param   ensemble.members = ["s1"]' in out
    (tmp_path / "in.bin").write_bytes(b"changed")
    assert "(differs now)" in CliRunner().invoke(cli, ["report.json"]).output
    as_json = json.loads(CliRunner().invoke(cli, ["report.json", "--json"]).output)
    assert as_json == {"report.json": [rec]}
