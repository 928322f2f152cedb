"""The build's parameters: which sources feed each task, and the balancing (``build``)."""
from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field, field_validator

from pipeline.core.params import Count, NonNegative, PathName, SOURCE_KINDS, Section, Seed, unique
from pipeline.core.schema import EXPRESSIONS, SCHEMAS, LabelSchema, au_number, label_schema

MAX_AU = 46  # FACS's action units run to AU46 (blink, wink); higher codes are head and eye positions

Source = Literal[SOURCE_KINDS]
Positive = Annotated[float, Field(gt=0)]


class BuildParams(Section):
    """Merged, balanced task sets (paper III-A)."""

    section = "build"

    out: PathName = "data/build"
    seed: Seed = 0
    #: the labels learnt: abaw2020 (the paper's 8 AUs, 7 classes) or abaw2022 (12 AUs, 7 classes and Other)
    label_schema: Literal[tuple(SCHEMAS)] = "abaw2020"
    aus: Optional[list[str]] = None  #: another AU set of that schema (head order), e.g. [AU1, AU2, AU4]
    au_sources: Annotated[list[Source], Field(min_length=1)] = ["affwild2", "disfa"]
    expr_sources: Annotated[list[Source], Field(min_length=1)] = ["affwild2", "expw"]
    va_sources: Annotated[list[Source], Field(min_length=1)] = ["affwild2", "afewva"]
    au_balance: bool = True  #: ML-ROS on the merged AU set
    au_clone_budget: NonNegative = 50.0  #: ML-ROS clones, in % of the set's size
    au_mean_ir: Optional[Positive] = None  #: None: from the data; the authors preset 2.0
    expr_balance: bool = True  #: equal probability per class
    #: Aff-Wild2 EXPR: keep every k-th frame of these classes
    expr_downsample: dict[Literal[EXPRESSIONS], Count] = {"Neutral": 10, "Happiness": 2, "Sadness": 2}
    va_balance: bool = True
    va_bins: Literal["joint", "marginal"] = "joint"
    va_downsample: Count = 5  #: Aff-Wild2 VA: keep every k-th frame
    missing_class: Literal["error", "warn"] = "error"

    _check_unique = field_validator("au_sources", "expr_sources", "va_sources")(unique)

    @field_validator("aus")
    @classmethod
    def _known_aus(cls, aus):
        if aus is None:
            return aus
        numbers = [au_number(a) for a in aus]  # "AU07" is AU7; anything else a ValueError naming it
        if not numbers:
            raise ValueError("name at least one AU (or null for the schema's own)")
        wrong = [n for n in numbers if not 1 <= n <= MAX_AU]
        if wrong:
            raise ValueError(f"AU{wrong[0]} is no facial action unit (FACS numbers them 1 to {MAX_AU})")
        twice = next((n for i, n in enumerate(numbers) if n in numbers[:i]), None)
        if twice is not None:
            raise ValueError(f"AU{twice} is named twice")
        return aus

    def notes(self) -> list[str]:
        """Advice on a valid but doubtful schema: AUs that are not the named schema's own."""
        own = SCHEMAS[self.label_schema].aus
        foreign = [a for a in self.schema().aus if a not in own]
        if not foreign:
            return []
        era = next((s.name for s in SCHEMAS.values() if all(a in s.aus for a in foreign)), None)
        hint = f"; label_schema: {era} has them" if era else ""
        return [f"build.aus names {', '.join(foreign)}, which {self.label_schema} does not label: they are learnt "
                f"and scored with {self.label_schema}'s classes and metrics{hint}"]

    def schema(self) -> LabelSchema:
        """The schema the build projects the frame tables onto, and every artefact made from it records."""
        return label_schema(self.label_schema, self.aus)
