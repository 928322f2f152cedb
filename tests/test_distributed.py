"""DistributedDataParallel on this machine: two CPU processes (gloo) against one."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch


pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
HERE = Path(__file__).parent


def torchrun(nproc: int, *args: str) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def test_two_processes_give_the_gradients_of_one(index_dir, tmp_path):
    torchrun(1, str(HERE / "ddp_check.py"), str(index_dir), str(tmp_path / "one.pt"))
    torchrun(2, str(HERE / "ddp_check.py"), str(index_dir), str(tmp_path / "two.pt"))
    one = torch.load(tmp_path / "one.pt", weights_only=True)
    two = torch.load(tmp_path / "two.pt", weights_only=True)
    torch.testing.assert_close(two["loss"], one["loss"], rtol=1e-10, atol=0)
    for name, g in one["grads"].items():
        # float64 run: agreement to 1e-9 of each tensor's norm, where float32 rounding
        # alone is ~1e-2 and a wrong BatchNorm or loss reduction is O(1)
        err = ((two["grads"][name] - g).norm() / g.norm().clamp_min(1e-30)).item()
        assert err < 1e-9, (name, err)
    for name, v in one["running_var"].items():  # BatchNorm saw the whole batch
        torch.testing.assert_close(two["running_var"][name], v, rtol=1e-9, atol=1e-12, msg=name)


def test_torchrun_training_matches_one_process(index_dir, tmp_path):
    script = (
        "import sys, torch; from pathlib import Path; from pipeline.training.params import TrainParams; "
        "from pipeline.training.train import Outputs, train; torch.set_num_threads(1); o = Path(sys.argv[1]); "
        "p = TrainParams(backbone='mobilenet_v3_small', epochs=2, steps_per_epoch=2, batch_per_task=8, "
        "device='cpu', eval_batch=64); "
        "train(p, sys.argv[2], Outputs(o/'m.pt', o/'log.csv', o/'r.json', o/'resume.pt'), progress=False)"
    )
    (tmp_path / "run.py").write_text(script.replace("; ", "\n"))
    torchrun(1, str(tmp_path / "run.py"), str(tmp_path / "one"), str(index_dir))
    torchrun(2, str(tmp_path / "run.py"), str(tmp_path / "two"), str(index_dir))
    log1 = (tmp_path / "one" / "log.csv").read_text().splitlines()
    log2 = (tmp_path / "two" / "log.csv").read_text().splitlines()
    assert len(log1) == len(log2) == 3
    for a, b in zip(log1[1:], log2[1:]):
        # per-epoch mean losses agree to floating-point tolerance
        la, lb = [float(x) for x in a.split(",")[2:6]], [float(x) for x in b.split(",")[2:6]]
        assert la == pytest.approx(lb, rel=1e-3)
    a = torch.load(tmp_path / "one" / "m.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "two" / "m.pt", weights_only=True)["state_dict"]
    for k in a:
        if a[k].is_floating_point():
            # Adam moves each weight by at most ~lr per step, so agreement to a few lr is
            # the floating-point tolerance of 4 steps (a sign flip of a ~0 gradient).
            torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-3, msg=k)
