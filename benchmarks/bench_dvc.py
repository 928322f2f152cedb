"""Time of DVC's own bookkeeping on this project: ``dvc status`` and a ``dvc repro`` that
has nothing to run, in the working tree after ``make demo`` (goal: under 3 s each).

The first call of each is reported apart (files not yet in the page cache, DVC's state
database cold); then the median of five. Then where the time goes: ``dvc status`` of
single stages: one without a large folder, ``extract@affwild2`` (it depends on the
dataset's version file, not on its 32,000 files) and ``synth`` (its outputs are the data
sets' version files, not their 35,000 files). Until they were, DVC walked those files as
``synth``'s output at about 30 ms per thousand, most of the time of a no-op ``dvc repro``.
Usage: python benchmarks/bench_dvc.py
"""
from __future__ import annotations

import os
import statistics
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DVC = ROOT / ".venv" / "bin" / "dvc"
RUNS = 5
# (stage, what it checks): the breakdown rows
BREAKDOWN = (("train_teacher", "no large folder"), ("extract@affwild2", "a version file"),
             ("synth", "version files as outputs"))


def timed(*args: str) -> tuple[float, subprocess.CompletedProcess]:
    env = {**os.environ, "PATH": f"{DVC.parent}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run([str(DVC), *args], cwd=ROOT, env=env, capture_output=True, text=True)
    return time.perf_counter() - t0, proc


def main() -> dict:
    seconds, status = timed("status", "-q")
    if status.returncode != 0:
        print("bench_dvc: the pipeline is not up to date here (run `make demo` first); nothing measured")
        return {"name": "dvc", "rows": []}
    stages = len(timed("stage", "list")[1].stdout.splitlines())
    rows = []
    for label, args in (("dvc status", ("status", "-q")), ("dvc repro (nothing to run)", ("repro",))):
        first, proc = timed(*args)
        if args[0] == "repro" and "Running stage" in proc.stdout:
            raise RuntimeError(f"dvc repro ran a stage: {proc.stdout}")
        times = [timed(*args)[0] for _ in range(RUNS)]
        rows.append({"command": label, "first_s": round(first, 3), "median_s": round(statistics.median(times), 3),
                     "max_s": round(max(times), 3), "stages": stages})
    rows.extend(breakdown())
    return {"name": "dvc", "rows": rows}


def breakdown() -> list[dict]:
    """``dvc status`` of single stages: what each kind of dependency or output costs DVC."""
    rows = []
    for stage, checks in BREAKDOWN:
        timed("status", "-q", stage)  # warm
        median = statistics.median(timed("status", "-q", stage)[0] for _ in range(RUNS))
        rows.append({"command": f"dvc status {stage}", "median_s": round(median, 3), "checks": checks})
    return rows


if __name__ == "__main__":
    for row in main()["rows"]:
        print(row)
