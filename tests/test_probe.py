"""The pixel linear probe on fake faces whose colours carry the labels (tests/conftest.py):
a linear model on pixels must find them, and must not see the validation labels."""
from pathlib import Path

import numpy as np
import pytest

from pipeline.evaluation import metrics
from pipeline.core.index import FrameIndex
from pipeline.core.labels import TASKS
from pipeline.evaluation.probe import PIXELS, PixelProbe, pixel_features


@pytest.fixture(scope="module")
def data(index_dir):
    train = {t: FrameIndex.read(Path(index_dir) / f"train_{t}.parquet") for t in TASKS}
    return train, FrameIndex.read(Path(index_dir) / "val.parquet")


def test_pixel_features_are_grey_pixels_of_the_centre_view(data):
    _, val = data
    x = pixel_features(val, np.arange(5))
    assert x.shape == (5, PIXELS * PIXELS) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1


def test_probe_finds_what_the_pixels_carry(data):
    train, val = data
    preds = PixelProbe.fit(train).predict(val)
    assert preds["AU"].shape == (len(val), 8) and np.allclose(preds["EXPR"].sum(1), 1, atol=1e-5)
    # AU12 is written into the green channel of the face's top half and the expression
    # into the red: a linear probe must read them (valence, in the blue of the bottom half,
    # is faint in grey pixels and has ~100 training frames here: only better than nothing).
    au12 = metrics.au_metrics(val.au[:, [4]].repeat(8, 1), preds["AU"][:, [4]].repeat(8, 1))
    assert au12["f1"] > 0.8
    assert metrics.expr_metrics(val.expr, preds["EXPR"])["acc"] > 0.5  # 7 classes: chance is ~0.14
    assert metrics.va_metrics(val.va, preds["VA"])["ccc_valence"] > 0.05
    again = PixelProbe.fit(train).predict(val)
    for t in TASKS:
        np.testing.assert_array_equal(again[t], preds[t])  # deterministic


def test_a_weighted_probe_fits_the_draws_the_build_gave_each_frame(data):
    """Weights of one value are no weights (scaled to mean 1); a class drawn ten times as
    often is predicted more often, as a network sampling the balanced index sees it."""
    import dataclasses

    train, val = data
    plain = PixelProbe.fit(train).predict(val)
    uniform = {t: dataclasses.replace(ix, weight=np.full(len(ix), 3.0)) for t, ix in train.items()}
    same = PixelProbe.fit(uniform, weighted=True).predict(val)
    for t in TASKS:
        np.testing.assert_allclose(same[t], plain[t], rtol=1e-4, atol=1e-5)
    expr = train["EXPR"]
    classes, counts = np.unique(expr.expr[expr.expr >= 0], return_counts=True)
    rare = int(classes[np.argmin(counts)])  # the rarest class present
    boosted = {**uniform, "EXPR": dataclasses.replace(expr, weight=np.where(expr.expr == rare, 10.0, 1.0))}
    weighted = PixelProbe.fit(boosted, weighted=True).predict(val)
    assert weighted["EXPR"][:, rare].mean() > plain["EXPR"][:, rare].mean() + 0.02
    assert (weighted["EXPR"].argmax(1) == rare).sum() > (plain["EXPR"].argmax(1) == rare).sum()
    unweighted = PixelProbe.fit(boosted).predict(val)  # weighted=False reads no weight
    np.testing.assert_array_equal(unweighted["EXPR"], plain["EXPR"])
