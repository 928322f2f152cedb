"""The pictures are drawn the same way whatever the user's matplotlib settings."""
import os
import subprocess
import sys

from conftest import ROOT


def test_a_user_matplotlib_backend_even_an_unknown_one_has_no_say(tmp_path):
    script = ("from pipeline.core.plots import plt, save_png\n"
              "fig, ax = plt.subplots()\nax.plot([0, 1])\nsave_png(fig, 'out.png')\n")
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "MPLBACKEND": "bogus", "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr  # matplotlib refuses an unknown backend at import
    assert (tmp_path / "out.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
