import math

import numpy as np
import pytest

from pipeline.core import labels as L
from pipeline.core.schema import ABAW2020, ABAW2022


def test_orders_and_sizes():
    assert L.AU_NAMES == ("AU1", "AU2", "AU4", "AU6", "AU12", "AU15", "AU20", "AU25")
    assert L.EXPR_NAMES == ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise")
    assert L.head_sizes(ABAW2020) == {"AU": 8, "EXPR": 7, "VA": 40} and L.n_logits(ABAW2020) == 55
    assert L.head_sizes(ABAW2022) == {"AU": 12, "EXPR": 8, "VA": 40} and L.n_logits(ABAW2022) == 60


def test_split_logits_follows_the_schema():
    logits = np.arange(2 * 60).reshape(2, 60)
    parts = L.split_logits(logits, ABAW2022)
    assert [parts[t].shape for t in L.TASKS] == [(2, 12), (2, 8), (2, 40)]
    assert parts["AU"][1, -1] == 60 + 11 and parts["EXPR"][0, 0] == 12 and parts["VA"][0, 0] == 20
    assert L.logit_slices(ABAW2020) == {"AU": slice(0, 8), "EXPR": slice(8, 15), "VA": slice(15, 55)}


def test_va_bins_are_true_centres():
    assert len(L.VA_BIN_EDGES) == 21 and len(L.VA_BIN_CENTRES) == 20
    np.testing.assert_allclose(L.VA_BIN_CENTRES, [-0.95 + 0.1 * k for k in range(20)], atol=1e-12)
    # Each centre lies inside its own bin (the reference's linspace values do not).
    assert np.array_equal(L.va_to_bin(L.VA_BIN_CENTRES), np.arange(20))
    ref = L.va_centres("reference")
    assert ref[0] == -1.0 and ref[-1] == 1.0 and not np.allclose(ref, L.VA_BIN_CENTRES)
    with pytest.raises(ValueError, match="unknown VA bin-centre kind"):
        L.va_centres("middle")


@pytest.mark.parametrize(
    "value, expected",
    [(-1.0, 0), (-0.95, 0), (-0.9, 1), (-0.0001, 9), (0.0, 10), (0.05, 10), (0.1, 11), (0.999, 19), (1.0, 19)],
)
def test_va_to_bin_edges(value, expected):
    assert L.va_to_bin([value])[0] == expected


def test_va_to_bin_keeps_unknown_unknown():
    assert L.va_to_bin([float("nan"), 0.5]).tolist() == [-1, 15]


@pytest.mark.parametrize("value", [1.5, -1.0001, 10.0, float("inf"), float("-inf")])
def test_va_to_bin_rejects_values_outside_the_range(value):  # infinite too: never the edge bin
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        L.va_to_bin([0.0, value])


@pytest.mark.parametrize("intensity, expected", [(0, 0), (1, 0), (2, 1), (3, 1), (4, 1), (5, 1), (-1, -1)])
def test_disfa_threshold(intensity, expected):
    assert L.disfa_to_au([intensity]).tolist() == [expected]


def test_disfa_rejects_out_of_range():
    with pytest.raises(ValueError, match="out of 0..5"):
        L.disfa_to_au([6])


@pytest.mark.parametrize(
    "expw, name",
    [(0, "Anger"), (1, "Disgust"), (2, "Fear"), (3, "Happiness"), (4, "Sadness"), (5, "Surprise"), (6, "Neutral")],
)
def test_expw_every_class(expw, name):
    assert L.EXPR_NAMES[L.expw_to_expr([expw])[0]] == name
    # and the ExpW name of that label means the same expression
    assert L.EXPW_NAMES[expw][:3] in name.lower() or (L.EXPW_NAMES[expw], name) in {
        ("angry", "Anger"), ("happy", "Happiness"), ("sad", "Sadness"),
    }


def test_expw_rejects_out_of_range():
    with pytest.raises(ValueError):
        L.expw_to_expr([7])


@pytest.mark.parametrize("raw, expected", [(-10, -1.0), (-3, -0.3), (0, 0.0), (7, 0.7), (10, 1.0)])
def test_afewva_scale(raw, expected):
    assert L.afewva_to_va([raw])[0] == pytest.approx(expected, abs=1e-7)


def test_afewva_rejects_out_of_range():
    with pytest.raises(ValueError, match=r"\[-10, 10\]"):
        L.afewva_to_va([11])


def test_affwild2_au_rows():
    assert L.affwild2_au([0, 1, 0, 0, 1, 0, 0, 1]).tolist() == [0, 1, 0, 0, 1, 0, 0, 1]
    assert L.affwild2_au([-1] * 8).tolist() == [-1] * 8
    # one invalid marker makes the whole frame unknown, never 0
    assert L.affwild2_au([1, -1, 0, 0, 0, 0, 0, 0]).tolist() == [-1] * 8
    with pytest.raises(ValueError):
        L.affwild2_au([2, 0, 0, 0, 0, 0, 0, 0])


def test_affwild2_expr_and_va():
    assert [L.affwild2_expr(v) for v in (0, 4, 6, -1)] == [0, 4, 6, -1]
    with pytest.raises(ValueError):
        L.affwild2_expr(7)
    assert L.affwild2_va("0.25", "-0.5") == (0.25, -0.5)
    v, a = L.affwild2_va(-5, -5)
    assert math.isnan(v) and math.isnan(a)
    with pytest.raises(ValueError, match=r"one of valence and arousal is unknown \(-5\), the other not"):
        L.affwild2_va(0.3, -5)
    with pytest.raises(ValueError):
        L.affwild2_va(1.5, 0)


def test_header_order_maps_by_name():
    assert L.header_order("AU1,AU2,AU4,AU6,AU12,AU15,AU20,AU25", L.AU_NAMES, "x") == list(range(8))
    assert L.header_order("AU2,AU1,AU4,AU6,AU12,AU15,AU20,AU25\n", L.AU_NAMES, "x")[:2] == [1, 0]
    assert L.header_order("Arousal, Valence", L.VA_NAMES, "x") == [1, 0]
    with pytest.raises(ValueError, match="f.txt: line 1: .* lacks AU25"):
        L.header_order("AU1,AU2,AU4,AU6,AU12,AU15,AU20", L.AU_NAMES, "f.txt")
