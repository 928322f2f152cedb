"""kill -9 in the middle of a stage under the real `dvc repro`, then `dvc repro` again: the
rerun finishes and every output has the bytes of an uninterrupted run (dvc.lock does not
change), with nothing half-written left behind. One project is run to the end first; each
case is a copy of it in which one stage is forced, killed while it works, and rerun."""
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import BIN, DvcProject, make_dvc_project

# One process runs them all (make test: --dist loadgroup), so the finished project is built once.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800), pytest.mark.xdist_group("interrupt")]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> DvcProject:
    """The tiny pipeline run to the end, with a teacher long enough to be killed in a chosen
    epoch (resume file every 2 steps) and a soft-label dump of small batches."""
    p = make_dvc_project(tmp_path_factory.mktemp("interrupt"))
    params = yaml.safe_load((p.path / "params.yaml").read_text())
    # lr 0.05 over 5 epochs, each scored on one validation video: a noisy run, in which some
    # epoch does not improve on the best (4 epochs on all videos improved every time on some CPUs)
    params["teacher"].update(epochs=5, steps_per_epoch=10, lr=0.05, selection_videos=1)
    params["teacher"]["save_every"] = 2
    params["soft_labels"].update(batch=2)
    (p.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    p.dvc("repro")
    p.git("add", "-A")
    p.git("commit", "-q", "-m", "finished")
    return p


def copy_of(p: DvcProject, dest: Path) -> DvcProject:
    """The finished project without its DVC cache: as in a first run that was killed, the
    rerun cannot check the stage's outputs out of the cache, it must compute them again."""
    def no_cache(folder, names):
        return ["cache"] if folder.endswith(".dvc") else []

    shutil.copytree(p.path, dest / "project", symlinks=True, ignore=no_cache)
    return DvcProject(dest / "project", p.remote, p.env)


def kill_during(p: DvcProject, stage: str, working) -> None:
    """Force ``stage`` alone, SIGKILL its whole process group once ``working()`` is true."""
    proc = subprocess.Popen([str(BIN / "dvc"), "repro", "--force", "--single-item", stage], cwd=p.path,
                            env=p.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    while not working() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, f"{stage} finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def rerun_gives_the_same_bytes(p: DvcProject, reference: DvcProject) -> None:
    assert p.dvc("status", "-q", check=False).returncode != 0  # the kill left the stage unfinished
    rerun = p.dvc("repro")
    assert "Running stage" in rerun.stdout and "checking out outputs" not in rerun.stdout, rerun.stdout
    assert (p.path / "dvc.lock").read_text() == (reference.path / "dvc.lock").read_text()
    assert p.dvc("status", "-q", check=False).returncode == 0
    leftovers = [f for f in (p.path / "data").rglob("*") if ".tmp" in f.name or ".part" in f.name or
                 f.name.endswith(".old")]
    assert leftovers == []


def test_killed_extraction(finished, tmp_path):
    p = copy_of(finished, tmp_path)
    work = p.path / "data/faces/.disfa.tmp"
    kill_during(p, "extract@disfa", lambda: work.is_dir() and any(work.iterdir()))
    rerun_gives_the_same_bytes(p, finished)


def resume_state(path: Path) -> tuple[int, int]:
    try:  # written atomically (temp name, then rename): a file that exists is complete
        state = torch.load(path, weights_only=True)["state"]
    except (FileNotFoundError, EOFError, RuntimeError):
        return -1, -1
    return state["epoch"], state["step"]


@pytest.mark.parametrize("improves", [True, False])
def test_killed_training_in_an_epoch_that_does_or_does_not_improve(finished, tmp_path, improves):
    log = pd.read_csv(finished.path / "reports/plots/teacher/log.csv")
    best_so_far = log["total"].cummax().shift(fill_value=float("-inf"))
    candidates = [e for e in range(len(log)) if (log["total"][e] > best_so_far[e]) == improves]  # 0 always improves
    assert candidates, f"no epoch with improves={improves} in this run: {log['total'].tolist()}"
    epoch = candidates[-1]
    p = copy_of(finished, tmp_path)
    resume = p.path / "scratch/teacher/resume.pt"
    kill_during(p, "train_teacher", lambda: resume_state(resume) >= (epoch, 3))
    assert not (p.path / "models/teacher.pt").exists()  # DVC removed it before the stage ran
    rerun_gives_the_same_bytes(p, finished)


def test_killed_soft_label_dump(finished, tmp_path):
    p = copy_of(finished, tmp_path)
    part = p.path / "data/.soft_labels.h5.part0"
    kill_during(p, "soft_labels", lambda: part.exists() and part.stat().st_size > 50_000)
    rerun_gives_the_same_bytes(p, finished)
