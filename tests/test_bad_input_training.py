"""Bad input and hostile conditions of the training stages (train-teacher, soft-labels),
through the real command line on real indexes, shards and checkpoints: each case checks the
exit status, the one-line message (no traceback) and that nothing half-written is left."""
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner

from conftest import set_preset
from pipeline.core.fileio import hold_lock, release_lock
from pipeline.training.models import MultitaskNet, save_checkpoint
from pipeline.training.params import TrainParams
from stages.cli import main

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
#: root ignores file modes: these drop the capabilities that let it (tests/test_dvc_lock.py)
NO_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner",
               "--inh-caps=-dac_override,-dac_read_search,-fowner"]


@pytest.fixture
def params(tmp_path) -> Path:
    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    set_preset(path, "tiny")
    return path


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    save_checkpoint(path, MultitaskNet("mobilenet_v3_small"), {"train": TrainParams().model_dump()})
    return path


def run(params: Path, *args):
    result = CliRunner().invoke(main, [args[0], "--params", str(params), *map(str, args[1:])])
    assert "Traceback" not in result.output, result.output
    return result


def one_error(output: str) -> str:
    """The one line a failed command printed."""
    errors = [line for line in output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "Traceback" not in output, output
    return errors[0]


def no_leftovers(folder: Path) -> None:
    assert not [p for p in folder.rglob(".*") if p.name.endswith((".tmp", ".old")) or ".part" in p.name], \
        list(folder.rglob(".*"))


def copy_build(index_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the build and its faces (the indexes name their shards relatively)."""
    shutil.copytree(index_dir.parent / "faces", tmp_path / "faces")
    shutil.copytree(index_dir, tmp_path / "build")
    return tmp_path / "build"


def train_args(build: Path, out: Path) -> list:
    return ["--index", build, "--out", out / "t.pt", "--log", out / "t.csv", "--report", out / "t.json",
            "--resume", out / "scratch" / "r.pt", "--provenance", out / "p.json", "--quiet"]


# --- soft-labels ---------------------------------------------------------------------------


def cache_frames(index_dir: Path) -> int:
    uids = set()
    for task in ("AU", "EXPR", "VA"):
        uids.update(pq.read_table(index_dir / f"train_{task}.parquet", columns=["uid"])["uid"].to_pylist())
    return len(uids)


@pytest.mark.parametrize("how", ["small file system", "file size limit"])
def test_a_disk_filling_while_the_cache_is_written_is_one_line_and_leaves_nothing(index_dir, teacher, params,
                                                                                  tmp_path, how):
    # the logits (one view: 55 float16 per frame) fit; the cache, which holds them and more, does not
    logits = cache_frames(index_dir) * 55 * 2
    folder = tmp_path / "full"
    folder.mkdir()
    limit = None
    if how == "small file system":
        pages = -(-logits // 4096) + 2
        if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={pages * 4}k", "tmpfs", str(folder)],
                          capture_output=True).returncode:
            pytest.skip("cannot mount a small file system here (not root)")
    else:
        limit = logits + 4096

    def file_size_limit():  # writes beyond it fail (EFBIG) as on a full disk
        if limit:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    out = folder / "sl.h5"
    try:
        proc = subprocess.run([str(BIN / "mtaffect"), "soft-labels", "--params", str(params), "--index",
                               str(index_dir), "--teacher", str(teacher), "--out", str(out), "--report",
                               str(tmp_path / "r.json"), "--provenance", str(tmp_path / "p.json"), "--quiet",
                               "--set", "soft_labels.mode=centre"],
                              preexec_fn=file_size_limit, capture_output=True, text=True, cwd=tmp_path)
        left = list(folder.iterdir())
    finally:
        if how == "small file system":
            subprocess.run(["umount", str(folder)], check=True)
    why = "No space left on device" if how == "small file system" else "File too large"
    assert proc.returncode == 1 and one_error(proc.stderr) == f"Error: {out}: {why}", (proc.returncode, proc.stderr)
    assert left == [] and not (tmp_path / "r.json").exists()


def test_a_second_soft_labels_run_on_the_same_out_is_refused_and_the_first_completes(index_dir, teacher, params,
                                                                                      tmp_path):
    out = tmp_path / "c" / "sl.h5"
    args = ["soft-labels", "--params", str(params), "--index", str(index_dir), "--teacher", str(teacher), "--out",
            str(out), "--quiet", "--set", "soft_labels.mode=views", "--set", "soft_labels.views=8"]
    first = subprocess.Popen([str(BIN / "mtaffect"), *args, "--report", str(tmp_path / "r1.json"), "--provenance",
                              str(tmp_path / "p1.json")], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    part = out.with_name(".sl.h5.part0")
    deadline = time.monotonic() + 120
    while not part.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    first.send_signal(signal.SIGSTOP)  # caught writing: it stays there while the second run starts
    try:
        assert part.exists(), "the first run never started writing"
        second = run(params, "soft-labels", *args[3:], "--report", tmp_path / "r2.json", "--provenance", tmp_path / "p2.json")
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.exit_code == 1 and one_error(second.output) == (
        f"Error: another soft-labels run is writing {out}: wait for it to end, or choose another --out")
    assert first.wait(timeout=300) == 0, first.stderr.read()
    from pipeline.training.softlabels import SoftLabels

    assert SoftLabels(out).views == 8  # complete and sound (its checksums are checked)
    assert not (tmp_path / "r2.json").exists() and sorted(p.name for p in out.parent.iterdir()) == ["sl.h5"]


def test_a_lock_held_elsewhere_is_left_alone(index_dir, teacher, params, tmp_path):
    """The refused run deletes neither the lock nor the part of the run holding it."""
    out = tmp_path / "sl.h5"
    part = tmp_path / ".sl.h5.part0"
    lock = hold_lock(part, "busy")
    try:
        result = run(params, "soft-labels", "--index", index_dir, "--teacher", teacher, "--out", out, "--report",
                     tmp_path / "r.json", "--quiet")
        assert result.exit_code == 1 and "another soft-labels run is writing" in one_error(result.output)
        assert part.exists() and not out.exists()
    finally:
        release_lock(part, lock)


# --- train-teacher ------------------------------------------------------------------------


def test_a_training_index_without_frames_is_named_before_training(index_dir, params, tmp_path):
    build = copy_build(index_dir, tmp_path)
    index = build / "train_EXPR.parquet"
    pq.write_table(pq.read_table(index).slice(0, 0), index)  # its schema and records kept
    result = run(params, "train-teacher", *train_args(build, tmp_path / "out"))
    assert result.exit_code == 1 and one_error(result.output) == f"Error: {index}: no frame (rerun `dvc repro build`)"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("env, message", [
    ({"WORLD_SIZE": "abc"}, "WORLD_SIZE='abc' is not a whole number: start with torchrun, or unset WORLD_SIZE"),
    ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 is set but RANK is not: start with torchrun, or unset WORLD_SIZE"),
    ({"WORLD_SIZE": "2", "RANK": "x", "LOCAL_RANK": "0", "MASTER_ADDR": "localhost", "MASTER_PORT": "29500"},
     "RANK='x' is not a whole number: start with torchrun, or unset WORLD_SIZE"),
])
def test_torchrun_variables_set_by_hand_are_one_line(index_dir, params, tmp_path, monkeypatch, env, message):
    for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = run(params, "train-teacher", *train_args(index_dir, tmp_path / "out"))
    assert result.exit_code == 1 and one_error(result.output) == f"Error: {message}"
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_that_cannot_be_written_leaves_no_log_under_its_name(index_dir, params, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".t.pt.tmp").symlink_to("/dev/full")  # the checkpoint's temporary name: "No space left on device"
    result = run(params, "train-teacher", *train_args(index_dir, out))
    assert result.exit_code == 1 and "No space left on device" in one_error(result.output)
    assert sorted(p.name for p in out.iterdir()) == ["scratch"]  # no t.pt, no t.csv, no t.json
    no_leftovers(tmp_path)


def test_a_face_shard_that_may_not_be_read_is_permission_denied_not_damage(index_dir, params, tmp_path):
    if os.geteuid() == 0 and not shutil.which("setpriv"):
        pytest.skip("root without setpriv: file modes would not apply")
    build = copy_build(index_dir, tmp_path)
    shard = sorted((tmp_path / "faces" / "affwild2").glob("shard-*.h5"))[0]
    shard.chmod(0o000)
    out = tmp_path / "out"
    try:
        proc = subprocess.run([*(NO_OVERRIDE if os.geteuid() == 0 else []), str(BIN / "mtaffect"), "train-teacher",
                               "--params", str(params), *map(str, train_args(build, out))],
                              cwd=tmp_path, capture_output=True, text=True)
    finally:
        shard.chmod(0o644)
    error = one_error(proc.stderr)
    assert proc.returncode == 1 and error.startswith(f"Error: {shard}: permission denied"), proc.stderr
    assert "rerun" not in error and "damaged" not in error
    assert not (out / "t.pt").exists() and not (out / "t.csv").exists()


# --- model files ----------------------------------------------------------------------------


def test_an_empty_model_file_says_it_is_empty(index_dir, params, tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    result = run(params, "soft-labels", "--index", index_dir, "--teacher", empty, "--out", tmp_path / "sl.h5",
                 "--report", tmp_path / "r.json", "--quiet")
    assert result.exit_code == 1
    assert one_error(result.output) == f"Error: {empty}: not a readable checkpoint: empty file (0 bytes)"
    assert not (tmp_path / "sl.h5").exists() and not (tmp_path / "r.json").exists()
    no_leftovers(tmp_path)


def test_a_checkpoint_given_as_resume_file_is_refused_and_left_as_it_is(index_dir, params, teacher, tmp_path):
    out = tmp_path / "out"
    args = train_args(index_dir, out)
    resume = Path(shutil.copy(teacher, tmp_path / "teacher.pt"))  # e.g. models/teacher.pt, a DVC output
    args[args.index("--resume") + 1] = resume
    before = resume.read_bytes()
    result = run(params, "train-teacher", *args)
    assert result.exit_code == 1 and one_error(result.output) == (
        f"Error: --resume {resume}: not a resume file (a checkpoint?): it is left as it is; give --resume a path of "
        "its own (an interrupted run writes it)")
    assert resume.read_bytes() == before and not list(tmp_path.glob("teacher.pt.*")) and not (out / "t.pt").exists()


@pytest.mark.parametrize("command", ["train_teacher", "train_student"])
def test_a_folder_given_as_the_resume_file_is_named_before_any_work(command, tmp_path):
    import importlib

    from click.testing import CliRunner

    cli = importlib.import_module(f"stages.{command}").cli
    result = CliRunner().invoke(cli, ["--resume", str(tmp_path), *(["--name", "s1"] if command == "train_student" else [])])
    assert result.exit_code == 2 and f"Invalid value for '--resume': File '{tmp_path}' is a directory." in result.output


def test_a_stage_run_by_hand_into_its_own_out_leaves_the_pipelines_reports_alone(params, index_dir, tmp_path,
                                                                                  monkeypatch):
    """`train-teacher --out elsewhere.pt` wrote its log and report over reports/teacher.json
    and reports/plots/teacher/log.csv (DVC's outputs of the main teacher): they now go beside
    --out, said in a line; options given keep their values, and the pipeline's own run
    (everything given, as dvc.yaml does) is unchanged."""
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "mine"
    result = run(params, "train-teacher", "--index", index_dir, "--out", mine / "t5.pt", "--resume",
                 mine / "scratch" / "r.pt", "--provenance", mine / "p.json", "--quiet", "--set", "teacher.epochs=1")
    assert result.exit_code == 0, result.output
    assert f"--out {mine / 't5.pt'}: --log {mine / 't5.log.csv'}, --report {mine / 't5.report.json'} (beside it" \
           in result.output
    assert (mine / "t5.log.csv").is_file() and (mine / "t5.report.json").is_file() and not (tmp_path / "reports").exists()
    given = run(params, "train-teacher", "--index", index_dir, "--out", mine / "t6.pt", "--report", mine / "r6.json",
                "--resume", mine / "scratch" / "r6.pt", "--provenance", mine / "p6.json", "--quiet", "--set",
                "teacher.epochs=1")
    assert given.exit_code == 0 and (mine / "r6.json").is_file() and (mine / "t6.log.csv").is_file()
    assert not (mine / "t6.report.json").exists() and not (tmp_path / "reports").exists()
