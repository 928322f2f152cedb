"""Thin click commands, one per DVC stage: read options, call ``pipeline``, write outputs."""
import importlib.util
import os
import sys

#: The code paths MKL, oneDNN and torch's own kernels are held to on every CPU: their
#: AVX-512 code sums in other orders than their AVX2 code, so machines of other generations
#: trained other weights. Set here, before anything loads torch (it reads its own at import);
#: a few per cent slower on AVX-512; a user's own setting wins.
CPU_KERNELS = {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2",
               "ATEN_CPU_CAPABILITY": "avx2"}
for _var, _value in CPU_KERNELS.items():
    os.environ.setdefault(_var, _value)

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
