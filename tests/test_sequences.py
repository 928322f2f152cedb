"""The temporal model on cached features: the GRU, its windows and labels, training that
never opens a face, its soft-label cache and its bad input."""
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from pipeline.temporal.params import RnnParams, RnnStudentParams
from pipeline.core.index import FrameIndex
from pipeline.core.errors import CheckpointError, DataError
from pipeline.temporal.features import FORMAT_VERSION, Features
from pipeline.core.labels import n_logits
from pipeline.training.models import model_schema
from pipeline.core.schema import ABAW2020
from pipeline.evaluation.scoring import evaluate_predictions
from pipeline.temporal.sequences import SequenceData, Split, check_cache, dump_soft_labels, predict, window_batch
from pipeline.training.softlabels import SoftLabels
from pipeline.core.shards import seal_h5
from pipeline.temporal.model import TemporalNet, load_temporal
from pipeline.training.train import Outputs, train

# video -> (split, frame numbers): a gap in "a" (frames 10..14 lost), "v" for validation
VIDEOS = {"a": ("train", [*range(0, 10), *range(15, 40)]), "b": ("train", list(range(30))),
          "v": ("val", list(range(36))), "w": ("val", list(range(20)))}


def write_features(path, videos=VIDEOS, seed=0, sha="c" * 64):
    """A features file of the features stage's format, with features that carry each
    frame's label and its neighbours' (so a window knows more than a frame)."""
    rng = np.random.default_rng(seed)
    rows = [(v, s, f) for v, (s, frames) in videos.items() for f in frames]
    n = len(rows)
    feats = rng.normal(size=(n, 3, 128)).astype(np.float32)
    with h5py.File(path, "w") as h5:
        strings = h5py.string_dtype("utf-8")
        h5.create_dataset("uid", data=np.array([f"affwild2/{v}/{f:05d}" for v, _, f in rows], dtype=object),
                          dtype=strings)
        h5.create_dataset("video", data=np.array([v for v, _, _ in rows], dtype=object), dtype=strings)
        h5.create_dataset("frame", data=np.array([f for _, _, f in rows], dtype=np.int64))
        h5.create_dataset("split", data=np.array([s for _, s, _ in rows], dtype=object), dtype=strings)
        h5.create_dataset("features", data=feats)
        h5.create_dataset("logits", data=np.zeros((n, n_logits(ABAW2020)), np.float32))
        for k, v in {"format_version": FORMAT_VERSION, "checkpoint_sha256": sha, "backbone": "x",
                     "va_centres": "centres", "provenance": "[]",
                     "label_schema": json.dumps(model_schema(ABAW2020), sort_keys=True)}.items():
            h5.attrs[k] = v
        seal_h5(h5)
    return Features(path)


def frame_table(features: Features, shard="no/such/shard.h5") -> FrameIndex:
    """Labels for the features' frames (their shards do not exist: nothing may read them)."""
    n = len(features.uid)
    signal = features.features[:, 0, 0]
    au = np.where(signal[:, None] > 0, 1, 0).repeat(8, axis=1).astype(np.int8)
    au[features.video == "b"] = -1  # video b: no AU labels
    expr = (np.abs(features.features[:, 1, 0] * 3).astype(np.int64) % 7).astype(np.int8)
    va = np.clip(features.features[:, 2, :2] / 3, -1, 1).astype(np.float32)
    return FrameIndex(uid=features.uid.astype(object), video=features.video.astype(object), frame=features.frame,
                      shard=np.full(n, shard, dtype=object), row=np.arange(n), au=au, expr=expr, va=va,
                      weight=np.ones(n))


def test_padding_never_reaches_a_real_frame_and_outputs_are_window_major():
    torch.manual_seed(0)
    model = TemporalNet(hidden=8).eval()
    short, long = torch.randn(1, 5, 3, 128), torch.randn(1, 9, 3, 128)
    batch = torch.zeros(2, 9, 3, 128)
    batch[0, :5], batch[1] = short[0], long[0]
    batch[0, 5:] = 100.0  # padding with large values: must change nothing
    with torch.no_grad():
        together = model((batch, torch.tensor([5, 9])))
        alone = [model((short, torch.tensor([5]))), model((long, torch.tensor([9])))]
    for task, width in (("AU", 8), ("EXPR", 7), ("VA", 40)):
        assert together[task].shape == (14, width)
        torch.testing.assert_close(together[task], torch.cat([alone[0][task], alone[1][task]]))
    # bidirectional: the first frame's output depends on the last frame of its window
    changed = long.clone()
    changed[0, -1] += 1.0
    with torch.no_grad():
        assert not torch.allclose(model((changed, torch.tensor([9])))["AU"][0], alone[1]["AU"][0])


def test_windows_respect_gaps_and_labels_follow_their_frames(tmp_path):
    features = write_features(tmp_path / "f.h5")
    table = frame_table(features)
    data = SequenceData(features, table, 8)
    # video a: runs of 10 and 25 frames; no window joins frame 9 and frame 15
    for k in range(len(data.train.windows)):
        rows = data.train.frames(k)
        assert len(set(features.video[rows])) == 1 and np.all(np.diff(features.frame[rows]) == 1)
    x, lengths, frames = window_batch(features, data.train, [0, 3])
    np.testing.assert_array_equal(x[0, :lengths[0]].numpy(), features.features[data.train.frames(0)])
    np.testing.assert_array_equal(frames, np.concatenate([data.train.frames(0), data.train.frames(3)]))
    # the AU windows are those with a known AU: none from video b
    assert set(features.video[data.train.rows[data.train.windows[data.task_windows["AU"], 0]]]) == {"a"}
    assert len(data.task_windows["EXPR"]) == len(data.train.windows)


def test_prediction_fuses_overlapping_windows(tmp_path):
    features = write_features(tmp_path / "f.h5")
    model = TemporalNet(hidden=8)
    rows = np.flatnonzero(features.split == "val")
    split = Split.of(features, rows, 16, training=False)  # v: 0-16, 16-32, 20-36 (end-aligned); w: 0-16, 4-20
    preds = predict(model, features, split, "cpu", batch=2)
    with torch.no_grad():
        def logits(a, b):
            x = torch.from_numpy(np.asarray(features.features[rows[a:b]]))[None]
            out = model((x, torch.tensor([b - a])))
            return torch.cat([out["AU"], out["EXPR"], out["VA"]], 1).numpy()
        v = [logits(0, 16), logits(16, 32), logits(20, 36)]
    np.testing.assert_allclose(preds["logits"][:16], v[0], atol=1e-5)
    np.testing.assert_allclose(preds["logits"][17], v[1][1], atol=1e-5)  # in one window only
    np.testing.assert_allclose(preds["logits"][25], (v[1][9] + v[2][5]) / 2, atol=1e-5)  # in two
    au = 1 / (1 + np.exp(-np.stack([v[1][9, :8], v[2][5, :8]])))
    np.testing.assert_allclose(preds["AU"][25], au.mean(axis=0), atol=1e-5)  # probabilities averaged


def test_training_reads_features_only_and_learns(tmp_path, monkeypatch):
    import pipeline.core.shards

    def refuse(*args, **kwargs):
        raise AssertionError("a face shard was opened")

    monkeypatch.setattr(pipeline.core.shards.FaceReader, "read", refuse)
    monkeypatch.setattr(h5py, "File", _only_features(h5py.File, tmp_path / "f.h5"))
    features = write_features(tmp_path / "f.h5")
    table = frame_table(features)
    params = RnnParams(hidden=16, epochs=3, steps_per_epoch=15, batch_per_task=4, lr=0.01, betas=[0.9, 0.999],
                       device="cpu")
    out = Outputs(tmp_path / "m.pt", tmp_path / "log.csv", tmp_path / "r.json", tmp_path / "resume.pt")
    report = train(params, SequenceData(features, table, 8), out, name="rnn", progress=False)
    losses = [h["loss"] for h in report["history"]]
    assert losses[-1] < losses[0]
    model, ckpt = load_temporal(out.checkpoint)
    assert ckpt["train"]["hidden"] == 16 and model.hidden == 16


def _only_features(real, allowed):
    def opened(path, *args, **kwargs):
        if str(path) != str(allowed) and not str(path).endswith(".tmp"):
            raise AssertionError(f"{path} opened")
        return real(path, *args, **kwargs)
    return opened


def test_soft_label_cache_and_a_student(tmp_path):
    features = write_features(tmp_path / "f.h5")
    table = frame_table(features)
    torch.manual_seed(0)
    teacher = TemporalNet(hidden=8)
    from pipeline.training.models import save_checkpoint
    save_checkpoint(tmp_path / "t.pt", teacher, {"sequence_length": 8})
    summary = dump_soft_labels(teacher, features, 8, tmp_path / "soft.h5", tmp_path / "t.pt", 4, "cpu", "centres")
    with pytest.raises(CheckpointError, match="soft.h5: the soft labels of the temporal teacher .*not of the CNN"):
        SoftLabels(tmp_path / "soft.h5")  # given to train-student
    cache = SoftLabels(tmp_path / "soft.h5", "rnn_soft_labels")
    train_rows = np.flatnonzero(features.split == "train")
    assert summary["frames"] == len(train_rows) == len(cache.uid)
    assert list(cache.uid) == sorted(features.uid[train_rows])  # the cache's order: by uid
    expected = predict(teacher, features, Split.of(features, train_rows, 8, training=False), "cpu")["logits"]
    rows = cache.rows(table.subset(train_rows))
    np.testing.assert_allclose(cache.array("logits")[rows, 0], expected, atol=2e-3, rtol=1e-3)
    check_cache(cache, features, 8)
    with pytest.raises(CheckpointError, match="another sequence length"):
        check_cache(cache, features, 16)
    data = SequenceData(features, table, 8, soft_labels=cache)
    step = data.steps(_sampler(data), 0, 0, None)[0]
    (x, lengths), labels, windows = step["AU"]
    frames = np.concatenate([data.train.frames(k) for k in windows.numpy()])
    assert set(windows.numpy()) <= set(data.task_windows["AU"])
    np.testing.assert_allclose(labels["teacher"].numpy(), np.asarray(cache.array("logits")[
        cache.rows(table.subset(frames)), 0], np.float32))
    params = RnnStudentParams(hidden=8, epochs=1, steps_per_epoch=3, batch_per_task=4, device="cpu")
    out = Outputs(tmp_path / "s.pt", tmp_path / "s.csv", tmp_path / "s.json", tmp_path / "s-resume.pt")
    assert train(params, data, out, name="student", progress=False)["epochs"] == 1


def _sampler(data):
    from pipeline.training.sampling import TaskBatchSampler
    return TaskBatchSampler(data.weights, 4, epoch_length=2, seed=0)


def test_bad_sequence_lengths_and_frame_order(tmp_path):
    features = write_features(tmp_path / "f.h5")
    table = frame_table(features)
    with pytest.raises(DataError, match="sequence length 0: must be at least 1"):
        SequenceData(features, table, 0)
    with pytest.raises(DataError, match="sequence length 31: longer than every training video's run .* 30 frames"):
        SequenceData(features, table, 31)
    shuffled = write_features(tmp_path / "g.h5", {"a": ("train", [0, 1, 3, 2, 4])})
    with pytest.raises(DataError, match="video a: frame 2 comes after frame 3"):
        SequenceData(shuffled, frame_table(shuffled), 2)
    only_train = write_features(tmp_path / "h.h5", {"a": ("train", list(range(30)))})
    with pytest.raises(DataError, match="no validation frames"):
        SequenceData(only_train, frame_table(only_train), 8)
    other = frame_table(only_train)
    with pytest.raises(CheckpointError, match="not the features of this frame table"):
        SequenceData(features, other, 8)


def test_paired_comparisons_between_any_two_models():
    from tests.test_scoring import synthetic_predictions  # the scoring tests' table of several models
    table = synthetic_predictions(models=(("teacher", 0.6), ("a", 0.3), ("b", 0.45)))
    pairs = evaluate_predictions(table, n_boot=30, pairs=[("a", "b")])
    direct = evaluate_predictions(table, n_boot=30, reference="b")
    assert pairs["a"]["vs_b"] == direct["a"]["vs_b"]
    assert "vs_teacher" in pairs["a"] and "vs_b" not in pairs["teacher"]
    assert json.dumps(pairs["a"]["vs_b"])  # plain values


def test_features_of_another_checkpoint_are_refused_by_the_temporal_stages(tmp_path):
    from pipeline.core.schema import ABAW2020
    from stages.rnn_common import open_features

    write_features(tmp_path / "f.h5", sha="c" * 64)
    named = tmp_path / "named.pt"
    named.write_bytes(b"the checkpoint params name")
    with pytest.raises(CheckpointError, match=r"computed by another checkpoint \(sha256 cccccccccccc...\) than .*named.pt"):
        open_features(str(named), [], str(tmp_path), ABAW2020, str(tmp_path / "f.h5"), None, "models/students",
                      "models/teacher.pt")


def test_rnn_teacher_refuses_a_bad_length_in_one_line_before_writing(tmp_path):
    import pandas as pd
    import yaml
    from click.testing import CliRunner

    from pipeline.core.hashing import file_sha256
    from pipeline.core.labels import AU_NAMES
    from stages.rnn_teacher import cli

    checkpoint = tmp_path / "member.pt"
    checkpoint.write_bytes(b"the frozen CNN")
    features = write_features(tmp_path / "f.h5", sha=file_sha256(checkpoint))
    t = frame_table(features)
    table = pd.DataFrame({"uid": t.uid, "video": t.video, "frame": t.frame, "shard": t.shard, "row": t.row,
                          **{a: t.au[:, j] for j, a in enumerate(AU_NAMES)}, "expr": t.expr,
                          "valence": t.va[:, 0], "arousal": t.va[:, 1]})
    table.to_parquet(tmp_path / "frames.parquet")
    raw = yaml.safe_load(open(Path(__file__).resolve().parents[1] / "params.yaml"))
    raw["features"]["checkpoint"] = str(checkpoint)
    raw["temporal"] = {"sequence_lengths": [8, 31]}  # 31: longer than every training run
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    out = tmp_path / "rnn"
    result = CliRunner().invoke(cli, ["--params", str(tmp_path / "params.yaml"), "--features", str(tmp_path / "f.h5"),
                                      "--faces", str(tmp_path / "frames.parquet"), "--out", str(out),
                                      "--log", str(tmp_path / "logs"), "--report", str(tmp_path / "r.json"), "--quiet"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "Error: sequence length 31: longer than every training video's run of consecutive frames (the longest has "
        "30 frames); choose temporal.sequence_lengths of at most 30")
    assert not out.exists() and not (tmp_path / "r.json").exists()
