"""Every knob of the pipeline: one model per ``params.yaml`` section, plus profiles.
(Longer than our usual 300 lines on purpose: the whole schema, with each range, is read in
one place.)

``params.yaml`` holds a base value for every key, a ``profile`` name, and per profile a
set of overrides (``profiles.<name>.<section>.<key>``). A stage's effective parameters
are its base section updated with the active profile's overrides for that section; a
student's are the ``student`` section so resolved, updated with its own entry under
``students``.

DVC cannot interpolate nested names (``${profiles.${profile}.x}``), so stages read their
section through :func:`load_params` instead of receiving it on the command line; each
stage in ``dvc.yaml`` tracks ``profile``, its own section and
``profiles.${profile}.<section>``, which DVC resolves to the active profile: editing an
inactive profile reruns nothing, switching profiles reruns what the switch touches.

The whole file is validated before any stage does any work (``pipeline.core.validation``): a
duplicate key, an unknown profile, a missing section, an unknown key, a value of the
wrong type or out of its range is one clear error that names the key.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipeline.core.errors import ParamsError
from pipeline.core.validation import load_yaml, read_text, reject_unknown, require, validate

PROFILES = ("demo", "tiny", "abaw2020")
SOURCE_KINDS = ("affwild2", "disfa", "expw", "afewva")
SYNTH_SIZES = ("tiny", "demo", "medium", "large", "huge")
TASK_NAMES = ("AU", "EXPR", "VA")  # as pipeline.core.labels.TASKS, without importing numpy here
MAX_THREADS = 1024

Count = Annotated[int, Field(ge=1)]
#: Upper bounds keep a value within what memory and time allow: a batch of a million faces
#: would ask for tens of gigabytes before failing with a traceback.
Batch = Annotated[int, Field(ge=1, le=4096)]  #: faces, frames or windows per pass
Workers = Annotated[int, Field(ge=1, le=256)]
Epochs = Annotated[int, Field(ge=1, le=10_000)]
Index = Annotated[int, Field(ge=0)]
NonNegative = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
Source = Literal["affwild2", "disfa", "expw", "afewva"]


class Section(BaseModel):
    """A params section: strict types (no "8" for 8), no unknown keys."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


def _device(value: str) -> str:
    kind, _, number = value.partition(":")
    if kind not in ("auto", "cpu", "cuda", "mps") or (number and not (kind == "cuda" and number.isdigit())):
        raise ValueError(f"unknown device {value!r}: use auto, cpu, cuda or cuda:N")
    return value


#: torchvision's classification models (``torchvision.models.list_models()`` of the locked
#: version, kept here so that checking params.yaml does not import torchvision:
#: tests/test_config.py compares the two).
BACKBONES = (
    "alexnet", "convnext_base", "convnext_large", "convnext_small", "convnext_tiny", "densenet121",
    "densenet161", "densenet169", "densenet201", "efficientnet_b0", "efficientnet_b1", "efficientnet_b2",
    "efficientnet_b3", "efficientnet_b4", "efficientnet_b5", "efficientnet_b6", "efficientnet_b7",
    "efficientnet_v2_l", "efficientnet_v2_m", "efficientnet_v2_s", "googlenet", "inception_v3", "maxvit_t",
    "mnasnet0_5", "mnasnet0_75", "mnasnet1_0", "mnasnet1_3", "mobilenet_v2", "mobilenet_v3_large",
    "mobilenet_v3_small", "regnet_x_16gf", "regnet_x_1_6gf", "regnet_x_32gf", "regnet_x_3_2gf",
    "regnet_x_400mf", "regnet_x_800mf", "regnet_x_8gf", "regnet_y_128gf", "regnet_y_16gf", "regnet_y_1_6gf",
    "regnet_y_32gf", "regnet_y_3_2gf", "regnet_y_400mf", "regnet_y_800mf", "regnet_y_8gf", "resnet101",
    "resnet152", "resnet18", "resnet34", "resnet50", "resnext101_32x8d", "resnext101_64x4d", "resnext50_32x4d",
    "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0", "squeezenet1_0",
    "squeezenet1_1", "swin_b", "swin_s", "swin_t", "swin_v2_b", "swin_v2_s", "swin_v2_t", "vgg11", "vgg11_bn",
    "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn", "vit_b_16", "vit_b_32", "vit_h_14",
    "vit_l_16", "vit_l_32", "wide_resnet101_2", "wide_resnet50_2",
)


def _unique(values: list) -> list:
    twice = sorted({v for v in values if values.count(v) > 1})
    if twice:
        raise ValueError(f"{', '.join(map(repr, twice))} listed twice")
    return values


def _all_tasks(weights: dict) -> dict:
    missing = [t for t in TASK_NAMES if t not in weights]
    if missing:
        raise ValueError(f"give a weight for every task: {', '.join(missing)} missing")
    if not any(weights.values()):
        raise ValueError("every task weight is 0: nothing would be learned")
    return weights


def _backbone(name: str) -> str:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}: use a torchvision classification model name such as "
                         "resnet50, resnet18, mobilenet_v3_small")
    return name


# --- sections -----------------------------------------------------------------------


class SynthParams(Section):
    """The synthetic data set (see docs/synthetic-data.md for what each knob does)."""

    # Not "size": DVC leaves keys named size out of its run-cache hash (treeverse/dvc#10296), so a
    # change of it would restore the other size's outputs. Same for ExtractParams.face_size.
    dataset_size: Literal[SYNTH_SIZES] = "demo"  #: named size (frames per source)
    seed: Index = 0
    out: str = "data/synth"
    difficulty: NonNegative = 1.0  #: scales pose range, blur, grain, occluders, lighting changes (0 = clean)
    domain_shift: NonNegative = 1.0  #: strength of the per-source look (0 = all sources alike)
    label_noise: Fraction = 0.05  #: training labels only: share of AU/EXPR labels flipped; VA drift sd = 2 x this
    imbalance: NonNegative = 1.0  #: class skew: 1 = like the real sets, 0 = balanced, > 1 = more skewed
    spontaneous_au: NonNegative = 1.0  #: scales expression-free AU events (talking, brow flashes)
    identity_spread: NonNegative = 1.0  #: variety of face shapes (0 = everyone average)
    workers: Workers = 2  #: processes rendering videos in parallel (does not change the files)
    contact_sheet: str = "reports/synth_contact_sheet.png"


class SourceParams(Section):
    """Where one dataset is (``sources.<name>``), and what DVC watches for its changes."""

    root: str  #: the dataset's folder, in the layout it ships in (docs/formats.md)
    #: the root itself, or a small file that changes whenever the data do (the version
    #: file ``synth`` writes, or the dataset's ``.dvc`` file): DVC then hashes that file
    #: instead of walking every file of the dataset again (pipeline/extraction/dataset_version.py)
    version: str


class ExtractParams(Section):
    """Face extraction per source (``extract@<source>``)."""

    out: str = "data/faces"  #: shards and tables go to <out>/<source>/
    workers: Workers = 2  #: worker processes (work is split by video)
    batch: Batch = 16  #: frames per MTCNN batch
    detect_size: Annotated[int, Field(ge=48, le=4096)] = 320  #: long side of the frame the detector sees
    min_face: Annotated[int, Field(ge=12, le=4096)] = 40  #: MTCNN min_face_size, in detector pixels
    min_prob: Fraction = 0.9  #: faces below this MTCNN probability are not kept
    track: bool = True  #: search near the previous face before a full-frame search
    template_scale: Annotated[float, Field(gt=0, le=4)] = 1.0  #: < 1 shows more context around the face
    face_size: Annotated[int, Field(ge=16, le=1024)] = 112  #: side of the aligned face, pixels
    shard_faces: Annotated[int, Field(ge=1, le=65_536)] = 4096  #: faces per HDF5 shard (4096 faces of 112 x 112 x 3 bytes: 154 MB)
    on_error: Literal["skip", "fail"] = "skip"  #: bad rows/files: count and skip, or stop
    use_cropped_aligned: bool = True  #: Aff-Wild2: use the organisers' crops when present


class BuildParams(Section):
    """Merged, balanced task sets (paper III-A)."""

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


class LoopParams(Section):
    """The training loop's knobs, shared by the CNN and the temporal (GRU) models."""

    epochs: Epochs = 8
    steps_per_epoch: Optional[Annotated[int, Field(ge=1, le=10_000_000)]] = None  #: None: the smallest task's balanced size / batch
    batch_per_task: Batch = 20
    optimizer: Literal["adam", "adamw"] = "adam"
    lr: Annotated[float, Field(gt=0, le=1)] = 1e-4
    betas: Annotated[list[Annotated[float, Field(ge=0, lt=1)]], Field(min_length=2, max_length=2)] = [0.5, 0.999]
    weight_decay: Annotated[float, Field(ge=0, le=1)] = 0.0
    lr_schedule: Literal["step", "cosine", "constant"] = "step"
    lr_step_epochs: Index = 3  #: step schedule: divide lr by 10 every this many epochs (0 = never)
    warmup_epochs: NonNegative = 0.0  #: linear warm-up from 0 over this many epochs
    task_weights: dict[Literal[TASK_NAMES], NonNegative] = {"AU": 1.0, "EXPR": 1.0, "VA": 1.0}
    va_centres: Literal["centres", "reference"] = "centres"
    ccc_weighting: Literal["authors", "paper"] = "authors"  #: 1 - CCC beside the batch-mean CE (losses.py)
    workers: Annotated[int, Field(ge=0, le=256)] = 0  #: DataLoader workers
    seed: Index = 0
    device: str = "auto"  #: auto | cpu | cuda | cuda:N
    eval_batch: Batch = 128
    selection_videos: Optional[Count] = None  #: score each epoch on the first n validation videos (None: all)
    save_every: Count = 50  #: steps between resume files (an interrupted run loses at most this)

    _check_device = field_validator("device")(_device)
    _check_weights = field_validator("task_weights")(_all_tasks)


class DistillParams(Section):
    """What a student adds to the loop (Eq. 14)."""

    lam: Fraction = 0.6  #: weight of the ground truth on the labelled task (1 - lam on the teacher)
    temperature: Positive = 1.5  #: softmax temperature of the EXPR and VA distillation
    distill_unlabelled: bool = True  #: learn the unlabelled tasks from the teacher (False: a control)


class TrainParams(LoopParams):
    """One training loop for the CNN teacher and students."""

    backbone: str = "resnet50"  #: any torchvision classification model by name
    pretrained: Optional[str] = None  #: path to a local state dict; never downloaded
    separate_task_passes: bool = True  #: three forward passes (BN sees each task alone)
    bn_momentum: Optional[Fraction] = None  #: every BatchNorm's momentum (None: the backbone's own)
    channels_last: bool = True  #: channels-last tensors: the fast convolutions on CPUs and recent GPUs
    augment: bool = True

    _check_backbone = field_validator("backbone")(_backbone)


class StudentParams(DistillParams, TrainParams):
    """A CNN student (Eq. 14): the training loop's knobs plus the distillation's."""

    epochs: Epochs = 3  #: the paper trains each student for 3 epochs


class TemporalParams(Section):
    """What every temporal stage shares (``rnn_*``)."""

    #: one set of temporal models per length (frames per window); the paper compares 8, 16, 32
    sequence_lengths: Annotated[list[Annotated[int, Field(ge=1, le=4096)]], Field(min_length=1)] = [8, 16, 32]

    _check_unique = field_validator("sequence_lengths")(_unique)


class RnnParams(LoopParams):
    """The temporal teacher (``rnn_teacher``): one bidirectional GRU per task on the cached
    features. ``batch_per_task`` counts windows."""

    hidden: Annotated[int, Field(ge=1, le=4096)] = 64  #: GRU hidden size per direction


class RnnStudentParams(DistillParams, RnnParams):
    """A temporal student (``rnn_student@<name>``)."""

    epochs: Epochs = 3


class SoftLabelsParams(Section):
    """The teacher's logits on fixed views of every training frame (``soft_labels``)."""

    mode: Literal["views", "centre"] = "views"  #: K drawn views per frame, or the centre view for every augmentation
    views: Annotated[int, Field(ge=1, le=64)] = 8  #: views per frame in views mode (half of them mirrored)
    batch: Batch = 64  #: frames per forward pass (times the views)
    device: str = "auto"

    _check_device = field_validator("device")(_device)


class EnsembleParams(Section):
    """The student ensemble (``ensemble``)."""

    members: Annotated[list[str], Field(min_length=1)] = ["s1", "s2", "s3"]  #: names under `students`
    au_thresholds: Literal["fixed", "tuned"] = "fixed"  #: 0.5, or tuned per AU on validation
    device: str = "auto"
    batch: Batch = 128

    _check_device = field_validator("device")(_device)
    _check_unique = field_validator("members")(_unique)


class FeaturesParams(Section):
    """The frozen CNN's per-frame features for the temporal model (``features``)."""

    #: best_member (the ensemble member whose checkpoint has the best validation total),
    #: teacher, or the path of any checkpoint
    checkpoint: str = "best_member"
    batch: Batch = 128  #: frames per forward pass
    device: str = "auto"

    _check_device = field_validator("device")(_device)


class RnnEnsembleParams(EnsembleParams):
    """The temporal students' ensemble, one per sequence length (``rnn_ensemble``)."""

    members: Annotated[list[str], Field(min_length=1)] = ["r1", "r2", "r3"]  #: names under `rnn_students`


class EvaluateParams(Section):
    """Scoring on the validation set."""

    bootstrap: Annotated[int, Field(ge=1, le=100_000)] = 200  #: bootstrap resamples over videos for confidence intervals
    seed: Index = 0
    au_thresholds: Literal["fixed", "tuned"] = "fixed"  #: single models: 0.5, or tuned per AU on val
    device: str = "auto"
    batch: Batch = 128

    _check_device = field_validator("device")(_device)


SECTIONS: dict[str, type[Section]] = {
    "synth": SynthParams,
    "extract": ExtractParams,
    "build": BuildParams,
    "teacher": TrainParams,
    "soft_labels": SoftLabelsParams,
    "student": StudentParams,
    "ensemble": EnsembleParams,
    "evaluate": EvaluateParams,
    "features": FeaturesParams,
    "temporal": TemporalParams,
    "rnn_teacher": RnnParams,
    "rnn_student": RnnStudentParams,
    "rnn_ensemble": RnnEnsembleParams,
}
#: Sections of named models, each entry overriding a base section: name -> (base, class).
FAMILIES = {"students": ("student", StudentParams), "rnn_students": ("rnn_student", RnnStudentParams)}
TOP_LEVEL = ("profile", "threads", "profiles", "sources", *FAMILIES, *SECTIONS)


@dataclass
class Params:
    profile: str
    threads: int
    sources: dict[str, SourceParams]
    synth: SynthParams
    extract: ExtractParams
    build: BuildParams
    teacher: TrainParams
    soft_labels: SoftLabelsParams
    student: StudentParams
    students: dict[str, StudentParams]
    ensemble: EnsembleParams
    evaluate: EvaluateParams
    features: FeaturesParams
    temporal: TemporalParams
    rnn_teacher: RnnParams
    rnn_student: RnnStudentParams
    rnn_students: dict[str, RnnStudentParams]
    rnn_ensemble: RnnEnsembleParams


# --- loading and validation ---------------------------------------------------------


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read, merge the active profile into, and validate ``params.yaml``."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path}: not found (run from the project root, or pass --params)")
    if not path.is_file():
        raise ParamsError(f"{path}: not a file")
    return resolve(load_yaml(read_text(path), str(path)) or {}, str(path))


def _mapping(value, where: str, label: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ParamsError(f"{where}: {label}: expected a mapping, got {value!r}")
    return value


def _section(cls, values: dict, where: str, section: str, label: str):
    """``cls`` from ``values``, which must name every key; errors name ``label``."""
    names = list(cls.model_fields)
    reject_unknown(values, names, where, prefix=f"{label}.")
    require(values, names, where, prefix=f"{section}.")
    return validate(cls, values, where, label)


def _source(entry, where: str, label: str) -> SourceParams:
    if isinstance(entry, str):  # the format before versions
        raise ParamsError(f"{where}: {label}: expected {{root: <folder>, version: <file or folder>}}, got a path; "
                          f"write {{root: {entry}, version: {entry}}} (README, \"Working with real data\")")
    entry = _mapping(entry, where, label)
    reject_unknown(entry, SourceParams.model_fields, where, prefix=f"{label}.")
    require(entry, SourceParams.model_fields, where, prefix=f"{label}.")
    return validate(SourceParams, entry, where, label)


def resolve(raw: dict, where: str = "params.yaml") -> Params:
    """Validate a parsed params mapping and merge the active profile's overrides."""
    raw = _mapping(raw, where, "the top level")
    reject_unknown(raw, TOP_LEVEL, where, prefix="")
    require(raw, TOP_LEVEL, where, prefix="", what="section")
    profile, profiles = raw["profile"], _mapping(raw["profiles"], where, "profiles")
    reject_unknown(profiles, PROFILES, where, prefix="profiles.")
    if profile not in PROFILES:
        raise ParamsError(f"{where}: profile: unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    require(profiles, PROFILES, where, prefix="profiles.", what="section")
    threads = raw["threads"]
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS:
        raise ParamsError(f"{where}: threads: expected a whole number of threads from 1 to {MAX_THREADS}, "
                          f"got {threads!r}")
    sources = _mapping(raw["sources"], where, "sources")
    reject_unknown(sources, SOURCE_KINDS, where, prefix="sources.")
    sources = {name: _source(entry, where, f"sources.{name}") for name, entry in sources.items()}

    sections = {}
    for name, cls in SECTIONS.items():
        base = _mapping(raw[name], where, name)
        _section(cls, base, where, name, name)
        # Every profile's overrides are checked, not only the active one's, so a typo in
        # an inactive profile is found today and not on the day it is switched on.
        for pname in PROFILES:
            over = _mapping(profiles[pname], where, f"profiles.{pname}")
            reject_unknown(over, SECTIONS, where, prefix=f"profiles.{pname}.")
            # dvc.yaml tracks profiles.<active>.<section>: every profile lists every
            # section, `{}` when it changes nothing.
            if name not in over:
                raise ParamsError(f"{where}: missing section 'profiles.{pname}.{name}' (write {{}} for none)")
            o = _mapping(over[name], where, f"profiles.{pname}.{name}")
            section = _section(cls, {**base, **o}, where, name, f"profiles.{pname}.{name}")
            if pname == profile:
                sections[name] = section
    families = {}
    for family, (base, cls) in FAMILIES.items():
        families[family] = {}
        for sname, override in _mapping(raw[family], where, family).items():
            if not re.fullmatch(r"[A-Za-z0-9_-]+", str(sname)):
                raise ParamsError(f"{where}: {family}.{sname}: a name of letters, digits, '_' and '-' only (it names "
                                  "a DVC stage and a file)")
            override = _mapping(override, where, f"{family}.{sname}")
            reject_unknown(override, cls.model_fields, where, prefix=f"{family}.{sname}.")
            families[family][str(sname)] = validate(cls, {**sections[base].model_dump(), **override}, where,
                                                    f"{family}.{sname}")
    for ensemble, family in (("ensemble", "students"), ("rnn_ensemble", "rnn_students")):
        for member in sections[ensemble].members:
            if member not in families[family]:
                raise ParamsError(f"{where}: {ensemble}.members: {member!r} is not a {family[:-1].replace('_', ' ')} "
                                  f"({family}: {', '.join(families[family]) or 'none'}); add it under `{family}`")
    params = Params(profile=profile, threads=threads, sources=sources, **families, **sections)
    _check_devices(params, where)
    return params


def _check_devices(p: Params, where: str) -> None:
    """A CUDA device asked for by the active profile must exist (inactive ones may name a
    GPU machine's)."""
    named = {name: getattr(p, name) for name in SECTIONS if hasattr(getattr(p, name), "device")}
    named.update({f"{family}.{n}": s for family in FAMILIES for n, s in getattr(p, family).items()})
    wanted = {k: s.device for k, s in named.items() if s.device.startswith("cuda")}
    if wanted:
        import torch

        if not torch.cuda.is_available():
            key, device = next(iter(wanted.items()))
            raise ParamsError(f"{where}: {key}.device: {device!r} asked for, but this machine has no CUDA "
                              "device (use auto or cpu)")


def advice(p: Params) -> list[str]:
    """Settings that are valid but will not give what a user probably expects."""
    notes = []
    if p.profile == "abaw2020" and not p.teacher.pretrained:
        notes.append("profile abaw2020 trains ResNet-50 from random weights: teacher.pretrained is not set, "
                     "so the paper's numbers are out of reach (it fine-tunes a face-pretrained ResNet-50). "
                     "Set teacher.pretrained to a local backbone state dict.")
    return notes


def with_overrides(section: Section, **overrides) -> Section:
    """A copy of ``section`` with the command line's explicit options (None = not given)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if not given:
        return section
    return validate(type(section), {**section.model_dump(), **given}, "command line", "option --", sep="")
