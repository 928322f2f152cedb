"""`dvc plots show` draws its charts without a network: the project's page template
(templates/plots.html, set in .dvc/config) carries vega, vega-lite and vega-embed itself.

Checked in headless Chromium with every connection refused, against DVC's own page (which
loads the scripts from a CDN and so stays blank offline) as the control."""
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from conftest import make_dvc_project

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot(page, png) -> np.ndarray:
    """The page as Chromium draws it offline (a proxy that refuses every connection)."""
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
                    f"--user-data-dir={png.parent / 'chromium-profile'}", "--window-size=900,700",
                    "--virtual-time-budget=10000", f"--screenshot={png}", page.as_uri()],
                   check=True, capture_output=True, timeout=120)
    return cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)


def drawn_share(image: np.ndarray) -> float:
    """Share of the first chart's place (top left) that is not the white background."""
    return float((image[:380, :480] < 200).mean())


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs it)")
def test_plots_page_draws_charts_offline(tmp_path):
    p = make_dvc_project(tmp_path)
    page = (p.path / "templates/plots.html").read_text()
    assert "cdn.jsdelivr" not in page and "{plot_divs}" in page and "vegaEmbed" in page
    x = np.arange(40)
    (p.path / "curve.csv").write_text("step,value\n" + "".join(f"{i},{np.sin(i / 6):.4f}\n" for i in x))

    p.dvc("plots", "show", "curve.csv", "-x", "step", "-y", "value", "-o", "ours")
    ours = (p.path / "ours/index.html").read_text()
    assert "cdn.jsdelivr" not in ours and "curve.csv" in ours
    p.dvc("config", "--unset", "plots.html_template")
    p.dvc("plots", "show", "curve.csv", "-x", "step", "-y", "value", "-o", "dvcs")
    assert "cdn.jsdelivr" in (p.path / "dvcs/index.html").read_text()

    drawn = drawn_share(screenshot(p.path / "ours/index.html", tmp_path / "ours.png"))
    blank = drawn_share(screenshot(p.path / "dvcs/index.html", tmp_path / "dvcs.png"))
    assert blank < 0.002, f"DVC's own page drew {blank:.2%} offline: is the network really off?"
    assert drawn > 0.01, f"our page drew only {drawn:.2%} of its pixels: the chart is blank"
