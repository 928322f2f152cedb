"""Shared fixtures. ``dvc_project`` is the harness for end-to-end tests: a temporary git
repository holding a copy of this project, with the ``tiny`` preset, with a local DVC
remote, and HOME and DVC's site cache inside the temp folder so nothing leaks out."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import stages  # noqa: F401  (first: holds torch's CPU kernels as the stages' processes do, before torch loads)
import torch
import yaml

# One thread per test process: tests run in parallel (pytest -n 2) and torch's OpenMP
# threads spin badly when they outnumber free cores (10-30x slower, measured here).
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's bin: dvc, and the python stages run with


def project_files() -> list[str]:
    """Files of the project as git sees them (tracked plus new, minus ignored)."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout.split("\n")
    return [f for f in out if f and (ROOT / f).is_file()]


def set_preset(params_path: Path, preset: str, **section_overrides) -> None:
    """Write ``preset``'s values into ``params.yaml`` (``mtaffect preset``), then patch
    sections with ``section_overrides``."""
    from pipeline.core.catalogue import apply_preset

    apply_preset(params_path, preset)[0]
    if section_overrides:
        params = yaml.safe_load(params_path.read_text())
        for section, values in section_overrides.items():
            params[section].update(values)
        params_path.write_text(yaml.safe_dump(params, sort_keys=False))


@dataclass
class DvcProject:
    path: Path
    remote: Path
    env: dict

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a command (e.g. ``dvc repro``) in the project; output captured as text."""
        proc = subprocess.run(list(args), cwd=self.path, env=self.env, capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def dvc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(str(BIN / "dvc"), *args, check=check)

    def git(self, *args: str) -> subprocess.CompletedProcess:
        return self.run("git", *args)


def make_dvc_project(tmp: Path, preset: str = "tiny") -> DvcProject:
    proj, remote, home = tmp / "project", tmp / "remote", tmp / "home"
    for d in (proj, remote, home):
        d.mkdir(parents=True)
    for f in project_files():
        dst = proj / f
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, dst)
    set_preset(proj / "params.yaml", preset)
    env = {
        **os.environ,
        "HOME": str(home),
        "DVC_SITE_CACHE_DIR": str(tmp / "dvc-site-cache"),
        "DVC_NO_ANALYTICS": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com",
    }
    p = DvcProject(proj, remote, env)
    p.git("init", "-q", "-b", "main")
    p.dvc("remote", "add", "-d", "local", str(remote))
    p.git("add", "-A")
    p.git("commit", "-q", "-m", "project copy")
    return p


@pytest.fixture(autouse=True)
def _work_in_the_test_folder(tmp_path, monkeypatch):
    """Every test runs in its own folder: a command run in-process writes its defaults there
    (provenance/..., reports/...), never into the project."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def dvc_project(tmp_path) -> DvcProject:
    """A fresh copy of the project in a temporary git repo, tiny preset, local remote."""
    return make_dvc_project(tmp_path)


def write_fake_extraction(faces_dir: Path, seed: int = 0, sizes=None, schema=None) -> Path:
    """Real HDF5 shards and frame tables for the four sources, with faces whose colour
    carries the labels (so a model can learn something in a few steps), labelled in
    ``schema``'s AUs and classes (default abaw2020). For tests of the stages after
    extraction; the synthetic data set tests the real path end to end."""
    import numpy as np

    from pipeline.core.schema import ABAW2020
    from pipeline.core.tables import LANDMARK_COLUMNS, FrameTableWriter, uid
    from pipeline.core.shards import ShardWriter

    schema = schema or ABAW2020
    classes = len(schema.expressions)

    rng = np.random.default_rng(seed)
    sizes = sizes or {"affwild2": 160, "affwild2_val": 60, "disfa": 60, "expw": 60, "afewva": 60}
    plan = [("affwild2", "train", "AEV"), ("affwild2", "val", "AEV"), ("disfa", "train", "A"),
            ("expw", "train", "E"), ("afewva", "train", "V")]
    writers = {}
    for source, split, tasks in plan:
        n = sizes[source if split == "train" else "affwild2_val"]
        out = faces_dir / source
        if source not in writers:
            writers[source] = (ShardWriter(out, shard_faces=64),
                               FrameTableWriter(out / "frames.parquet", aus=schema.aus))
        shards, table = writers[source]
        expr = rng.choice(classes, size=n, p=[0.3, 0.1, 0.1, 0.1, 0.2, 0.1, 0.1] if classes == 7 else
                          [0.3, 0.1, 0.1, 0.1, 0.15, 0.1, 0.05, 0.1])
        au = (rng.random((n, len(schema.aus))) < 0.3).astype(np.int8)
        va = np.clip(rng.normal(0, 0.4, (n, 2)), -1, 1)
        faces = rng.integers(0, 60, size=(n, 112, 112, 3), dtype=np.uint8)
        faces[:, :, :, 0] += (expr * 25).astype(np.uint8)[:, None, None]
        faces[:, :56, :, 1] += (au[:, 4] * 120).astype(np.uint8)[:, None, None]
        faces[:, 56:, :, 2] += ((va[:, 0] + 1) * 90).astype(np.uint8)[:, None, None]
        where = shards.add(faces)
        videos = [f"{split}{i % 4}" for i in range(n)]
        cols = {
            "uid": [uid(source, v, i) for i, v in enumerate(videos)], "source": [source] * n, "video": videos,
            "subject": videos, "frame": np.arange(n), "timestamp": np.full(n, np.nan), "split": [split] * n,
            "expr": expr if "E" in tasks else np.full(n, -1), "valence": va[:, 0] if "V" in tasks else np.full(n, np.nan),
            "arousal": va[:, 1] if "V" in tasks else np.full(n, np.nan),
            "shard": [w[0] for w in where], "row": [w[1] for w in where], "det_score": np.ones(n),
        }
        for j, name in enumerate(schema.aus):
            cols[name] = au[:, j] if "A" in tasks else np.full(n, -1)
        for c in LANDMARK_COLUMNS:
            cols[c] = np.zeros(n)
        table.add(cols)
    for shards, table in writers.values():
        shards.close()
        table.close()
    return faces_dir


@pytest.fixture(scope="session")
def index_dir(tmp_path_factory) -> Path:
    """Build-stage indexes over fake extracted faces (for the training tests)."""
    from pipeline.build.indexes import build
    from pipeline.build.params import BuildParams

    tmp = tmp_path_factory.mktemp("indexes")
    write_fake_extraction(tmp / "faces")
    build(tmp / "faces", tmp / "build", BuildParams())
    return tmp / "build"


@pytest.fixture(scope="session")
def index_dir_2022(tmp_path_factory) -> Path:
    """The same in the abaw2022 schema: 12 AUs, 8 classes with Other."""
    from pipeline.build.indexes import build
    from pipeline.build.params import BuildParams
    from pipeline.core.schema import ABAW2022

    tmp = tmp_path_factory.mktemp("indexes2022")
    write_fake_extraction(tmp / "faces", schema=ABAW2022)
    build(tmp / "faces", tmp / "build", BuildParams(label_schema="abaw2022"))
    return tmp / "build"


@pytest.fixture(scope="session")
def huge_png(tmp_path_factory) -> Path:
    """A valid 40000 x 27000 PNG (over OpenCV's 2^30 pixels) of 14 MB: black rows, made in ~4 s."""
    import struct
    import zlib

    w, h = 40000, 27000
    c, rows = zlib.compressobj(1), b"\0" * (3 * w + 1) * 1000  # each row: filter byte, then RGB
    data = b"".join(c.compress(rows) for _ in range(h // 1000)) + c.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    path = tmp_path_factory.mktemp("huge") / "huge.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path
