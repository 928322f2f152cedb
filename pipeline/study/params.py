"""The controlled study's parameters (``study``): which arms, over how many seeds."""
from __future__ import annotations

from typing import Annotated, Literal

from pathlib import PurePath

from pydantic import Field, field_validator

from pipeline.core.params import PathName, Section, unique

#: Every arm, and what it is (docs/study.md, "Arms"). A student arm is one student per
#: seed, the first of ``ensemble.members`` with that seed's teacher.
ARMS = {
    "teacher": "the teacher as the main pipeline trains it",
    "teacher_long": "a teacher trained for as many steps as teacher and one student together",
    "student": "students with the full loss of Eq. 14 (missing labels filled by the teacher)",
    "student_no_fill": "students distilled on their labelled task only (distill_unlabelled: false)",
    "student_no_distill": "students with lambda = 1: the same data and steps, no teacher",
    "student_ensemble": "the ensemble of the students of ensemble.members",
    "teacher_ensemble": "an ensemble of as many teachers, trained with other seeds",
    "teacher_imbalanced": "the teacher trained on the task sets without balancing (build --no-balance)",
    "student_imbalanced": "students of that teacher, on those sets",
    "single_task": "a network per task (a teacher with the other tasks' weights 0, its steps), each scored on its task",
    "pixel_probe": "the pixel linear probe fitted on the balanced task sets",
    "pixel_probe_imbalanced": "the pixel linear probe fitted on the task sets without balancing",
}


class StudyParams(Section):
    """The study (``study``): each arm trained with ``seeds`` training seeds on fixed data,
    every choice made on the first ``teacher.selection_videos`` validation videos and every
    score taken on the others."""

    section = "study"

    seeds: Annotated[int, Field(ge=1, le=100)] = 3  #: K: training seeds per arm (the data stay fixed)
    arms: Annotated[list[Literal[tuple(ARMS)]], Field(min_length=1)] = list(ARMS)  # type: ignore[valid-type]
    bootstrap: Annotated[int, Field(ge=1, le=100_000)] = 200  #: resamples of the test videos for each interval
    out: PathName = "study"  #: where its models, caches, runs and scores go (reports/study/ holds the report)

    _check_unique = field_validator("arms")(unique)

    @field_validator("out")
    @classmethod
    def _a_folder_of_its_own(cls, out: str) -> str:
        # its dvc.yaml goes there: "." would be the project's own, ".." outside the project
        parts = PurePath(out).parts
        if PurePath(out).is_absolute() or ".." in parts or not [p for p in parts if p != "."]:
            raise ValueError(f"must be a folder inside the project (not the project itself), got {out!r}")
        if any(p.startswith(".") and p != "." for p in parts):  # .git, .dvc: DVC ignores what is there
            raise ValueError(f"must not be in a hidden folder (DVC reads no dvc.yaml there), got {out!r}")
        if any(c.isspace() for c in out):
            raise ValueError(f"must have no spaces (it goes into the stages' commands), got {out!r}")
        return out
