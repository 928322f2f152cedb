"""Scores against the synthetic ground truth: the complete labels of validation faces, and
the soft labels on the tasks a training frame was not labelled for."""
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
from reference import sklearn_expr

from pipeline.core.index import FrameIndex
from pipeline.core.labels import AU_NAMES, TASKS
from pipeline.core.schema import ABAW2020
from pipeline.training.models import MultitaskNet, load_checkpoint, save_checkpoint
from pipeline.training.softlabels import SoftLabels, dump
from pipeline.core.tables import write_parquet
from pipeline.evaluation.truth import read_ground_truth, soft_label_quality, with_true_labels


@pytest.fixture(scope="module")
def setup(index_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("truth")
    train = {t: FrameIndex.read(Path(index_dir) / f"train_{t}.parquet") for t in TASKS}
    torch.manual_seed(0)
    save_checkpoint(tmp / "t.pt", MultitaskNet("mobilenet_v3_small"), {"train": {"va_centres": "centres"}})
    model, _ = load_checkpoint(tmp / "t.pt")
    dump(model, index_dir, tmp / "c.h5", tmp / "t.pt", 2, "views", 32, torch.device("cpu"), progress=False)
    # the "complete truth": every frame of the fake data set with all three tasks known
    uids = sorted(set().union(*(set(ix.uid) for ix in train.values())))
    rng = np.random.default_rng(0)
    gt = pd.DataFrame({"uid": uids, **{a: rng.integers(0, 2, len(uids)).astype(np.int8) for a in AU_NAMES},
                       "expr": rng.integers(0, 7, len(uids)).astype(np.int8),
                       "valence": rng.uniform(-1, 1, len(uids)).astype(np.float32),
                       "arousal": rng.uniform(-1, 1, len(uids)).astype(np.float32)})
    write_parquet(pa.Table.from_pandas(gt, preserve_index=False), tmp / "gt.parquet")
    return train, SoftLabels(tmp / "c.h5"), tmp / "gt.parquet", gt.set_index("uid")


def test_soft_label_quality_splits_labelled_and_unlabelled_frames(setup):
    train, cache, gt_path, gt = setup
    report = soft_label_quality(cache, train, gt_path)
    for source in ("disfa", "expw", "afewva", "affwild2"):
        for task in TASKS:
            mine = [u for u in cache.uid if u.startswith(source + "/")]
            labelled = set(train[task].uid)
            entry = report["sources"][source][task]
            assert entry["labelled"]["frames"] == sum(u in labelled for u in mine)
            assert entry["unlabelled"]["frames"] == sum(u not in labelled for u in mine)
    # ExpW frames are labelled for EXPR only: their AU are filled in by the teacher alone
    assert report["sources"]["expw"]["AU"]["labelled"]["frames"] == 0
    # the figure itself, recomputed: the teacher's mean softmax over the two views
    rows = [i for i, u in enumerate(cache.uid) if u.startswith("disfa/")]
    logits = torch.from_numpy(np.asarray(cache.array("logits")[rows], np.float32))
    probs = torch.softmax(logits[..., 8:15], dim=-1).mean(1).numpy()
    expected = sklearn_expr(gt.loc[cache.uid[rows], "expr"].to_numpy(), probs)
    assert report["sources"]["disfa"]["EXPR"]["unlabelled"]["scores"]["score"] == pytest.approx(expected["score"])


def test_without_ground_truth_for_these_frames_there_is_nothing_to_report(setup, tmp_path):
    train, cache, _, _ = setup
    assert soft_label_quality(cache, train, tmp_path / "absent.parquet") is None
    other = pd.DataFrame({"uid": ["affwild2/real/1"], **{a: [1] for a in AU_NAMES}, "expr": [0], "valence": [0.1],
                          "arousal": [0.2]})
    write_parquet(pa.Table.from_pandas(other, preserve_index=False), tmp_path / "other.parquet")
    assert read_ground_truth(tmp_path / "other.parquet", cache.uid) is None
    # a damaged ground truth is one line naming it, never a traceback
    from pipeline.core.errors import DataError
    cut = tmp_path / "cut.parquet"
    cut.write_bytes((tmp_path / "other.parquet").read_bytes()[:100])
    with pytest.raises(DataError, match=r"cut.parquet: not a readable ground-truth table"):
        read_ground_truth(cut, cache.uid)
    write_parquet(pa.Table.from_pandas(other.drop(columns="valence"), preserve_index=False), cut)
    with pytest.raises(DataError, match=r"cut.parquet: not a readable ground-truth table"):
        read_ground_truth(cut, cache.uid)


def test_with_true_labels_replaces_the_truth_columns(setup):
    _, cache, gt_path, gt = setup
    uids = cache.uid[:4]
    table = pd.DataFrame({"uid": list(uids) + ["nowhere/x/1"], "model": "m", "expr": -1, "valence": np.nan,
                          **{a: -1 for a in AU_NAMES}, "arousal": np.nan})
    rows = with_true_labels(table, read_ground_truth(gt_path, uids), ABAW2020)
    assert rows["uid"].tolist() == list(uids)
    np.testing.assert_array_equal(rows["expr"].to_numpy(), gt.loc[uids, "expr"].to_numpy())
    np.testing.assert_allclose(rows["valence"].to_numpy(), gt.loc[uids, "valence"].to_numpy())
