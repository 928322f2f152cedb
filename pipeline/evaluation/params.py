"""The evaluation's parameters (``evaluate``)."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from pipeline.core.params import Batch, Section, Seed, check_device


class EvaluateParams(Section):
    """Scoring on the validation set (``evaluate``)."""

    section = "evaluate"

    bootstrap: Annotated[int, Field(ge=1, le=100_000)] = 200  #: bootstrap resamples over videos for confidence intervals
    seed: Seed = 0
    au_thresholds: Literal["fixed", "tuned"] = "fixed"  #: single models: 0.5, or tuned per AU on val
    device: str = "auto"
    batch: Batch = 128

    _check_device = field_validator("device")(check_device)
