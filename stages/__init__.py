"""Thin click commands, one per DVC stage: read options, call ``pipeline``, write outputs."""
import importlib.util
import sys

#: Packages every stage imports: their absence means the wrong Python (dvc.yaml's `python`
#: is whichever comes first on PATH), said in one line instead of a traceback per stage.
_NEEDED = ("click", "ruamel.yaml", "yaml", "pydantic", "numpy", "torch")


def _missing(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is None  # found, not imported: torch stays unloaded
    except ModuleNotFoundError:  # "ruamel.yaml" without "ruamel"
        return True


_lacking = [name for name in _NEEDED if _missing(name)]
if _lacking:
    sys.stderr.write(f"Error: this Python ({sys.executable}) lacks the project's packages ({', '.join(_lacking)}): "
                     "put the project's environment first on PATH (export PATH=$PWD/.venv/bin:$PATH) "
                     "or run `make demo`\n")
    sys.exit(1)
