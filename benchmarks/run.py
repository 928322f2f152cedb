"""Run every ``benchmarks/bench_*.py`` (its ``main()``), print one table, write results.json.

Each benchmark's ``main()`` returns ``{"name": str, "rows": [dict, ...]}`` and may print its
own details; ratios are measured side by side inside one benchmark, never across runs.
Usage: ``python benchmarks/run.py [NAME ...]`` (default: all).
"""
from __future__ import annotations

import importlib.util
import json
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def format_table(results: list[dict]) -> str:
    lines = []
    for res in results:
        lines.append(f"== {res['name']} ({res.get('seconds', 0):.1f} s)")
        rows = res.get("rows", [])
        if not rows:
            continue
        cols = list(dict.fromkeys(k for r in rows for k in r))
        cells = [[_fmt(r.get(c, "")) for c in cols] for r in rows]
        widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
        lines.append("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
        lines.extend("  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells)
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def main(names: list[str]) -> int:
    sys.path.insert(0, str(HERE.parent))
    scripts = sorted(HERE.glob("bench_*.py"))
    if names:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in names]
    results = []
    for script in scripts:
        print(f"-- running {script.name}", flush=True)
        t0 = time.perf_counter()
        res = load(script).main()
        res["seconds"] = time.perf_counter() - t0
        results.append(res)
    print(format_table(results))
    out = HERE / "results.json"
    old = json.loads(out.read_text()) if out.exists() else {}
    old.update({r["name"]: r for r in results})
    old["_machine"] = {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()}
    out.write_text(json.dumps(old, indent=2, sort_keys=True) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
