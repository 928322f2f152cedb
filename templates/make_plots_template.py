"""Write ``templates/plots.html``: DVC's plots page with vega, vega-lite and vega-embed inlined.

DVC's own page loads these three scripts from a CDN, so offline (where licensed data often
lives) `dvc plots show` draws blank charts. `.dvc/config` points DVC at this template
instead (``plots.html_template``). The scripts come from the npm registry at the versions
DVC's renderer asks for; all three are BSD-3-Clause, their licences are copied into the
page. To refresh::

    npm pack vega@5.20.2 vega-lite@5.2.0 vega-embed@6.18.2   # in some folder DIR
    python templates/make_plots_template.py DIR
"""
from __future__ import annotations

import sys
import tarfile
from pathlib import Path

PACKAGES = [("vega", "5.20.2"), ("vega-lite", "5.2.0"), ("vega-embed", "6.18.2")]  # dvc_render's versions
OUT = Path(__file__).resolve().parent / "plots.html"

PAGE = """<!DOCTYPE html>
<html>
<head>
    {{refresh_tag}}
    <meta charset="utf-8">
    <title>mtaffect plots</title>
{licences}
{scripts}
    <style>
        table {{ border-spacing: 15px; }}
        body {{ font-family: sans-serif; }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


def read_package(folder: Path, name: str, version: str) -> tuple[str, str]:
    """(the minified browser build, the licence text) of one npm tarball."""
    with tarfile.open(folder / f"{name}-{version}.tgz") as tar:
        script = tar.extractfile(f"package/build/{name}.min.js").read().decode()
        licence = tar.extractfile("package/LICENSE").read().decode()
    if "</script" in script or "{plot_divs}" in script:
        raise ValueError(f"{name} {version}: its script cannot be inlined as it is")
    return script, licence


def main(folder: str) -> None:
    scripts, licences = [], []
    for name, version in PACKAGES:
        script, licence = read_package(Path(folder), name, version)
        scripts.append(f"    <script>/* {name} {version} */\n{script}\n    </script>")
        licences.append(f"<!-- {name} {version} (npm), inlined by templates/make_plots_template.py:\n"
                        f"{licence.replace('--', '- -').strip()}\n-->")
    page = PAGE.format(licences="\n".join(licences), scripts="\n".join(scripts))
    tmp = OUT.with_name(f".{OUT.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(OUT)
    print(f"{OUT}: {len(page) / 1e3:.0f} kB")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
