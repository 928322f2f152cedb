"""``params.yaml``: the values that run, read and checked for the sections a stage reads.

``params.yaml`` holds one section per stage with the values that run, nothing else (a preset
such as the demo's is written into it by ``mtaffect preset NAME``: there is no profile layer
whose values would shadow an edit). Two sections inherit: a student's values are the
``teacher`` section's, updated with the ``student`` section's (the distillation's knobs and
what differs) and with its own entry under ``students``; temporal students likewise from
``rnn_teacher`` and ``rnn_student``.

Each section's schema lives with the code that uses it (``<package>/params.py``), a
subclass of :class:`Section` naming its section. A stage asks :func:`load` for the sections
it reads, so it depends on those schemas only; the whole file is checked by ``mtaffect
check-params``, which ``dvc repro`` runs before every other stage (``check_params`` in
``dvc.yaml``). Either way a problem is one line naming the key, before any work.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Annotated, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from pipeline.core.errors import ParamsError
from pipeline.core.validation import load_yaml, read_text, reject_unknown, require, validate

#: Every kind of source, and the tasks its labels feed (docs/formats.md).
SOURCE_TASKS = {"affwild2": ("au", "expr", "va"), "saffwild2": ("au", "expr", "va"), "disfa": ("au",),
                "expw": ("expr",), "afewva": ("va",), "affectnet": ("expr", "va")}
SOURCE_KINDS = tuple(SOURCE_TASKS)
MAX_THREADS = 1024
#: Every top-level key of params.yaml (the schemas are checked against it: tests/test_params.py).
TOP_LEVEL = ("threads", "sources", "synth", "extract", "build", "teacher", "soft_labels", "student", "students",
             "ensemble", "evaluate", "features", "temporal", "rnn_teacher", "rnn_student", "rnn_students",
             "rnn_ensemble", "study")
#: What the parameters were before presets, and what to write instead.
OLD_FORMS = {"profile": "params.yaml now holds the values that run: `mtaffect preset NAME` writes a preset's "
                        "(demo, tiny, abaw2020, ...) into it; remove the key",
             "profiles": "presets replaced the profiles; set the section's key itself"}

Count = Annotated[int, Field(ge=1)]
#: Upper bounds keep a value within what memory and time allow: a batch of a million faces
#: would ask for tens of gigabytes before failing with a traceback.
Batch = Annotated[int, Field(ge=1, le=4096)]  #: faces, frames or windows per pass
def _names_a_path(value: str) -> str:
    if not value.strip():  # "" would be the current folder: outputs written over the project
        raise ValueError(f"must name a file or folder, got {value!r}")
    return value


PathName = Annotated[str, AfterValidator(_names_a_path)]  #: a file or folder (not empty)
TaskBatch = Annotated[int, Field(ge=2, le=4096)]  #: per task and training step: BatchNorm learns from two at least
Workers = Annotated[int, Field(ge=1, le=256)]
Epochs = Annotated[int, Field(ge=1, le=10_000)]
Index = Annotated[int, Field(ge=0)]
Seed = Annotated[int, Field(ge=0, lt=2**32)]  #: what every random generator used here accepts
NonNegative = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]


class Section(BaseModel):
    """A params section: strict types (no "8" for 8), no unknown keys, finite numbers.
    ``section`` names it in params.yaml; a section whose values start from another's
    (a student's from the teacher's) names that one in ``inherits`` and its family (the
    named entries, ``students``) in ``family``."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)
    section: ClassVar[str] = ""
    inherits: ClassVar[type[Section] | None] = None
    family: ClassVar[str] = ""


def check_device(value: str) -> str:
    kind, _, number = value.partition(":")
    if kind not in ("auto", "cpu", "cuda", "mps") or (number and not (kind == "cuda" and number.isdigit())):
        raise ValueError(f"unknown device {value!r}: use auto, cpu, cuda or cuda:N")
    return value


def unique(values: list) -> list:
    twice = sorted({v for v in values if values.count(v) > 1})
    if twice:
        raise ValueError(f"{', '.join(map(repr, twice))} listed twice")
    return values


class Params:
    """The sections a stage asked for, validated: ``p.teacher``, ``p.build``, ``p.students``
    (name -> a student's effective values), ``p.threads``. Any other section is absent, so
    a stage reading one it did not ask for fails at once (and its ``dvc.yaml`` entry, which
    tests/test_params.py derives from these reads, would miss it)."""

    def __init__(self, values: dict):
        self.__dict__.update(values)

    def __getattr__(self, name: str):
        raise AttributeError(f"params section {name!r} was not loaded: add its schema to the stage's load()")


def load(path: str | Path, *schemas: type[Section], overrides: tuple[str, ...] = ()) -> Params:
    """The sections of ``schemas`` from the params file at ``path`` (and ``threads``), with
    ``overrides`` set over it (:func:`set_values`); the file's keys are checked by name, the
    requested sections by value."""
    path = Path(path)
    raw = load_yaml(read_text(path), str(path)) or {}
    if not overrides:
        return resolve(raw, str(path), schemas)
    read = {"threads", *(s.section for s in schemas), *(s.family for s in schemas if s.family)}
    for setting in overrides:
        top = setting.partition("=")[0].strip().split(".")[0]
        if "=" in setting and top and top not in read:  # it would change nothing, silently
            raise ParamsError(f"--set {setting!r}: this command does not read {top!r} (it reads "
                              f"{', '.join(sorted(read))})")
    try:  # a wrong value is named with the settings that made it
        return resolve(set_values(copy.deepcopy(raw), overrides),
                       f"{path} with {' '.join(f'--set {o}' for o in overrides)}", schemas)
    except ParamsError:
        resolve(raw, str(path), schemas)  # unless the file itself is wrong: said as such
        raise


def set_values(raw, overrides: tuple[str, ...]):
    """``KEY.PATH=VALUE`` settings over a parsed params file, as ``dvc exp run -S`` takes
    them: the value read as YAML (``2``, ``false``, ``[s1, s2]``), missing mappings on the
    way created. The study runs the stage commands this way (``--set``)."""
    if not overrides:
        return raw
    raw = mapping(raw, "params", "the top level")
    for setting in overrides:
        key, sep, text = setting.partition("=")
        names = key.strip().split(".")
        if not sep or not all(names):
            raise ParamsError(f"--set {setting!r}: expected KEY=VALUE, such as teacher.seed=3")
        if not text.strip():
            raise ParamsError(f"--set {setting!r}: no value after '=' (write null for none)")
        where = raw
        for i, name in enumerate(names[:-1]):
            where[name] = where.get(name) if where.get(name) is not None else {}
            if not isinstance(where[name], dict):
                raise ParamsError(f"--set {setting!r}: {'.'.join(names[:i + 1])} is not a mapping")
            where = where[name]
        where[names[-1]] = load_yaml(text, f"--set {key}")
    return raw


def resolve(raw: dict, where: str, schemas) -> Params:
    """Validated sections of an already parsed params mapping (see :func:`load`)."""
    raw = mapping(raw, where, "the top level")
    for key, fix in OLD_FORMS.items():
        if key in raw:
            example = _first_key(raw[key], key)
            raise ParamsError(f"{where}: {example}: {fix}" + (f" ({example.split('.', 2)[-1]})" if key == "profiles"
                                                                else ""))
    reject_unknown(raw, TOP_LEVEL, where, prefix="")
    require(raw, ("threads",), where, prefix="")
    threads = raw["threads"]
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS:
        raise ParamsError(f"{where}: threads: expected a whole number of threads from 1 to {MAX_THREADS}, "
                          f"got {threads!r}")
    values = {"threads": threads}
    for schema in schemas:
        values.update(_section(raw, where, schema))
    return Params(values)


def _first_key(value, prefix: str) -> str:
    """``prefix.a.b.c``: the first leaf key under a mapping (to name an old-form key)."""
    while isinstance(value, dict) and value:
        key = next(iter(value))
        prefix, value = f"{prefix}.{key}", value[key]
    return prefix


def mapping(value, where: str, label: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ParamsError(f"{where}: {label}: expected a mapping, got {value!r}")
    return value


def _values(raw: dict, where: str, schema: type[Section]) -> dict:
    """A section's values, its parent's first when it inherits, each key checked by name."""
    require(raw, (schema.section,), where, prefix="", what="section")
    own = mapping(raw[schema.section], where, schema.section)
    if schema.inherits is None:
        reject_unknown(own, schema.model_fields, where, prefix=f"{schema.section}.")
        require(own, schema.model_fields, where, prefix=f"{schema.section}.")
        return own
    reject_unknown(own, schema.model_fields, where, prefix=f"{schema.section}.")
    require(own, [k for k in schema.model_fields if k not in schema.inherits.model_fields], where,
            prefix=f"{schema.section}.")  # its own knobs: the rest comes from the section it inherits
    return {**_values(raw, where, schema.inherits), **own}


def _section(raw: dict, where: str, schema: type[Section]) -> dict:
    """``{section: validated values}``, and for a family ``{family: {name: its values}}``."""
    if schema.section == "sources":
        if "sources" not in raw:  # dvc.yaml's extract stages are made from it; no preset holds a user's data
            raise ParamsError(f"{where}: missing section 'sources' (the datasets to read: copy it from the "
                              "project's params.yaml and point it at your copies; README, \"Real data\")")
        sources = mapping(raw.get("sources"), where, "sources")
        reject_unknown(sources, SOURCE_KINDS, where, prefix="sources.")
        return {"sources": {name: _source(schema, entry, where, f"sources.{name}") for name, entry in sources.items()}}
    base = _values(raw, where, schema)
    out = {schema.section: validate(schema, base, where, schema.section)}
    if schema.family:
        family = {}
        for name, entry in mapping(raw.get(schema.family), where, schema.family).items():
            if not re.fullmatch(r"[A-Za-z0-9_-]+", str(name)):
                raise ParamsError(f"{where}: {schema.family}.{name}: a name of letters, digits, '_' and '-' only "
                                  "(it names a DVC stage and a file)")
            entry = mapping(entry, where, f"{schema.family}.{name}")
            reject_unknown(entry, schema.model_fields, where, prefix=f"{schema.family}.{name}.")
            family[str(name)] = validate(schema, {**base, **entry}, where, f"{schema.family}.{name}")
        out[schema.family] = family
    return out


def _source(schema, entry, where: str, label: str):
    if isinstance(entry, str):  # the format before versions
        raise ParamsError(f"{where}: {label}: expected {{root: <folder>, version: <file or folder>}}, got a path; "
                          f"write {{root: {entry}, version: {entry}}} (README, \"Working with real data\")")
    entry = mapping(entry, where, label)
    reject_unknown(entry, schema.model_fields, where, prefix=f"{label}.")
    # root and version always; a key with a default (Aff-Wild2's annotations folder) only where it applies
    require(entry, [k for k, f in schema.model_fields.items() if f.is_required()], where, prefix=f"{label}.")
    return validate(schema, entry, where, label)


def with_overrides(section: Section, **overrides) -> Section:
    """A copy of ``section`` with the command line's explicit options (None = not given)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if not given:
        return section
    return validate(type(section), {**section.model_dump(), **given}, "command line", "option --", sep="",
                    spell=lambda key: key.replace("_", "-"))  # as typed: --label-noise
