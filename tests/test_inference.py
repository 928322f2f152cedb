"""Running models over an index: several models in one pass give each model's own predictions."""
import numpy as np
import torch

from pipeline.core.index import FrameIndex
from pipeline.inference.runner import predict, predict_many
from pipeline.training.models import MultitaskNet


def test_predict_many_equals_one_model_at_a_time(index_dir):
    val = FrameIndex.read(index_dir / "val.parquet")
    torch.manual_seed(0)
    a, b = MultitaskNet("mobilenet_v3_small"), MultitaskNet("mobilenet_v3_small")
    b.train()  # the mode each model was in is given back
    both = predict_many({"a": (a, "centres"), "b": (b, "reference")}, val, torch.device("cpu"), batch=16)
    assert b.training and a.training
    for name, model, centres in (("a", a, "centres"), ("b", b, "reference")):
        alone = predict(model, val, torch.device("cpu"), batch=16, centres=centres)
        assert set(both[name]) == {"AU", "EXPR", "VA", "logits"}
        for key, value in alone.items():
            assert both[name][key].shape == (len(val), value.shape[1])
            np.testing.assert_array_equal(both[name][key], value)
    # the two models differ (the comparison above is not of one model with itself)
    assert not np.array_equal(both["a"]["logits"], both["b"]["logits"])
    np.testing.assert_allclose(both["a"]["EXPR"].sum(axis=1), 1, rtol=1e-5)
    assert ((both["a"]["VA"] >= -1) & (both["a"]["VA"] <= 1)).all()
