"""Every knob of the pipeline: one dataclass per ``params.yaml`` section, plus profiles.

``params.yaml`` holds a base value for every key, a ``profile`` name, and per profile a
set of overrides (``profiles.<name>.<section>.<key>``). A stage's effective parameters
are its base section updated with the active profile's overrides for that section.

DVC cannot interpolate nested names (``${profiles.${profile}.x}``), so stages read their
section through :func:`load_params` instead of receiving it on the command line; each
stage in ``dvc.yaml`` tracks ``profile``, its own section and
``profiles.${profile}.<section>``, which DVC resolves to the active profile: editing an
inactive profile reruns nothing, switching profiles reruns what the switch touches.

The whole file is validated before any stage does any work: an unknown profile, a
missing section, an unknown key or a value of the wrong type is one clear error that
names the key.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import yaml

from pipeline.errors import ParamsError

PROFILES = ("demo", "tiny", "abaw2020")
SOURCE_KINDS = ("affwild2", "disfa", "expw", "afewva")


# --- sections -----------------------------------------------------------------------


@dataclass
class SynthParams:
    """The synthetic data set (see docs/synthetic-data.md for what each knob does)."""

    size: Literal["tiny", "demo", "medium", "large", "huge"] = "demo"  #: named size (frames per source)
    seed: int = 0
    out: str = "data/synth"
    difficulty: float = 1.0  #: scales pose range, blur, grain, occluders, lighting changes (0 = clean)
    domain_shift: float = 1.0  #: strength of the per-source look (0 = all sources alike)
    label_noise: float = 0.05  #: training labels only: share of AU/EXPR labels flipped; VA drift sd = 2 x this
    imbalance: float = 1.0  #: class skew: 1 = like the real sets, 0 = balanced, > 1 = more skewed
    spontaneous_au: float = 1.0  #: scales expression-free AU events (talking, brow flashes)
    identity_spread: float = 1.0  #: variety of face shapes (0 = everyone average)
    workers: int = 2  #: processes rendering videos in parallel (does not change the files)
    contact_sheet: str = "reports/synth_contact_sheet.png"


@dataclass
class ExtractParams:
    """Face extraction per source (``extract@<source>``)."""

    out: str = "data/faces"  #: shards and tables go to <out>/<source>/
    workers: int = 2  #: worker processes (work is split by video)
    batch: int = 16  #: frames per MTCNN batch
    detect_size: int = 320  #: long side of the frame the detector sees
    min_face: int = 40  #: MTCNN min_face_size, in detector pixels
    min_prob: float = 0.9  #: faces below this MTCNN probability are not kept
    track: bool = True  #: search near the previous face before a full-frame search
    template_scale: float = 1.0  #: < 1 shows more context around the face
    size: int = 112
    shard_faces: int = 4096  #: faces per HDF5 shard (4096 faces of 112 x 112 x 3 bytes: 154 MB)
    on_error: Literal["skip", "fail"] = "skip"  #: bad rows/files: count and skip, or stop
    use_cropped_aligned: bool = True  #: Aff-Wild2: use the organisers' crops when present


@dataclass
class BuildParams:
    """Merged, balanced task sets (paper III-A)."""

    out: str = "data/build"
    seed: int = 0
    au_sources: list[str] = field(default_factory=lambda: ["affwild2", "disfa"])
    expr_sources: list[str] = field(default_factory=lambda: ["affwild2", "expw"])
    va_sources: list[str] = field(default_factory=lambda: ["affwild2", "afewva"])
    au_balance: bool = True  #: ML-ROS on the merged AU set
    au_clone_budget: float = 50.0  #: ML-ROS clones, in % of the set's size
    au_mean_ir: Optional[float] = None  #: None: from the data; the authors preset 2.0
    expr_balance: bool = True  #: equal probability per class
    expr_downsample: dict[str, int] = field(
        default_factory=lambda: {"Neutral": 10, "Happiness": 2, "Sadness": 2}
    )  #: Aff-Wild2 EXPR: keep every k-th frame of these classes
    va_balance: bool = True
    va_bins: Literal["joint", "marginal"] = "joint"
    va_downsample: int = 5  #: Aff-Wild2 VA: keep every k-th frame
    missing_class: Literal["error", "warn"] = "error"


@dataclass
class TrainParams:
    """One training loop for teacher and students."""

    backbone: str = "resnet50"  #: any torchvision classification model by name
    pretrained: Optional[str] = None  #: path to a local state dict; never downloaded
    epochs: int = 8
    steps_per_epoch: Optional[int] = None  #: None: the smallest task's balanced size / batch
    batch_per_task: int = 20
    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    weight_decay: float = 0.0
    lr_schedule: Literal["step", "cosine", "constant"] = "step"
    lr_step_epochs: int = 3  #: step schedule: divide lr by 10 every this many epochs (0 = never)
    warmup_epochs: float = 0.0  #: linear warm-up from 0 over this many epochs
    task_weights: dict[str, float] = field(default_factory=lambda: {"AU": 1.0, "EXPR": 1.0, "VA": 1.0})
    va_centres: Literal["centres", "reference"] = "centres"
    ccc_weighting: Literal["authors", "paper"] = "authors"  #: 1 - CCC beside the batch-mean CE (losses.py)
    separate_task_passes: bool = True  #: three forward passes (BN sees each task alone)
    augment: bool = True
    workers: int = 0  #: DataLoader workers
    seed: int = 0
    device: str = "auto"  #: auto | cpu | cuda | cuda:N
    eval_batch: int = 128
    save_every: int = 50  #: steps between resume files (an interrupted run loses at most this)


@dataclass
class EvaluateParams:
    """Scoring on the validation set."""

    bootstrap: int = 200  #: bootstrap resamples over videos for confidence intervals
    seed: int = 0
    au_thresholds: Literal["fixed", "tuned"] = "fixed"  #: 0.5, or tuned per AU on val
    models: dict[str, str] = field(default_factory=lambda: {"teacher": "models/teacher.pt"})  #: name -> checkpoint
    device: str = "auto"
    batch: int = 128


SECTIONS: dict[str, type] = {
    "synth": SynthParams,
    "extract": ExtractParams,
    "build": BuildParams,
    "teacher": TrainParams,
    "evaluate": EvaluateParams,
}


@dataclass
class Params:
    profile: str
    sources: dict[str, str]
    synth: SynthParams
    extract: ExtractParams
    build: BuildParams
    teacher: TrainParams
    evaluate: EvaluateParams


# --- loading and validation ---------------------------------------------------------


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read, merge the active profile into, and validate ``params.yaml``."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path}: not found (run from the project root, or pass --params)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from e
    return resolve(raw, str(path))


def resolve(raw: dict, where: str = "params.yaml") -> Params:
    """Validate a parsed params mapping and merge the active profile's overrides."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{where}: expected a mapping at the top level")
    known_top = {"profile", "profiles", "sources", *SECTIONS}
    _reject_unknown(raw, known_top, where, prefix="")
    for key in ("profile", "profiles", "sources", *SECTIONS):
        if key not in raw:
            raise ParamsError(f"{where}: missing section '{key}'")

    profile = raw["profile"]
    profiles = raw["profiles"]
    if not isinstance(profiles, dict):
        raise ParamsError(f"{where}: profiles: expected a mapping of profile name to overrides")
    _reject_unknown(profiles, set(PROFILES), where, prefix="profiles.")
    if profile not in PROFILES:
        raise ParamsError(f"{where}: profile: unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    for name in PROFILES:
        if name not in profiles:
            raise ParamsError(f"{where}: missing section 'profiles.{name}'")

    sources = _check(raw["sources"], dict[str, str], f"{where}: sources")
    _reject_unknown(sources, set(SOURCE_KINDS), where, prefix="sources.")

    sections = {}
    for name, cls in SECTIONS.items():
        base = raw[name]
        if not isinstance(base, dict):
            raise ParamsError(f"{where}: {name}: expected a mapping")
        _build(cls, base, where, name, name)
        # Every profile's overrides are checked, not only the active one's, so a typo in
        # an inactive profile is found today and not on the day it is switched on.
        for pname in PROFILES:
            over = profiles[pname] or {}
            if not isinstance(over, dict):
                raise ParamsError(f"{where}: profiles.{pname}: expected a mapping of sections")
            _reject_unknown(over, set(SECTIONS), where, prefix=f"profiles.{pname}.")
            if name not in over:
                # dvc.yaml tracks profiles.<active>.<section>: every profile lists every
                # section, `{}` when it changes nothing.
                raise ParamsError(f"{where}: missing section 'profiles.{pname}.{name}' (write {{}} for none)")
            o = over.get(name) or {}
            if not isinstance(o, dict):
                raise ParamsError(f"{where}: profiles.{pname}.{name}: expected a mapping")
            _build(cls, {**base, **o}, where, name, f"profiles.{pname}.{name}")
        active = (profiles[profile] or {}).get(name) or {}
        sections[name] = _build(cls, {**base, **active}, where, name, name)
    return Params(profile=profile, sources=sources, **sections)


def _build(cls, values: dict, where: str, section: str, label: str):
    """``cls`` from ``values``; errors name ``label`` (the section or the override)."""
    names = [f.name for f in dataclasses.fields(cls)]
    _reject_unknown(values, set(names), where, prefix=f"{label}.")
    hints = typing.get_type_hints(cls)
    for key in names:
        if key not in values:
            raise ParamsError(f"{where}: missing key '{section}.{key}'")
    return cls(**{k: _check(values[k], hints[k], f"{where}: {label}.{k}") for k in names})


def _reject_unknown(d: dict, known: set[str], where: str, prefix: str) -> None:
    for key in d:
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; known: {', '.join(sorted(known))}"
            raise ParamsError(f"{where}: unknown key '{prefix}{key}'{hint}")


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check(value, tp, label: str):
    """Return ``value`` if it has type ``tp`` (ints accepted for floats), else raise."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check(value, inner[0], label)
    if origin is Literal:
        if value not in args:
            raise ParamsError(f"{label}: expected one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ParamsError(f"{label}: expected a list, got {value!r}")
        return [_check(v, args[0], f"{label}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(f"{label}: expected a mapping, got {value!r}")
        return {_check(k, args[0], f"{label} key"): _check(v, args[1], f"{label}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"{label}: expected a number, got {value!r} ({type(value).__name__})")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{label}: expected an integer, got {value!r} ({type(value).__name__})")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{label}: expected true or false, got {value!r} ({type(value).__name__})")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ParamsError(f"{label}: expected a string, got {value!r} ({type(value).__name__})")
        return value
    raise TypeError(f"{label}: unsupported type {_type_name(tp)} in the params schema")


def advice(p: Params) -> list[str]:
    """Settings that are valid but will not give what a user probably expects."""
    notes = []
    if p.profile == "abaw2020" and not p.teacher.pretrained:
        notes.append("profile abaw2020 trains ResNet-50 from random weights: teacher.pretrained is not set, "
                     "so the paper's numbers are out of reach (it fine-tunes a face-pretrained ResNet-50). "
                     "Set teacher.pretrained to a local backbone state dict.")
    return notes


def section_dict(section) -> dict:
    """A section as a plain dict (for logs and checkpoints)."""
    return dataclasses.asdict(section)


def with_overrides(section, **overrides):
    """A copy of ``section`` with the command line's explicit options (None = not given)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if not given:
        return section
    hints = typing.get_type_hints(type(section))
    name = type(section).__name__
    checked = {k: _check(v, hints[k], f"option --{k} ({name})") for k, v in given.items()}
    return dataclasses.replace(section, **checked)
