"""The synthetic data set's parameters (``synth`` in params.yaml)."""
from __future__ import annotations

from typing import Literal

from pipeline.core.schema import SCHEMAS

from pipeline.core.params import Fraction, NonNegative, PathName, Section, Seed, Workers

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
    difficulty: NonNegative = 1.0  #: scales pose range, blur, grain, occluders, lighting changes (0 = clean)
    domain_shift: NonNegative = 1.0  #: strength of the per-source look (0 = all sources alike)
    label_noise: Fraction = 0.05  #: training labels only: share of AU/EXPR labels flipped; VA drift sd = 2 x this
    imbalance: NonNegative = 1.0  #: class skew: 1 = like the real sets, 0 = balanced, > 1 = more skewed
    spontaneous_au: NonNegative = 1.0  #: scales expression-free AU events (talking, brow flashes)
    identity_spread: NonNegative = 1.0  #: variety of face shapes (0 = everyone average)
    workers: Workers = 2  #: processes rendering videos in parallel (does not change the files)
    contact_sheet: PathName = "reports/synth_contact_sheet.png"
