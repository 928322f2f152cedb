"""What the integrity checks cost when a model bundle is loaded (issue: within 10%).

``ensemble.load_bundle`` checks every record of the torch archive against its CRC-32, that
every weight and AU threshold is a finite number and that the bundle's entries are there.
The same bundles are loaded with and without those checks (switched off by patching them
out), alternately, ``REPEATS`` times each; the table gives the median seconds of each and
the checks' share. Bundles: the demo's (three MobileNetV3-small students) and the paper's
profile's (five ResNet-50 students, 470 MB), written with random weights.

``main()`` prints a table and returns {"name": ..., "rows": [...]} (JSON-serialisable).
"""
from __future__ import annotations

import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import torch

from pipeline.inference import ensemble
from pipeline.training import models
from pipeline.extraction.align import template_points
from pipeline.training.models import MultitaskNet, save_checkpoint

REPEATS = 11
BUNDLES = {"demo (3 x mobilenet_v3_small)": ("mobilenet_v3_small", 3), "abaw2020 (5 x resnet50)": ("resnet50", 5)}


def write_bundle(folder: Path, backbone: str, members: int) -> Path:
    paths = {}
    for i in range(members):
        torch.manual_seed(i)
        paths[f"s{i + 1}"] = str(folder / f"s{i + 1}.pt")
        save_checkpoint(paths[f"s{i + 1}"], MultitaskNet(backbone), {"train": {"va_centres": "centres"}})
    alignment = {"size": 112, "template_scale": 1.0, "template": template_points(112, 1.0).tolist(), "detection": {}}
    ensemble.save_bundle(folder / "bundle.pt", paths, [0.5] * 8, "fixed", alignment)
    return folder / "bundle.pt"


@contextmanager
def unchecked():
    """``load_bundle`` as it was before the checks: no CRC pass, no finiteness or entry checks."""
    with mock.patch.object(models, "_damaged_record", return_value=None), \
            mock.patch.object(ensemble, "check_finite"), mock.patch.object(ensemble, "_check_entries"):
        yield


def seconds(path: Path) -> float:
    start = time.perf_counter()
    ensemble.load_bundle(path)
    return time.perf_counter() - start


def main() -> dict:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, (backbone, members) in BUNDLES.items():
            folder = Path(tmp) / backbone
            folder.mkdir()
            path = write_bundle(folder, backbone, members)
            seconds(path)  # warm the page cache and torchvision's imports
            checked, plain = [], []
            for _ in range(REPEATS):
                checked.append(seconds(path))
                with unchecked():
                    plain.append(seconds(path))
            c, p = statistics.median(checked), statistics.median(plain)
            rows.append({"bundle": label, "megabytes": round(path.stat().st_size / 1e6, 1),
                         "checked_s": round(c, 4), "unchecked_s": round(p, 4), "checks_share": round(c / p - 1, 4)})
    for r in rows:
        print(f"{r['bundle']}: {r['megabytes']} MB, load {r['unchecked_s']:.3f} s, with checks {r['checked_s']:.3f} s "
              f"(+{100 * r['checks_share']:.1f}%)")
    return {"name": "load", "rows": rows}


if __name__ == "__main__":
    main()
