"""Label schemas: which action units and expression classes a run learns, scores and writes.

``abaw2020`` is the paper's label space (8 AUs, the 7 basic expressions); ``abaw2022`` is
every Aff-Wild2 release since the ABAW 3rd competition (12 AUs, the 7 basic expressions and
Other). A run may also name its own AU set. Frame tables keep every AU a source labels and
expressions in the 8-class codes below; the build projects them onto the run's schema, and
each artefact made from the build records the schema it was made for (docs/method.md,
"Label schemas").
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import numpy as np

from pipeline.core.errors import DataError

#: The 7 basic expressions, then Other: the expression codes 0..7 of every frame table.
EXPRESSIONS: tuple[str, ...] = (
    "Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other",
)
OTHER = EXPRESSIONS.index("Other")
UNKNOWN = -1

Era = Literal["2020", "2022"]


def au_number(name: str) -> int:
    """FACS number of an AU column name ("AU12" -> 12); ValueError for anything else."""
    match = re.fullmatch(r"AU0*(\d{1,2})", name.strip(), flags=re.IGNORECASE)
    if match is None:
        raise ValueError(f"{name!r} is not an action unit name (AU1, AU12, ...)")
    return int(match.group(1))


def au_name(number: int) -> str:
    return f"AU{int(number)}"


def prob_column(label: str) -> str:
    """The column of an AU's or a class's predicted probability (``p_AU12``, ``p_Happy``),
    in the validation table and in predict's tables alike."""
    return f"p_{label}"


@dataclass(frozen=True)
class LabelSchema:
    """The AUs (in head order), the expression classes (a prefix of :data:`EXPRESSIONS`)
    and the era whose metrics score them."""

    name: str
    aus: tuple[str, ...]
    expressions: tuple[str, ...]
    era: Era

    def __post_init__(self):
        numbers = [au_number(a) for a in self.aus]
        if not numbers or len(set(numbers)) != len(numbers):
            raise ValueError(f"schema {self.name}: AUs must be distinct and at least one, got {list(self.aus)}")
        if self.expressions != EXPRESSIONS[:len(self.expressions)] or len(self.expressions) < 7:
            raise ValueError(f"schema {self.name}: expression classes must be the 7 basic ones, optionally Other")

    @property
    def au_probs(self) -> list[str]:
        return [prob_column(a) for a in self.aus]

    @property
    def expr_probs(self) -> list[str]:
        return [prob_column(e) for e in self.expressions]

    @property
    def has_other(self) -> bool:
        return len(self.expressions) > OTHER

    def describe(self) -> str:
        """``abaw2022 (12 AUs: AU1, ..., AU26; 8 classes with Other)``."""
        classes = f"{len(self.expressions)} classes{' with Other' if self.has_other else ''}"
        return f"{self.name} ({len(self.aus)} AUs: {', '.join(self.aus)}; {classes})"

    def as_dict(self) -> dict:
        """What an artefact records (plain JSON types)."""
        return {"name": self.name, "aus": list(self.aus), "expressions": list(self.expressions), "era": self.era}

    @classmethod
    def from_dict(cls, d: dict, where: str) -> LabelSchema:
        try:
            return cls(name=str(d["name"]), aus=tuple(d["aus"]), expressions=tuple(d["expressions"]),
                       era=d["era"])
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{where}: unreadable label schema ({type(e).__name__}: {e})") from None

    def require_same(self, recorded: LabelSchema, what: str) -> None:
        """Refuse an artefact made for another schema, in one line naming both."""
        if recorded != self:
            raise DataError(f"{what} was made for schema {recorded.describe()}, but this run uses "
                            f"{self.describe()}: rebuild it with this schema, or set the schema it was made for")

    # --- projection of frame-table labels onto the schema ---------------------------------

    def project_aus(self, columns: dict[str, np.ndarray], n: int) -> np.ndarray:
        """[n, len(aus)] int8 labels from a table's AU columns (name -> array); an AU the
        table does not hold is unknown (-1), never 0."""
        out = np.full((n, len(self.aus)), UNKNOWN, dtype=np.int8)
        for j, name in enumerate(self.aus):
            if name in columns:
                out[:, j] = columns[name]
        return out

    def project_expressions(self, codes: np.ndarray) -> np.ndarray:
        """8-class codes onto the schema's classes: Other is unknown (-1) without it."""
        codes = np.asarray(codes, dtype=np.int8)
        if self.has_other:
            return codes.copy()
        return np.where(codes == OTHER, UNKNOWN, codes).astype(np.int8)


ABAW2020 = LabelSchema("abaw2020", ("AU1", "AU2", "AU4", "AU6", "AU12", "AU15", "AU20", "AU25"),
                       EXPRESSIONS[:7], "2020")
ABAW2022 = LabelSchema("abaw2022", ("AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24",
                                    "AU25", "AU26"), EXPRESSIONS, "2022")
SCHEMAS = {s.name: s for s in (ABAW2020, ABAW2022)}


def label_schema(name: str, aus: list[str] | None = None) -> LabelSchema:
    """A named schema, or its classes and metrics with another AU set (``aus``, in head
    order; the name then records the set, e.g. ``abaw2022[AU1,AU2,AU4]``)."""
    if name not in SCHEMAS:
        raise ValueError(f"unknown label schema {name!r}: use {' or '.join(SCHEMAS)}")
    base = SCHEMAS[name]
    names = base.aus if aus is None else tuple(au_name(au_number(a)) for a in aus)
    if names == base.aus:
        return base
    return LabelSchema(f"{name}[{','.join(names)}]", names, base.expressions, base.era)


def schema_of(aus, expressions) -> LabelSchema:
    """The schema that an artefact's AU and class lists (what artefacts record) describe:
    the classes give the era, the AUs the set. ValueError for lists of neither era."""
    base = next((s for s in SCHEMAS.values() if tuple(expressions) == s.expressions), None)
    if base is None:
        raise ValueError(f"classes {list(expressions)} are neither the 7 basic expressions nor those and Other")
    return label_schema(base.name, list(aus))
