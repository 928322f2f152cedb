"""The environment is the locked one: every package of requirements.lock that applies to
this machine is installed at exactly the locked version (the outputs' bytes depend on
them: OpenCV changed the extracted faces between minor releases)."""
import re
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.utils import canonicalize_name

LOCK = Path(__file__).resolve().parents[1] / "requirements.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def locked_versions(text: str) -> dict[str, str]:
    """{normalised name: version} of the pins whose environment marker holds here."""
    pins = {}
    for line in text.splitlines():
        m = PIN.match(line.strip())
        if m and (m[3] is None or Marker(m[3]).evaluate()):
            pins[canonicalize_name(m[1])] = m[2]
    return pins


def test_lock_parser_reads_pins_and_markers():
    text = ("numpy==2.4.6 ; python_full_version < '9' \\\n    --hash=sha256:00\n"
            "numpy==9.9.9 ; python_full_version >= '9' \\\n"
            "pywin32==312 ; sys_platform == 'nonexistent' \\\n"
            "flufl-lock==9.2.0 \\\n    # via dvc\n")
    assert locked_versions(text) == {"numpy": "2.4.6", "flufl-lock": "9.2.0"}


def test_installed_versions_equal_the_lock():
    pins = locked_versions(LOCK.read_text())
    assert {"torch", "opencv-python-headless", "h5py", "pyarrow", "dvc"} <= set(pins)
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    wrong = {name: (version, installed.get(name)) for name, version in pins.items() if installed.get(name) != version}
    assert not wrong, ("installed versions differ from requirements.lock (rebuild with `make clean-venv venv`): "
                       + ", ".join(f"{n} {v} locked, {i or 'missing'} installed" for n, (v, i) in sorted(wrong.items())))


def test_each_remotes_lock_is_the_main_lock_plus_its_plug_in():
    """`make venv EXTRAS=s3` installs requirements-s3.lock: the outputs' bytes must not
    depend on which remote a team uses, so every main pin is there at the same version."""
    main = locked_versions(LOCK.read_text())
    for remote in ("s3", "gs", "ssh"):
        pins = locked_versions((LOCK.parent / f"requirements-{remote}.lock").read_text())
        changed = {n: (v, pins.get(n)) for n, v in main.items() if pins.get(n) != v}
        assert not changed, f"requirements-{remote}.lock differs from requirements.lock: {changed} (run `make lock`)"
        assert f"dvc-{remote}" in pins
