"""The temporal model's parameters: the features (``features``), the sequence lengths
(``temporal``), the GRU teacher (``rnn_teacher``; ``rnn_student`` and ``rnn_students``
inherit it) and ensemble (``rnn_ensemble``)."""
from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from pipeline.core.params import Batch, Epochs, Section, check_device, unique
from pipeline.inference.params import EnsembleParams
from pipeline.training.params import DistillParams, LoopParams


class TemporalParams(Section):
    """What every temporal stage shares (``temporal``)."""

    section = "temporal"

    #: one set of temporal models per length (frames per window); the paper compares 8, 16, 32
    sequence_lengths: Annotated[list[Annotated[int, Field(ge=1, le=4096)]], Field(min_length=1)] = [8, 16, 32]

    _check_unique = field_validator("sequence_lengths")(unique)


class FeaturesParams(Section):
    """The frozen CNN's per-frame features for the temporal model (``features``)."""

    section = "features"

    #: best_member (the ensemble member whose checkpoint has the best validation total),
    #: teacher, or the path of any checkpoint
    checkpoint: str = "best_member"
    batch: Batch = 128  #: frames per forward pass
    device: str = "auto"

    _check_device = field_validator("device")(check_device)


class RnnParams(LoopParams):
    """The temporal teacher (``rnn_teacher``): one bidirectional GRU per task on the cached
    features. ``batch_per_task`` counts windows."""

    section = "rnn_teacher"

    hidden: Annotated[int, Field(ge=1, le=4096)] = 64  #: GRU hidden size per direction


class RnnStudentParams(DistillParams, RnnParams):
    """A temporal student (``rnn_student@<name>``): ``rnn_teacher``'s knobs, updated with
    ``rnn_student`` and with its own entry under ``rnn_students``."""

    section = "rnn_student"
    inherits = RnnParams
    family = "rnn_students"

    epochs: Epochs = 3


class RnnEnsembleParams(EnsembleParams):
    """The temporal students' ensemble, one per sequence length (``rnn_ensemble``)."""

    section = "rnn_ensemble"

    members: Annotated[list[str], Field(min_length=1)] = ["r1", "r2", "r3"]  #: names under `rnn_students`
