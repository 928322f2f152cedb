"""The student ensemble's parameters (``ensemble``)."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from pipeline.core.params import Batch, Section, check_device, unique


class EnsembleParams(Section):
    """The student ensemble (``ensemble``)."""

    section = "ensemble"

    members: Annotated[list[str], Field(min_length=1)] = ["s1", "s2", "s3"]  #: names under `students`
    au_thresholds: Literal["fixed", "tuned"] = "fixed"  #: 0.5, or tuned per AU on validation
    device: str = "auto"
    batch: Batch = 128

    _check_device = field_validator("device")(check_device)
    _check_unique = field_validator("members")(unique)
