"""The benchmarks still run against the library: each imports and has its ``main`` (two
once broke unseen when names moved). Running them is ``make bench``'s work, not the tests'."""
import importlib.util
import sys

import pytest

from pipeline.core.provenance import ROOT


@pytest.mark.parametrize("path", sorted((ROOT / "benchmarks").glob("bench_*.py")), ids=lambda p: p.stem)
def test_each_benchmark_imports_against_the_current_library(path, monkeypatch):
    monkeypatch.setattr(sys, "path", [str(path.parent), *sys.path])  # what a benchmark adds goes too
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(module.main)
