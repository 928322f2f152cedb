"""The same inputs give the same bytes however busy the machine is: the teacher, the
soft-label cache and a student, each made twice through the real commands, once on an idle
machine and once while processes running torch on every core compete for them; and the
thread count the stages run with is the parameter's, not the machine's."""
import functools
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import set_preset

ROOT = Path(__file__).resolve().parents[1]
HOG = """
import time, torch
torch.set_num_threads(2)
a = torch.randn(384, 384)
while True:
    a = torch.tanh(a @ a)
"""


def params(tmp: Path, threads: int = 1) -> Path:
    path = tmp / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    set_preset(path, "tiny")
    p = yaml.safe_load(path.read_text())
    p["threads"] = threads
    path.write_text(yaml.safe_dump(p, sort_keys=False))
    return path


#: How the machine's own kernels differ: an AVX-512 machine told to use what a CPU without
#: it has (for MKL, oneDNN and torch's own code) must not train other weights.
OLDER_CPU = {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


def _stage(*args: str, cwd: Path, cpu: dict | None = None) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")} | (cpu or {})
    proc = subprocess.run([sys.executable, "-m", *args, "--quiet"], cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def make(index_dir: Path, folder: Path, cpu: dict | None = None) -> dict[str, bytes]:
    folder.mkdir()
    p = str(params(folder))
    stage = functools.partial(_stage, cpu=cpu)
    stage("stages.train_teacher", "--params", p, "--index", str(index_dir), "--out", "teacher.pt", "--log", "t.csv",
          "--report", "t.json", "--resume", "resume/t.pt", cwd=folder)
    stage("stages.soft_labels", "--params", p, "--index", str(index_dir), "--teacher", "teacher.pt", "--out",
          "cache.h5", "--report", "c.json", cwd=folder)
    stage("stages.train_student", "--params", p, "--name", "s1", "--index", str(index_dir), "--soft-labels",
          "cache.h5", "--out", "s1.pt", "--log", "s.csv", "--report", "s.json", "--resume", "resume/s.pt", cwd=folder)
    return {name: (folder / name).read_bytes() for name in ("teacher.pt", "cache.h5", "s1.pt")}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_teacher_cache_and_student_have_the_same_bytes_on_a_busy_machine(index_dir, tmp_path):
    idle = make(index_dir, tmp_path / "idle")
    hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(2)]
    try:
        time.sleep(1)
        busy = make(index_dir, tmp_path / "busy")
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    for name in idle:
        assert busy[name] == idle[name], name


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_teacher_cache_and_student_have_the_same_bytes_on_an_older_cpu(index_dir, tmp_path):
    """MKL's, oneDNN's and torch's AVX-512 kernels sum in other orders than their AVX2 ones:
    a machine without AVX-512 trained other weights until the stages held them to AVX2."""
    here, older = make(index_dir, tmp_path / "here"), make(index_dir, tmp_path / "older", OLDER_CPU)
    for name in here:
        assert older[name] == here[name], name


def test_the_stages_run_torch_on_the_parameters_thread_count(tmp_path):
    code = ("import sys; from stages.common import load, use_threads; use_threads(load(sys.argv[1]).threads); "
            "import torch; print(torch.get_num_threads(), torch.backends.cpu.get_cpu_capability())")
    for threads in (1, 2):
        out = subprocess.run([sys.executable, "-c", code, str(params(tmp_path, threads))], cwd=ROOT,
                             capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "7"})
        assert out.stdout.split()[-2:] == [str(threads), "AVX2"], out.stderr  # the same kernels on any CPU


def test_every_stage_that_runs_torch_sets_its_threads_first():
    import re

    from pipeline.core.provenance import code_files

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        module = re.match(r"python -m (stages\.\w+)", (stage.get("do") or stage)["cmd"]).group(1)
        runs_torch = "pipeline/training/models.py" in code_files(module)  # it runs a network (extraction's
        # MTCNN runs in worker processes of one thread each)
        sets = "use_threads(p.threads)" in (ROOT / (module.replace(".", "/") + ".py")).read_text()
        assert sets == runs_torch, name
