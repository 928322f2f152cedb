"""Shared fixtures. ``dvc_project`` is the harness for end-to-end tests: a temporary git
repository holding a copy of this project, on the ``tiny`` profile, with a local DVC
remote, and HOME and DVC's site cache inside the temp folder so nothing leaks out."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's bin: dvc, and the python stages run with


def project_files() -> list[str]:
    """Files of the project as git sees them (tracked plus new, minus ignored)."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout.split("\n")
    return [f for f in out if f and (ROOT / f).is_file()]


def set_profile(params_path: Path, profile: str, **section_overrides) -> None:
    """Switch ``params.yaml`` to ``profile`` (and patch base sections) in place."""
    params = yaml.safe_load(params_path.read_text())
    params["profile"] = profile
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


def make_dvc_project(tmp: Path, profile: str = "tiny") -> DvcProject:
    proj, remote, home = tmp / "project", tmp / "remote", tmp / "home"
    for d in (proj, remote, home):
        d.mkdir(parents=True)
    for f in project_files():
        dst = proj / f
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, dst)
    set_profile(proj / "params.yaml", profile)
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


@pytest.fixture
def dvc_project(tmp_path) -> DvcProject:
    """A fresh copy of the project in a temporary git repo, tiny profile, local remote."""
    return make_dvc_project(tmp_path)
