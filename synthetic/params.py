"""The synthetic data set's parameters (``synth`` in params.yaml)."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from pipeline.core.schema import SCHEMAS

from pipeline.core.params import PathName, Section, Seed, Workers

#: A knob that scales something at 1 (the real sets' level): up to 3 times that. Beyond, the
#: faces stop being faces: at difficulty 3 heads already turn 60 degrees (yaw) in Aff-Wild2.
Scale = Annotated[float, Field(ge=0, le=3)]

SYNTH_SIZES = ("tiny", "demo", "medium", "large", "huge")


class SynthParams(Section):
    """The synthetic data set (see docs/synthetic-data.md for what each knob does)."""

    section = "synth"

    # Not "size": DVC leaves keys named size out of its run-cache hash (treeverse/dvc#10296), so a
    # change of it would restore the other size's outputs. Same for ExtractParams.face_size.
    dataset_size: Literal[SYNTH_SIZES] = "demo"  #: named size (frames per source)
    label_schema: Literal[tuple(SCHEMAS)] = "abaw2020"  #: the files' label set (synthetic/eras.py)
    seed: Seed = 0
    out: PathName = "data/synth"
    difficulty: Scale = 1.0  #: scales pose range, blur, grain, occluders, lighting changes (0 = clean, max 3)
    domain_shift: Scale = 1.0  #: strength of the per-source look (0 = all sources alike, > 1 exaggerated, max 3)
    #: training labels only: share of AU/EXPR labels flipped (max 0.5: beyond, most labels are wrong); VA drift
    #: sd = 2 x this
    label_noise: Annotated[float, Field(ge=0, le=0.5)] = 0.05
    imbalance: Scale = 1.0  #: class skew: 1 = like the real sets, 0 = balanced, > 1 = more skewed (max 3)
    spontaneous_au: Scale = 1.0  #: scales expression-free AU events (talking, brow flashes; max 3)
    #: variety of face shapes (0 = everyone average; max 2: at 3, one face in 30 has its lips turned inside out)
    identity_spread: Annotated[float, Field(ge=0, le=2)] = 1.0
    workers: Workers = 2  #: processes rendering videos in parallel (does not change the files)
    contact_sheet: PathName = "reports/synth_contact_sheet.png"
