"""The build's parameters: which sources feed each task, and the balancing (``build``)."""
from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field

from pipeline.core.params import SOURCE_KINDS, Count, Index, NonNegative, Section

Source = Literal[SOURCE_KINDS]
Positive = Annotated[float, Field(gt=0)]


class BuildParams(Section):
    """Merged, balanced task sets (paper III-A)."""

    section = "build"

    out: str = "data/build"
    seed: Index = 0
    au_sources: Annotated[list[Source], Field(min_length=1)] = ["affwild2", "disfa"]
    expr_sources: Annotated[list[Source], Field(min_length=1)] = ["affwild2", "expw"]
    va_sources: Annotated[list[Source], Field(min_length=1)] = ["affwild2", "afewva"]
    au_balance: bool = True  #: ML-ROS on the merged AU set
    au_clone_budget: NonNegative = 50.0  #: ML-ROS clones, in % of the set's size
    au_mean_ir: Optional[Positive] = None  #: None: from the data; the authors preset 2.0
    expr_balance: bool = True  #: equal probability per class
    #: Aff-Wild2 EXPR: keep every k-th frame of these classes
    expr_downsample: dict[Literal["Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise"], Count] = {
        "Neutral": 10, "Happiness": 2, "Sadness": 2}
    va_balance: bool = True
    va_bins: Literal["joint", "marginal"] = "joint"
    va_downsample: Count = 5  #: Aff-Wild2 VA: keep every k-th frame
    missing_class: Literal["error", "warn"] = "error"
