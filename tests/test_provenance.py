"""Provenance records: git object ids, input and output digests, records written beside
the artefacts (which therefore stay byte-identical when only the code changes), found
again from any file a stage wrote, or a copy of it, and the commit that holds the code."""
import hashlib
import json
import os
import subprocess

import pytest
import torch
from click.testing import CliRunner

from pipeline.core.info import code_version, find
from pipeline.core.provenance import blob_id, code_files, write

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
    (tmp_path / "model.pt").write_bytes(b"weights")
    one = write("provenance/train_teacher.json", "stages.train_teacher", {"teacher": {"lr": 0.1}},
                {"build": tmp_path / "data"}, {"checkpoint": "model.pt"})
    first = (tmp_path / "provenance" / "train_teacher.json").read_bytes()
    two = write("provenance/train_teacher.json", "stages.train_teacher", {"teacher": {"lr": 0.1}}, {"build": "data"},
                {"checkpoint": tmp_path / "model.pt"})
    assert one == two and (tmp_path / "provenance" / "train_teacher.json").read_bytes() == first
    assert one["stage"] == "train_teacher" and one["inputs"]["build"]["path"] == "../data"  # from the record's folder
    assert one["outputs"]["checkpoint"] == {"path": "../model.pt", "sha256": hashlib.sha256(b"weights").hexdigest()}
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


def project(tmp_path, monkeypatch):
    """A project folder with two stage runs' records: a student and an ensemble of it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "students").mkdir(parents=True)
    (tmp_path / "in.bin").write_bytes(b"input")
    student = tmp_path / "models" / "students" / "s1.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}}, student)
    torch.save({"kind": "mtaffect-ensemble", "members": [{"name": "s1", "sha256": hashlib.sha256(
        student.read_bytes()).hexdigest()}]}, tmp_path / "models" / "ensemble.pt")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "ensemble.json").write_text("{}")
    write("provenance/train_student/s1.json", "stages.train_student", {"student": "s1"}, {"data": "in.bin"},
          {"checkpoint": student})
    return write("provenance/ensemble.json", "stages.ensemble", {"ensemble": {"members": ["s1"]}}, {"s1": student},
                 {"bundle": "models/ensemble.pt", "report": "reports/ensemble.json"})


def test_a_file_finds_the_record_of_the_run_that_wrote_it_and_a_bundle_its_members(tmp_path, monkeypatch):
    rec = project(tmp_path, monkeypatch)
    assert [r for _, r in find("reports/ensemble.json")[0]] == [rec]
    found, _ = find(tmp_path / "models" / "ensemble.pt")
    assert [r["stage"] for _, r in found] == ["ensemble", "train_student"]  # the bundle's own, then its member's
    elsewhere = tmp_path / "copied" / "ensemble.pt"  # a copy, found by its SHA-256
    elsewhere.parent.mkdir()
    elsewhere.write_bytes((tmp_path / "models" / "ensemble.pt").read_bytes())
    assert [r["stage"] for _, r in find(elsewhere)[0]][0] == "ensemble"
    kept = tmp_path / "records" / "mine.json"  # a record written elsewhere (--provenance): itself
    kept.parent.mkdir()
    kept.write_text((tmp_path / "provenance" / "ensemble.json").read_text())
    assert find(kept) == ([(kept, rec)], [])


@pytest.mark.parametrize("name, content, message", [
    ("notes.txt", "hello", "no provenance record names it"),
    ("notes.json", "{\"seen\": 1}", "A record written elsewhere with --provenance: give that file to `mtaffect info`"),
    ("absent.pt", None, "no such file"),
])
def test_info_refuses_what_holds_no_record_in_one_line(tmp_path, monkeypatch, name, content, message):
    from stages.info import cli

    project(tmp_path, monkeypatch)
    if content is not None:
        (tmp_path / name).write_text(content)
    result = CliRunner().invoke(cli, [str(tmp_path / name)])
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output
    os.mkfifo(tmp_path / "pipe.pt")
    fifo = CliRunner().invoke(cli, [str(tmp_path / "pipe.pt")])
    assert fifo.exit_code != 0 and "not a regular file" in fifo.output
    several = CliRunner().invoke(cli, [str(tmp_path / "pipe.pt"), "reports/ensemble.json"])  # the next one all the same
    assert several.exit_code != 0 and "stage   ensemble" in several.output and "not a regular file" in several.output
    assert f"1 of 2 files have no record to show: {tmp_path / 'pipe.pt'}" in several.output


def test_info_on_a_file_predict_wrote_says_so(tmp_path, monkeypatch):
    from pipeline.predict.outputs import OutputFolder
    from stages.info import cli

    project(tmp_path, monkeypatch)
    table = tmp_path / "predictions" / "clip.csv"
    table.parent.mkdir()
    table.write_text("frame,face\n0,True\n")
    OutputFolder(table.parent, "predict").record(table)
    result = CliRunner().invoke(cli, [str(table)])
    assert result.exit_code != 0 and f"{table}: written by `mtaffect predict` (listed in " in result.output
    assert "`mtaffect info` the model bundle it used" in result.output
    table.write_text("frame,face\n0,False\n")  # edited since: no longer what predict wrote
    assert "no provenance record names it" in CliRunner().invoke(cli, [str(table)]).output


def test_info_warns_of_a_damaged_record_and_names_it_when_nothing_is_found(tmp_path, monkeypatch):
    from stages.info import cli

    project(tmp_path, monkeypatch)
    record = tmp_path / "provenance" / "ensemble.json"
    record.write_text(record.read_text()[:40])  # cut short
    result = CliRunner().invoke(cli, ["models/students/s1.pt"])
    assert result.exit_code == 0 and "stage   train_student" in result.output
    assert f"warning: {record} (" in result.output and "could not be read" in result.output
    lost = CliRunner().invoke(cli, ["reports/ensemble.json"])
    assert lost.exit_code != 0 and "Traceback" not in lost.output
    assert f"1 record(s) could not be read, e.g. {record} (" in lost.output


@pytest.mark.parametrize("edit, wrong", [
    (lambda r: r.pop("stage"), "stage is missing"),
    (lambda r: r.update(inputs=None), "inputs is not a mapping"),
    (lambda r: r["outputs"]["bundle"].pop("sha256"), "output 'bundle' lacks its path or sha256"),
    (lambda r: r["inputs"]["s1"].update(sha256=None), "input 's1' lacks its path or sha256"),
    (lambda r: r["code"].update({"x.py": 3}), "code holds something else than blob ids"),
])
def test_a_record_edited_out_of_shape_is_a_warning_not_a_traceback(tmp_path, monkeypatch, edit, wrong):
    from stages.info import cli

    project(tmp_path, monkeypatch)
    record = tmp_path / "provenance" / "ensemble.json"
    rec = json.loads(record.read_text())
    edit(rec)
    record.write_text(json.dumps(rec))
    result = CliRunner().invoke(cli, ["models/students/s1.pt"])  # its own record is whole
    assert result.exit_code == 0 and "stage   train_student" in result.output, result.output
    assert f"warning: {record} (a provenance record whose {wrong}: edited by hand?)" in result.output
    lost = CliRunner().invoke(cli, ["models/ensemble.pt"])  # the damaged one was its only record
    assert lost.exit_code != 0 and "Traceback" not in lost.output and f"{wrong}: edited by hand?" in lost.output


def test_info_prints_stage_inputs_outputs_and_params(tmp_path, monkeypatch):
    from stages.info import cli

    project(tmp_path, monkeypatch)
    out = CliRunner().invoke(cli, ["reports/ensemble.json"]).output
    assert "stage   ensemble" in out and "input   s1: models/students/s1.pt sha256" in out and "(same now)" in out
    assert "output  bundle: models/ensemble.pt sha256" in out and 'param   ensemble.members = ["s1"]' in out
    folder = CliRunner().invoke(cli, ["models/students"])  # an output folder: found by its path
    assert folder.exit_code == 0 and "stage   train_student" in folder.output, folder.output
    (tmp_path / "models" / "students" / "s1.pt").write_bytes(b"changed")
    assert "(differs now)" in CliRunner().invoke(cli, ["reports/ensemble.json"]).output
    monkeypatch.chdir(tmp_path / "models")  # from another folder: paths from the record's place, shown from here
    out = CliRunner().invoke(cli, ["ensemble.pt", "--no-check-inputs"]).output
    assert "input   s1: students/s1.pt" in out
    as_json = json.loads(CliRunner().invoke(cli, ["../reports/ensemble.json", "--json"]).output)
    assert as_json["../reports/ensemble.json"][0]["stage"] == "ensemble"
    both = json.loads(CliRunner().invoke(cli, ["../reports/ensemble.json", "ensemble.pt", "--json"]).output)
    assert list(both) == ["../reports/ensemble.json", "ensemble.pt"]  # one JSON document, not two
    empty = CliRunner().invoke(cli, [""])  # not every record of the project
    assert empty.exit_code == 2 and "an empty name" in empty.output


def test_a_run_elsewhere_keeps_the_record_of_the_stages_own_outputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "faces.bin").write_bytes(b"the pipeline's")
    record = tmp_path / "provenance" / "extract" / "disfa.json"
    ours = write(record, "stages.extract", {}, {}, {"faces": "data/faces.bin"})
    mine = tmp_path / "elsewhere" / "out"
    mine.mkdir(parents=True)
    (mine / "faces.bin").write_bytes(b"a user's run by hand")
    write(record, "stages.extract", {}, {}, {"faces": mine / "faces.bin"})
    assert json.loads(record.read_text()) == ours  # the stage's record kept
    aside = tmp_path / "elsewhere" / "out" / "provenance" / "extract" / "disfa.json"
    assert json.loads(aside.read_text())["outputs"]["faces"]["path"] == "../../faces.bin"
    assert [r for _, r in find(mine / "faces.bin")[0]][0]["stage"] == "extract"  # info finds it there
    write(record, "stages.extract", {"again": 1}, {}, {"faces": "data/faces.bin"})  # the stage itself: replaced
    assert json.loads(record.read_text())["params"] == {"again": 1}


def test_info_says_the_label_schema_an_artefact_records(tmp_path):
    import h5py
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.core.index import index_schema
    from pipeline.core.info import label_schema_of
    from pipeline.core.schema import ABAW2020, ABAW2022
    from pipeline.training.models import MultitaskNet, model_schema, save_checkpoint

    save_checkpoint(tmp_path / "t.pt", MultitaskNet("mobilenet_v3_small", schema=ABAW2022))
    with h5py.File(tmp_path / "c.h5", "w") as h5:
        h5.attrs["label_schema"] = json.dumps(model_schema(ABAW2022))
    pq.write_table(pa.Table.from_pylist([], schema=index_schema(ABAW2020)), tmp_path / "val.parquet")
    (tmp_path / "notes.pt").write_bytes(b"not a torch file")
    assert label_schema_of(tmp_path / "t.pt") == label_schema_of(tmp_path / "c.h5") == ABAW2022.describe()
    assert label_schema_of(tmp_path / "val.parquet") == ABAW2020.describe()
    assert label_schema_of(tmp_path / "notes.pt") is None and label_schema_of(tmp_path / "x.json") is None


def test_info_says_what_it_could_not_read_and_reports_the_rest(tmp_path, monkeypatch):
    """A provenance folder it may not list is named (its records could have named the file);
    an input it may not read now is said on its line, not a traceback over the whole report."""
    import os

    from stages.info import cli

    project(tmp_path, monkeypatch)
    scandir, opened = os.scandir, open

    def denied(path="."):
        if os.fspath(path) == str(tmp_path / "provenance"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", denied)
    lost = CliRunner().invoke(cli, ["models/ensemble.pt"])
    assert lost.exit_code != 0 and "Traceback" not in lost.output
    assert f"could not be read, e.g. {tmp_path / 'provenance'} (Permission denied: a folder that cannot be listed)" \
        in lost.output, lost.output
    monkeypatch.setattr(os, "scandir", scandir)

    def unreadable(file, *args, **kwargs):
        if os.fspath(file) == str(tmp_path / "models" / "students" / "s1.pt"):
            raise PermissionError(13, "Permission denied", os.fspath(file))
        return opened(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", unreadable)
    result = CliRunner().invoke(cli, ["reports/ensemble.json"])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert "input   s1: models/students/s1.pt sha256" in result.output
    assert "(cannot be read now: Permission denied)" in result.output and "output  bundle: models/ensemble.pt" in result.output


def test_a_closed_standard_output_ends_a_command_quietly(tmp_path):
    """`mtaffect info FILE | head -1` (#94): the reader closed the pipe; the command ends
    as Unix tools do (status 141, no "Error: Broken pipe", no "Exception ignored" at exit)."""
    import sys

    script = ("import click\nfrom stages.common import friendly_errors\n"
              "@click.command()\n@friendly_errors\ndef cli():\n"
              "    for i in range(200000):\n        click.echo(f'line {i}')\n"
              "cli()\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"line 0\n"
    proc.stdout.close()  # as head does after its line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and err == "", err


def test_a_provenance_path_that_is_some_other_file_is_never_replaced(tmp_path):
    from pipeline.core.errors import DataError

    lock = tmp_path / "dvc.lock"
    lock.write_text("schema: '2.0'\nstages: {}\n")  # e.g. extract --provenance dvc.lock
    (tmp_path / "out.bin").write_bytes(b"x")
    with pytest.raises(DataError, match=f"{lock}: exists and is no provenance record: refusing to replace it"):
        write(lock, "stages.extract", {}, {}, {"faces": tmp_path / "out.bin"})
    assert lock.read_text() == "schema: '2.0'\nstages: {}\n"
