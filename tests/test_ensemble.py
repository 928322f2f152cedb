"""The ensemble: averages by hand, and the bundle's round trip and refusals."""
import numpy as np
import pytest
import torch

from pipeline.inference.ensemble import BUNDLE_FORMAT, load_bundle, save_bundle

from pipeline.inference.outputs import combine
from pipeline.core.errors import CheckpointError, DataError
from pipeline.core.schema import ABAW2020, ABAW2022
from pipeline.training.models import MultitaskNet, save_checkpoint


def test_combine_averages_probabilities_and_reports_the_spread():
    a = {"AU": np.array([[0.2] * 8]), "EXPR": np.array([[0.5, 0.5, 0, 0, 0, 0, 0]]), "VA": np.array([[0.4, -0.2]])}
    b = {"AU": np.array([[0.6] * 8]), "EXPR": np.array([[0.1, 0.9, 0, 0, 0, 0, 0]]), "VA": np.array([[0.0, 0.2]])}
    out = combine([a, b])
    np.testing.assert_allclose(out["AU"], [[0.4] * 8])
    np.testing.assert_allclose(out["EXPR"], [[0.3, 0.7, 0, 0, 0, 0, 0]])
    np.testing.assert_allclose(out["VA"], [[0.2, 0.0]])
    np.testing.assert_allclose(out["uncertainty_AU"], [0.2], rtol=1e-6)        # std of 0.2 and 0.6
    np.testing.assert_allclose(out["uncertainty_EXPR"], [0.4 / 7], rtol=1e-6)  # classes 0 and 1 differ by 0.4
    np.testing.assert_allclose(out["uncertainty_VA"], [[0.2, 0.2]], rtol=1e-6)
    with pytest.raises(ValueError, match="at least one member"):
        combine([])


def test_bundle_round_trip_and_refusals(tmp_path):
    torch.manual_seed(0)
    members = {}
    for name in ("s1", "s2"):
        model = MultitaskNet("mobilenet_v3_small")
        save_checkpoint(tmp_path / f"{name}.pt", model, {"train": {"va_centres": "reference" if name == "s2" else "centres"},
                                                            "soft_labels": {"mode": "centre"}})
        members[name] = str(tmp_path / f"{name}.pt")
    alignment = {"size": 112, "template_scale": 1.0, "template": [[38.3, 51.7]] * 5}
    summary = save_bundle(tmp_path / "ensemble.pt", members, [0.3] * 8, "tuned per AU on the validation set", alignment)
    assert list(summary["members"]) == ["s1", "s2"] and summary["au_thresholds"] == [0.3] * 8
    loaded, bundle = load_bundle(tmp_path / "ensemble.pt")
    assert [(n, c) for n, _, c in loaded] == [("s1", "centres"), ("s2", "reference")]
    reference = torch.load(tmp_path / "s2.pt", weights_only=True)["state_dict"]
    for k, v in loaded[1][1].state_dict().items():
        assert torch.equal(v, reference[k])
    assert bundle["alignment"] == alignment and bundle["au_threshold_mode"].startswith("tuned")
    assert bundle["member_sha256"] == summary["members"]
    assert len(load_bundle(tmp_path / "ensemble.pt", schema=ABAW2020)[0]) == 2
    with pytest.raises(DataError, match=r"ensemble.pt: the model bundle was made for schema abaw2020 \(8 AUs.*"
                                        r"but this run uses abaw2022 \(12 AUs"):
        load_bundle(tmp_path / "ensemble.pt", schema=ABAW2022)

    raw = torch.load(tmp_path / "ensemble.pt", weights_only=True)
    torch.save({**raw, "format_version": BUNDLE_FORMAT + 1}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match=f"bundle format {BUNDLE_FORMAT + 1}; this version of mtaffect reads"):
        load_bundle(tmp_path / "future.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an mtaffect ensemble bundle"):
        load_bundle(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="not a readable model bundle"):
        load_bundle(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError, match="dvc repro ensemble"):
        load_bundle(tmp_path / "absent.pt")


def test_ensemble_stage_tunes_thresholds_on_the_validation_set(index_dir, tmp_path):
    """`ensemble.au_thresholds: tuned`: the F1-best threshold per AU of the members' mean
    probability on validation, recomputed here from each member's own predictions."""
    import json
    import os
    import shutil
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.parquet as pq
    from click.testing import CliRunner

    from conftest import set_preset
    from pipeline.core.index import FrameIndex
    from pipeline.training.params import TrainParams
    from pipeline.inference.runner import predict
    from pipeline.core.labels import AU_NAMES
    from pipeline.evaluation.thresholds import tune_thresholds
    from pipeline.training.models import load_checkpoint
    from pipeline.training.train import Outputs, train
    from stages.ensemble import cli

    params = tmp_path / "params.yaml"
    shutil.copy(Path(__file__).resolve().parents[1] / "params.yaml", params)
    set_preset(params, "tiny", ensemble={"au_thresholds": "tuned"})
    # two members trained for a few steps (random weights predict the same for every face)
    val, preds = FrameIndex.read(index_dir / "val.parquet"), []
    for seed, name in enumerate(("s1", "s2")):
        params_s = TrainParams(backbone="mobilenet_v3_small", epochs=1, steps_per_epoch=3, batch_per_task=6,
                               device="cpu", eval_batch=64, seed=seed, bn_momentum=0.5)
        run = tmp_path / "runs" / name
        train(params_s, index_dir, Outputs(tmp_path / "students" / f"{name}.pt", run / "log.csv", run / "report.json",
                                           run / "resume.pt"), progress=False,
              extra={"soft_labels": {"note": "not distilled: enough for the thresholds"}})  # counts as a student
        model, _ = load_checkpoint(tmp_path / "students" / f"{name}.pt")
        preds.append(predict(model, val, torch.device("cpu")))
    mean = combine(preds)["AU"]
    # validation AU labels that the members' mean predicts well (so that thresholds do not
    # all tie at the lowest): a copy of val.parquet elsewhere, its shard paths made
    # relative to the new folder
    table = pq.read_table(index_dir / "val.parquet")
    df = table.to_pandas()
    (tmp_path / "index").mkdir()
    df["shard"] = [os.path.relpath(s, tmp_path / "index") for s in val.shard]
    for j, au in enumerate(AU_NAMES):
        df[au] = (mean[:, j] > np.quantile(mean[:, j], 0.7)).astype(df[au].dtype)
    pq.write_table(pa.Table.from_pandas(df, schema=table.schema, preserve_index=False), tmp_path / "index/val.parquet")
    val = FrameIndex.read(tmp_path / "index/val.parquet")

    result = CliRunner().invoke(cli, ["--params", str(params), "--index", str(tmp_path / "index"), "--students",
                                      str(tmp_path / "students"), "--out", str(tmp_path / "ensemble.pt"),
                                      "--report", str(tmp_path / "ensemble.json"), "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "ensemble.json").read_text())
    expected = tune_thresholds(val.au, mean)
    assert not np.allclose(expected, tune_thresholds(val.au, preds[0]["AU"]))  # the mean matters here
    np.testing.assert_allclose(report["au_thresholds"], expected)
    assert report["au_threshold_mode"] == "tuned per AU on the validation set"
    _, bundle = load_bundle(tmp_path / "ensemble.pt")
    np.testing.assert_allclose(bundle["au_thresholds"], report["au_thresholds"])


def test_a_teacher_is_refused_as_an_ensemble_member(tmp_path):
    from pipeline.core.errors import CheckpointError
    from pipeline.inference.ensemble import load_student
    from pipeline.training.models import MultitaskNet, save_checkpoint

    torch.manual_seed(0)
    net = MultitaskNet("mobilenet_v3_small")
    save_checkpoint(tmp_path / "teacher.pt", net, {"train": {"va_centres": "centres"}})
    save_checkpoint(tmp_path / "s1.pt", net, {"train": {"va_centres": "centres"}, "soft_labels": {"mode": "centre"}})
    assert load_student(tmp_path / "s1.pt")[1]["soft_labels"] == {"mode": "centre"}
    with pytest.raises(CheckpointError, match=r"teacher.pt: not a student's checkpoint"):
        load_student(tmp_path / "teacher.pt")


def test_one_checkpoint_twice_is_refused_when_bundled_and_when_loaded(tmp_path):
    """Two members of one checkpoint (cp s1.pt s2.pt) agree on every row: the spread, the
    uncertainty predict reports, would be zero everywhere."""
    import shutil

    torch.manual_seed(0)
    for name in ("s1", "s3"):
        save_checkpoint(tmp_path / f"{name}.pt", MultitaskNet("mobilenet_v3_small"),
                        {"train": {"va_centres": "centres"}, "soft_labels": {"mode": "centre"}})
    shutil.copy(tmp_path / "s1.pt", tmp_path / "s2.pt")
    alignment = {"size": 112, "template_scale": 1.0, "template": [[38.3, 51.7]] * 5}
    members = {n: str(tmp_path / f"{n}.pt") for n in ("s1", "s2", "s3")}
    with pytest.raises(CheckpointError, match=f"{tmp_path / 's1.pt'} and {tmp_path / 's2.pt'} are the same checkpoint "
                                              r"\(sha256 [0-9a-f]{16}\.\.\.\): members s1 and s2 would always agree"):
        save_bundle(tmp_path / "ensemble.pt", members, [0.5] * 8, "fixed 0.5", alignment)
    assert not (tmp_path / "ensemble.pt").exists()

    # a bundle made before this check: its members' hashes say it
    save_bundle(tmp_path / "ensemble.pt", {"s1": members["s1"], "s3": members["s3"]}, [0.5] * 8, "fixed 0.5", alignment)
    raw = torch.load(tmp_path / "ensemble.pt", weights_only=True)
    raw["members"][1] = {**raw["members"][0], "name": "s3"}
    torch.save(raw, tmp_path / "twins.pt")
    with pytest.raises(CheckpointError, match=r"twins.pt: members s1 and s3 are the same checkpoint .*rebuild it"):
        load_bundle(tmp_path / "twins.pt")


def test_a_missing_bundle_names_the_stage_that_writes_it(tmp_path):
    from pipeline.inference.ensemble import RNN_BUNDLE_KIND

    with pytest.raises(FileNotFoundError, match=r"ensemble.pt: model bundle not found \(run `dvc repro ensemble`\)"):
        load_bundle(tmp_path / "ensemble.pt")
    with pytest.raises(FileNotFoundError, match=r"run `dvc repro rnn_ensemble`, with its length in temporal"):
        load_bundle(tmp_path / "T8.pt", kind=RNN_BUNDLE_KIND)


def test_a_missing_bundle_outside_the_projects_root_says_where_to_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # e.g. `cd reports && mtaffect predict ...`: the default path is relative
    with pytest.raises(FileNotFoundError, match=r"not found \(run `dvc repro ensemble`; run from the project's root, "
                                                r"or pass --model\)"):
        load_bundle("models/ensemble.pt")


def test_the_weights_digest_reads_values_not_memory_layout_and_sees_one_changed_value():
    from pipeline.training.models import weights_sha256

    torch.manual_seed(0)
    net = MultitaskNet("mobilenet_v3_small", schema=ABAW2020)
    plain = {k: v.clone() for k, v in net.state_dict().items()}
    laid_out = {k: v.clone() for k, v in net.to(memory_format=torch.channels_last).state_dict().items()}
    assert any(not v.is_contiguous() for v in laid_out.values())  # the same values, another layout
    assert weights_sha256(plain) == weights_sha256(laid_out)
    name = next(k for k, v in plain.items() if v.is_floating_point() and v.dim() == 4)
    plain[name].view(-1)[7] = torch.nextafter(plain[name].view(-1)[7], torch.tensor(1.0))  # the last bit of one value
    assert weights_sha256(plain) != weights_sha256(laid_out)
