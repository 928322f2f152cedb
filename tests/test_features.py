"""The features stage: per-task features and logits equal to the model's own forward on the
evaluation view, byte-identical reruns, the checkpoint choice, and a file from another
checkpoint refused."""
import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.core.index import FrameIndex, eval_batches
from pipeline.core.errors import CheckpointError, ParamsError
from pipeline.temporal.features import Features, dump
from pipeline.core.labels import TASKS
from pipeline.training.models import MultitaskNet, save_checkpoint
from pipeline.temporal.features import choose_checkpoint


@pytest.fixture(scope="module")
def setup(tmp_path_factory, index_dir):
    tmp = tmp_path_factory.mktemp("features")
    torch.manual_seed(0)
    model = MultitaskNet("resnet18").eval()
    save_checkpoint(tmp / "s1.pt", model, {"train": {"va_centres": "centres"}, "metrics_total": 2.0})
    table = index_dir.parent / "faces" / "affwild2" / "frames.parquet"
    dump(model, table, tmp / "features.h5", tmp / "s1.pt", 32, torch.device("cpu"), "centres")
    return tmp, model, table


def test_features_and_logits_are_the_models_own_on_the_evaluation_view(setup):
    tmp, model, table = setup
    cached = Features(tmp / "features.h5")
    index = FrameIndex.read(table)
    assert list(cached.uid) == list(index.uid) and list(cached.frame) == list(index.frame)
    assert list(cached.split) == pd.read_parquet(table)["split"].tolist()
    with torch.no_grad():
        for x, positions in eval_batches(index, 50):
            out = model(x)
            logits = torch.cat([out[t] for t in TASKS], dim=1).numpy()
            np.testing.assert_allclose(cached.logits[positions], logits, atol=1e-4)
            feats = model.task_features(x)
            for k, task in enumerate(TASKS):
                np.testing.assert_allclose(cached.features[positions, k], feats[task].numpy(), atol=1e-4)


def test_the_same_checkpoint_and_frames_give_the_same_bytes(setup):
    tmp, model, table = setup
    dump(model, table, tmp / "again.h5", tmp / "s1.pt", 32, torch.device("cpu"), "centres")
    assert (tmp / "again.h5").read_bytes() == (tmp / "features.h5").read_bytes()
    # another batch size: the same values up to rounding (some CPUs' convolutions sum in an
    # order that depends on the batch, which is why features.batch is a tracked parameter)
    dump(model, table, tmp / "other.h5", tmp / "s1.pt", 16, torch.device("cpu"), "centres")
    np.testing.assert_allclose(Features(tmp / "other.h5").features, Features(tmp / "features.h5").features, atol=1e-4)


def test_features_of_another_checkpoint_are_refused_naming_both(setup):
    tmp, model, _ = setup
    Features(tmp / "features.h5").check_checkpoint(tmp / "s1.pt")
    torch.manual_seed(1)
    save_checkpoint(tmp / "other.pt", MultitaskNet("resnet18"), {})
    with pytest.raises(CheckpointError, match=r"another checkpoint \(sha256 \w+\.\.\.\) than .*other.pt"):
        Features(tmp / "features.h5").check_checkpoint(tmp / "other.pt")


def test_the_checkpoint_choice(tmp_path):
    for name, total in (("s1", 2.5), ("s2", 2.9), ("s3", 2.7)):
        save_checkpoint(tmp_path / f"{name}.pt", MultitaskNet("mobilenet_v3_small"), {"metrics_total": total})
    assert choose_checkpoint("best_member", ["s1", "s2", "s3"], str(tmp_path), "t.pt").endswith("s2.pt")
    assert choose_checkpoint("best_member", ["s1", "s3"], str(tmp_path), "t.pt").endswith("s3.pt")
    assert choose_checkpoint("teacher", ["s1"], str(tmp_path), "t.pt") == "t.pt"
    assert choose_checkpoint(str(tmp_path / "s1.pt"), [], str(tmp_path), "t.pt") == str(tmp_path / "s1.pt")
    with pytest.raises(ParamsError, match="features.checkpoint: 'nowhere.pt' is not a checkpoint file"):
        choose_checkpoint("nowhere.pt", [], str(tmp_path), "t.pt")
    with pytest.raises(FileNotFoundError, match="member 's9'"):
        choose_checkpoint("best_member", ["s9"], str(tmp_path), "t.pt")


@pytest.mark.parametrize("content", [b"a,b\n", b"PAR1 not really"])
def test_a_damaged_frame_table_is_one_line_naming_it(tmp_path, content):
    from pipeline.core.errors import DataError

    table = tmp_path / "faces.parquet"
    table.write_bytes(content)
    with pytest.raises(DataError, match=rf"{table}: not a readable index or frame table \(.*\): rerun the stage"):
        FrameIndex.read(table)
    pd.DataFrame({"uid": ["a"]}).to_parquet(table)  # a table, not of frames
    with pytest.raises(DataError, match=r"not a readable index or frame table \(.*'video'"):
        FrameIndex.read(table)


def test_a_cnn_or_its_features_of_another_schema_than_params_is_refused_naming_both(setup, tmp_path):
    """A 2022 run given a 2020 CNN: the features stage refuses the checkpoint and the temporal
    stages the features (they would learn and score the 2020 labels without a word)."""
    import yaml
    from click.testing import CliRunner

    from conftest import ROOT
    from stages.features import cli as features
    from stages.rnn_teacher import cli as rnn_teacher

    tmp, _, table = setup
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["build"]["label_schema"] = "abaw2022"
    params["features"]["checkpoint"] = "teacher"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    run = CliRunner().invoke(features, ["--params", str(tmp_path / "params.yaml"), "--teacher", str(tmp / "s1.pt"),
                                        "--faces", str(table), "--out", str(tmp_path / "f.h5"), "--quiet"])
    assert run.exit_code == 1 and "s1.pt: the checkpoint was made for schema abaw2020" in run.output, run.output
    assert "uses abaw2022" in run.output and not (tmp_path / "f.h5").exists()
    run = CliRunner().invoke(rnn_teacher, ["--params", str(tmp_path / "params.yaml"), "--features",
                                           str(tmp / "features.h5"), "--faces", str(table), "--out", str(tmp_path / "rnn")])
    assert run.exit_code == 1 and "features.h5: the features file was made for schema abaw2020" in run.output, run.output
    assert not (tmp_path / "rnn").exists()


def test_a_full_disk_while_writing_features_is_an_error_naming_the_file_and_leaves_nothing(setup):
    import resource
    import signal
    import subprocess
    import sys

    tmp, _, table = setup
    out = tmp / "full" / "features.h5"
    out.parent.mkdir()
    size = (tmp / "features.h5").stat().st_size

    def full_disk_at_half():  # writes beyond it fail (EFBIG) as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, size // 2))

    script = ("import sys, torch\nfrom pipeline.training.models import load_checkpoint\n"
              "from pipeline.temporal.features import dump\nmodel, _ = load_checkpoint(sys.argv[1])\n"
              "try:\n    dump(model.eval(), sys.argv[2], sys.argv[3], sys.argv[1], 32, torch.device('cpu'), 'centres')\n"
              "except OSError as e:\n    sys.exit(f'OSError: {e}')\n")
    proc = subprocess.run([sys.executable, "-c", script, str(tmp / "s1.pt"), str(table), str(out)],
                          preexec_fn=full_disk_at_half, capture_output=True, text=True)
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])  # not killed by a signal (a crash)
    assert proc.stderr.strip().splitlines()[-1].startswith("OSError: ") and str(out) in proc.stderr
    assert list(out.parent.iterdir()) == []
