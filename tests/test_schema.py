"""Label schemas: the two eras, another AU set, projection of frame-table labels, refusal."""
import numpy as np
import pytest

from pipeline.core.errors import DataError
from pipeline.core.labels import AU_NAMES, EXPR_NAMES
from pipeline.core.schema import (
    ABAW2020, ABAW2022, EXPRESSIONS, OTHER, LabelSchema, au_number, label_schema,
)


def test_the_two_eras_as_the_competitions_define_them():
    assert ABAW2020.aus == AU_NAMES and ABAW2020.expressions == EXPR_NAMES and not ABAW2020.has_other
    assert [au_number(a) for a in ABAW2022.aus] == [1, 2, 4, 6, 7, 10, 12, 15, 23, 24, 25, 26]
    assert ABAW2022.expressions == EXPRESSIONS and EXPRESSIONS[OTHER] == "Other" and ABAW2022.has_other
    assert (ABAW2020.era, ABAW2022.era) == ("2020", "2022")


def test_another_au_set_keeps_the_era_and_records_itself_in_the_name():
    s = label_schema("abaw2022", ["AU12", "au06", "AU1"])
    assert s.aus == ("AU12", "AU6", "AU1") and s.expressions == EXPRESSIONS and s.era == "2022"
    assert s.name == "abaw2022[AU12,AU6,AU1]"
    assert label_schema("abaw2020", list(AU_NAMES)) is ABAW2020
    with pytest.raises(ValueError, match="abaw2021"):
        label_schema("abaw2021")
    with pytest.raises(ValueError, match="'smile'"):
        label_schema("abaw2022", ["AU1", "smile"])
    with pytest.raises(ValueError, match="distinct"):
        label_schema("abaw2022", ["AU1", "AU01"])


def test_projection_keeps_known_aus_and_leaves_the_others_unknown_never_zero():
    # a DISFA-like table: no AU7, AU10, AU23, AU24 columns
    columns = {"AU1": np.array([1, 0, -1]), "AU2": np.array([0, 0, 1]), "AU5": np.array([1, 1, 1]),
               "AU26": np.array([0, 1, 0])}
    got = ABAW2022.project_aus(columns, 3)
    assert got.dtype == np.int8 and got.shape == (3, 12)
    j = {a: i for i, a in enumerate(ABAW2022.aus)}
    np.testing.assert_array_equal(got[:, j["AU1"]], [1, 0, -1])
    np.testing.assert_array_equal(got[:, j["AU26"]], [0, 1, 0])
    for absent in ("AU7", "AU10", "AU23", "AU24", "AU4"):
        np.testing.assert_array_equal(got[:, j[absent]], [-1, -1, -1])


def test_other_is_a_class_in_2022_and_unknown_in_2020():
    codes = np.array([0, 7, 4, -1, 7], dtype=np.int8)
    np.testing.assert_array_equal(ABAW2022.project_expressions(codes), codes)
    np.testing.assert_array_equal(ABAW2020.project_expressions(codes), [0, -1, 4, -1, -1])


def test_an_artefact_of_another_schema_is_refused_in_one_line_naming_both():
    recorded = LabelSchema.from_dict(ABAW2020.as_dict(), "models/teacher.pt")
    assert recorded == ABAW2020
    ABAW2020.require_same(recorded, "models/teacher.pt")
    with pytest.raises(DataError) as e:
        ABAW2022.require_same(recorded, "models/teacher.pt")
    message = str(e.value)
    assert "\n" not in message and "models/teacher.pt" in message
    assert "abaw2020 (8 AUs" in message and "abaw2022 (12 AUs" in message
    with pytest.raises(DataError, match="models/x.pt: unreadable label schema"):
        LabelSchema.from_dict({"name": "x"}, "models/x.pt")
