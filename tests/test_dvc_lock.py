"""``dvc.lock`` after a kill at the worst moment: DVC killed (kill -9) while it rewrites the
lock, again and again, on a small real DVC project; ``mtaffect repair-lock`` brings the
project back every time, and ``dvc repro`` then finishes with the lock of an uninterrupted
run, no stage having run twice (finished stages come back from DVC's run cache)."""
import errno
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.core.dvc_lock import NO_STAGES, lock_problem, repair

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
STAGES = 24
WHOLE = ("schema: '2.0'\nstages:\n  s0:\n    cmd: echo\n    outs:\n    - path: o\n      hash: md5\n"
         "      md5: 0123456789abcdef0123456789abcdef\n      size: 3\n")


def project(folder: Path, env: dict) -> Path:
    """A git + DVC project of a chain of stages with sizeable params (a lock of ~30 kB, so
    that its rewrite takes a while); each stage logs its run to ../runs.log."""
    folder.mkdir(parents=True)
    run(folder, env, "git", "init", "-q")
    run(folder, env, str(BIN / "dvc"), "init", "-q")
    params = {f"s{i}": {f"knob{j}": j for j in range(30)} for i in range(STAGES)}
    stages = {f"s{i}": {"cmd": f"echo s{i} >> ../runs.log && echo {i} > out{i}.txt",
                        "deps": [f"out{i - 1}.txt"] if i else [], "params": [f"s{i}"], "outs": [f"out{i}.txt"]}
              for i in range(STAGES)}
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    (folder / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    commit(folder, env)
    return folder


def run(folder: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=folder, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{args}: {proc.stdout}{proc.stderr}"
    return proc


def commit(folder: Path, env: dict) -> None:
    run(folder, env, "git", "add", "-A")
    run(folder, env, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "state")


def kill_while_writing_the_lock(folder: Path, env: dict, skip: int) -> str:
    """Run ``dvc repro`` and kill -9 its process group the moment DVC has truncated
    ``dvc.lock`` to rewrite it (after letting ``skip`` rewrites through); the lock's text."""
    proc = subprocess.Popen([str(BIN / "dvc"), "repro"], cwd=folder, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    lock, largest, seen = folder / "dvc.lock", 0, 0
    while proc.poll() is None:
        try:
            size = lock.stat().st_size
        except FileNotFoundError:
            continue
        if size < largest:  # truncated: a rewrite has begun
            seen += 1
            if seen > skip:
                os.killpg(proc.pid, signal.SIGKILL)
                break
        largest = max(largest, size)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "dvc repro ended before the kill"
    return lock.read_text() if lock.exists() else ""


def runs(folder: Path) -> list[str]:
    log = folder.parent / "runs.log"
    return log.read_text().split() if log.exists() else []


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_kill_during_the_lock_write_is_repaired_and_no_finished_stage_runs_again(tmp_path):
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "HOME": str(tmp_path), "PATH": f"{BIN}:{os.environ['PATH']}",
           "DVC_SITE_CACHE_DIR": str(tmp_path / "site")}
    reference = project(tmp_path / "reference" / "p", env)
    run(reference, env, str(BIN / "dvc"), "repro")
    p = project(tmp_path / "killed" / "p", env)

    # no committed lock yet: the torn one is set aside, the run cache restores what finished
    for skip in (0, 2, 1):
        torn = kill_while_writing_the_lock(p, env, skip)
        assert lock_problem(torn), torn[-200:]  # the kill did cut it
        assert subprocess.run([str(BIN / "dvc"), "status"], cwd=p, env=env, capture_output=True).returncode != 0
        assert any("moved to" in line for line in repair(p))
        run(p, env, str(BIN / "dvc"), "status")  # DVC reads the project again
    run(p, env, str(BIN / "dvc"), "repro")
    assert (p / "dvc.lock").read_text() == (reference / "dvc.lock").read_text()
    assert sorted(runs(p)) == sorted(f"s{i}" for i in range(STAGES))  # each stage ran once

    # a committed lock: restored from git, then the changed stages finish
    commit(p, env)
    for folder in (p, reference):
        params = yaml.safe_load((folder / "params.yaml").read_text())
        params[f"s{STAGES // 2}"]["knob0"] = 100
        (folder / "params.yaml").write_text(yaml.safe_dump(params))
    run(reference, env, str(BIN / "dvc"), "repro")
    before = len(runs(p))
    for skip in (1, 0):
        kill_while_writing_the_lock(p, env, skip)
        assert any("restored from the last commit" in line for line in repair(p))
    run(p, env, str(BIN / "dvc"), "repro")
    assert (p / "dvc.lock").read_text() == (reference / "dvc.lock").read_text()
    assert runs(p)[before:] == [f"s{STAGES // 2}"]  # once (its output is unchanged: nothing after it reruns)
    assert repair(p) == []  # nothing left to repair
    run(p, env, str(BIN / "dvc"), "status", "-q")


def test_repair_refuses_while_dvc_runs_and_names_a_foreign_folder(tmp_path):
    import zc.lockfile

    from pipeline.core.errors import DataError

    with pytest.raises(DataError, match="not a DVC project"):
        repair(tmp_path)
    (tmp_path / ".dvc" / "tmp").mkdir(parents=True)
    held = zc.lockfile.LockFile(str(tmp_path / ".dvc" / "tmp" / "lock"))
    try:
        # the lock is per process: ask from another one, as a second command would
        code = "import sys; from pipeline.core.dvc_lock import repair; repair(sys.argv[1])"
        proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
        assert "a DVC command is running in this project" in proc.stderr
    finally:
        held.close()
    torn = "schema: '2.0'\nstages:\n  s0:\n    cmd: echo\n    outs:\n    - path: o\n      hash: md5\n      md"
    (tmp_path / "dvc.lock").write_text(torn)
    (tmp_path / ".dvc" / "tmp" / "rwlock").write_text('{"read": {')
    done = repair(tmp_path)
    assert len(done) == 2 and not (tmp_path / "dvc.lock").exists() and not (tmp_path / ".dvc/tmp/rwlock").exists()
    assert (tmp_path / ".dvc" / "tmp" / "dvc.lock.torn").read_text() == torn
    (tmp_path / "dvc.lock").write_text(torn[:-10])  # torn again: the first one is kept
    assert "moved to" in repair(tmp_path)[0] and (tmp_path / ".dvc" / "tmp" / "dvc.lock.torn").read_text() == torn
    assert (tmp_path / ".dvc" / "tmp" / "dvc.lock.torn.2").read_text() == torn[:-10]


def test_a_lock_cut_at_the_end_of_a_line_is_caught(tmp_path):
    whole = WHOLE
    assert lock_problem(whole) is None
    assert "cut short" in lock_problem(whole.replace("0123456789abcdef0123456789abcdef", "0123456789ab"))
    assert "cut short" in lock_problem(whole[:whole.index("      size")])  # no size: the line after was lost
    assert "cut short" in lock_problem(whole[:-1] + "0")  # the last line not whole


def committed_project(folder: Path, lock: str | None = WHOLE) -> Path:
    """A git project with a ``.dvc`` folder and, if given, ``lock`` committed as its dvc.lock."""
    env = {**os.environ, "HOME": str(folder)}
    (folder / ".dvc").mkdir(parents=True)
    run(folder, env, "git", "init", "-q")
    if lock is not None:
        (folder / "dvc.lock").write_text(lock)
    (folder / "dvc.yaml").write_text("stages: {}\n")
    commit(folder, env)
    return folder


def repair_lock(*args: str):
    from click.testing import CliRunner

    from stages.repair_lock import cli

    result = CliRunner().invoke(cli, args)
    assert "Traceback" not in result.output and not isinstance(result.exception, OSError), result.output
    return result


def files(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and ".git" not in p.parts}


@pytest.mark.parametrize("step", ["the committed text", "the torn one's copy"])
def test_a_full_disk_during_the_repair_leaves_dvc_lock_as_it_was(tmp_path, monkeypatch, step):
    p = committed_project(tmp_path / "p")
    (p / "dvc.lock").write_text(WHOLE[:100])
    before = files(p)

    def full(*args):
        if step == "the torn one's copy":
            Path(args[1]).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    if step == "the committed text":
        monkeypatch.setattr(Path, "write_text", full)
    monkeypatch.setattr(shutil, "copyfile", full)
    result = repair_lock("--project", str(p))
    assert result.exit_code == 1 and "No space left on device" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and "dvc.lock" in result.output, result.output
    assert files(p) == before  # dvc.lock torn as it was, nothing set aside, no temporary file
    monkeypatch.undo()
    assert "restored from the last commit" in repair_lock("--project", str(p)).output  # space freed: repaired
    assert (p / "dvc.lock").read_text() == WHOLE and (p / ".dvc/tmp/dvc.lock.torn").read_text() == WHOLE[:100]


def test_a_deleted_lock_comes_back_from_the_last_commit(tmp_path):
    p = committed_project(tmp_path / "p")
    (p / "dvc.lock").unlink()
    result = repair_lock("--project", str(p))
    assert result.exit_code == 0 and "dvc.lock: missing; restored from the last commit" in result.output
    assert (p / "dvc.lock").read_text() == WHOLE and repair(p) == []
    q = committed_project(tmp_path / "q", lock=None)  # never committed: nothing to bring back
    assert repair(q) == [] and not (q / "dvc.lock").exists()


@pytest.mark.parametrize("committed", [WHOLE, None])
def test_a_lock_through_a_link_is_repaired_in_its_file_and_the_link_stays(tmp_path, committed):
    p = committed_project(tmp_path / "p", lock=committed)
    shared = tmp_path / "shared" / "dvc.lock"
    shared.parent.mkdir()
    shared.write_text("")  # empty: torn
    (p / "dvc.lock").unlink(missing_ok=True)
    (p / "dvc.lock").symlink_to(shared)
    done = repair(p)
    assert len(done) == 1 and f"a link to {shared}" in done[0], done
    assert (p / "dvc.lock").is_symlink() and os.readlink(p / "dvc.lock") == str(shared)
    assert shared.read_text() == (committed or NO_STAGES) and lock_problem(shared.read_text()) is None
    assert (p / ".dvc/tmp/dvc.lock.torn").read_text() == ""
    shared.unlink()  # a link to nothing: the committed lock comes back through it
    assert bool(repair(p)) == bool(committed) and shared.exists() == bool(committed)
    (p / "dvc.lock").unlink()
    (p / "dvc.lock").symlink_to("dvc.lock")  # a loop: one line, nothing changed
    assert "a loop of symbolic links" in repair_lock("--project", str(p)).output and (p / "dvc.lock").is_symlink()


def test_an_error_on_a_rename_names_both_files():
    import click
    from click.testing import CliRunner

    from stages.common import friendly_errors

    @click.command()
    @friendly_errors
    def cli():
        raise PermissionError(errno.EACCES, "Permission denied", "dvc.lock", None, ".dvc/tmp/dvc.lock.torn")

    result = CliRunner().invoke(cli, [])
    assert result.output == "Error: dvc.lock -> .dvc/tmp/dvc.lock.torn: Permission denied\n", result.output


@pytest.mark.parametrize("committed", [WHOLE, None])
def test_a_read_only_dvc_tmp_is_named_and_nothing_changes(tmp_path, committed):
    no_override = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner",
                   "--inh-caps=-dac_override,-dac_read_search,-fowner"]  # root: permissions apply as to a user
    if os.geteuid() == 0 and not shutil.which("setpriv"):
        pytest.skip("root without setpriv: permissions would not apply")
    p = committed_project(tmp_path / "p", lock=committed)
    (p / "dvc.lock").write_text(WHOLE[:100])
    (p / ".dvc/tmp").mkdir()
    (p / ".dvc/tmp").chmod(0o555)
    before = files(p)
    try:
        proc = subprocess.run([*(no_override if os.geteuid() == 0 else []), sys.executable, "-m", "stages.repair_lock",
                               "--project", str(p)], cwd=ROOT, capture_output=True, text=True)
    finally:
        (p / ".dvc/tmp").chmod(0o755)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"{p / '.dvc/tmp/dvc.lock.torn'}: Permission denied" in proc.stderr, proc.stderr
    assert files(p) == before


def test_a_dvc_lock_that_is_a_named_pipe_is_refused_before_it_is_read(tmp_path):
    """A FIFO named dvc.lock (directly or through a link): reading it would wait forever for
    a writer; it is refused in one line, nothing read or changed (#88)."""
    p = committed_project(tmp_path / "p")
    (p / "dvc.lock").unlink()
    os.mkfifo(p / "fifo")
    for link in (False, True):
        (p / "dvc.lock").unlink(missing_ok=True)
        if link:
            (p / "dvc.lock").symlink_to("fifo")
        else:
            (p / "fifo").rename(p / "dvc.lock")
        proc = subprocess.run([sys.executable, "-m", "stages.repair_lock", "--project", str(p)], cwd=ROOT,
                              capture_output=True, text=True, timeout=20)  # a hang fails here
        assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert "a named pipe (FIFO), not a regular file" in proc.stderr, proc.stderr
        assert ("a link to" in proc.stderr) == link and not (p / ".dvc/tmp").exists()
        if not link:
            (p / "dvc.lock").rename(p / "fifo")


def test_repairing_a_hard_linked_lock_says_the_other_names_keep_the_torn_text(tmp_path):
    """The repair writes a new file under dvc.lock's name (at once, so a full disk changes
    nothing): another hard link to the torn file keeps it, and the repair's line says so (#85)."""
    p = committed_project(tmp_path / "p")
    (p / "dvc.lock").write_text(WHOLE[:100])
    os.link(p / "dvc.lock", tmp_path / "backup.lock")
    done = repair(p)
    assert len(done) == 1 and "1 other hard link to the torn file" in done[0] and "still holds the torn text" in done[0]
    assert (p / "dvc.lock").read_text() == WHOLE and (tmp_path / "backup.lock").read_text() == WHOLE[:100]
    (p / "dvc.lock").write_text(WHOLE[:90])  # torn again, not hard-linked now: nothing more said
    assert "hard link" not in repair(p)[0]


def test_a_link_into_a_folder_that_does_not_exist_is_said_not_called_whole(tmp_path):
    """dvc.lock a link to a path whose folder does not exist: there is no lock to read and
    none can be restored there; one line says so (it said "whole: nothing to repair", #86)."""
    p = committed_project(tmp_path / "p")
    (p / "dvc.lock").unlink()
    (p / "dvc.lock").symlink_to(tmp_path / "nowhere" / "x.lock")
    result = repair_lock("--project", str(p))
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
    assert f"the link's folder {tmp_path / 'nowhere'} does not exist" in result.output, result.output
    assert "nothing to repair" not in result.output and not (tmp_path / "nowhere").exists()


def test_a_lock_with_merge_conflict_markers_is_an_unfinished_merge_not_a_torn_file(tmp_path):
    p = committed_project(tmp_path / "p")
    lines = WHOLE.splitlines(keepends=True)
    ours, theirs = lines[7], lines[7].replace("0123", "4567")  # the md5 line, changed on both sides
    (p / "dvc.lock").write_text("".join(lines[:7] + ["<<<<<<< HEAD\n", ours, "=======\n", theirs,
                                                     ">>>>>>> other\n"] + lines[8:]))
    before = files(p)
    result = repair_lock("--project", str(p))
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
    assert result.output.startswith(f"Error: {p / 'dvc.lock'}: holds git merge-conflict markers (line 8): "
                                    "an unfinished merge, not a torn file; nothing changed"), result.output
    assert "git checkout --theirs dvc.lock" in result.output
    assert files(p) == before and not (p / ".dvc" / "tmp").exists()


def test_the_studys_lock_is_repaired_too(tmp_path):
    p = tmp_path / "p"
    (p / "study").mkdir(parents=True)
    (p / "study" / "dvc.yaml").write_text("stages: {}\n")
    (p / "study" / "dvc.lock").write_text(WHOLE)
    committed_project(p)  # both locks committed
    (p / "study" / "dvc.lock").write_text(WHOLE[:100])  # a kill during the study's run
    result = repair_lock("--project", str(p))
    assert result.exit_code == 0 and f"{p / 'study/dvc.lock'}: " in result.output, result.output
    assert "restored from the last commit" in result.output
    assert (p / "study/dvc.lock").read_text() == WHOLE and (p / "dvc.lock").read_text() == WHOLE
    assert (p / ".dvc/tmp/study_dvc.lock.torn").read_text() == WHOLE[:100] and repair(p) == []
