"""``dvc.lock`` after a kill at the worst moment: DVC killed (kill -9) while it rewrites the
lock, again and again, on a small real DVC project; ``mtaffect repair-lock`` brings the
project back every time, and ``dvc repro`` then finishes with the lock of an uninterrupted
run, no stage having run twice (finished stages come back from DVC's run cache)."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.core.dvc_lock import lock_problem, repair

BIN = Path(sys.executable).parent
STAGES = 24


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
    whole = ("schema: '2.0'\nstages:\n  s0:\n    cmd: echo\n    outs:\n    - path: o\n      hash: md5\n"
             "      md5: 0123456789abcdef0123456789abcdef\n      size: 3\n")
    assert lock_problem(whole) is None
    assert "cut short" in lock_problem(whole.replace("0123456789abcdef0123456789abcdef", "0123456789ab"))
    assert "cut short" in lock_problem(whole[:whole.index("      size")])  # no size: the line after was lost
    assert "cut short" in lock_problem(whole[:-1] + "0")  # the last line not whole
