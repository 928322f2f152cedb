"""Every params section at once: what works on the whole of ``params.yaml`` rather than the
sections one stage reads (``pipeline.core.params``): checking the whole file (``mtaffect
check-params``, run by ``dvc repro`` before any other stage), the defaults, and the presets
``mtaffect preset NAME`` writes into the file (``presets/<name>.yaml``: the values that
differ from the defaults, which are the paper's)."""
from __future__ import annotations

import io
import itertools
import os
import stat
import zipfile
from pathlib import Path

from pipeline.build.params import BuildParams
from pipeline.core.errors import ParamsError
from pipeline.core.fileio import atomic_write, read_only, special_file, write_text
from pipeline.core.params import SOURCE_TASKS, Params, load, mapping
from pipeline.core.validation import load_yaml, read_text
from pipeline.evaluation.params import EvaluateParams
from pipeline.extraction.params import ExtractParams, SourceParams
from pipeline.inference.params import EnsembleParams
from pipeline.study.params import StudyParams
from pipeline.temporal.params import FeaturesParams, RnnEnsembleParams, RnnParams, RnnStudentParams, TemporalParams
from pipeline.training.params import SoftLabelsParams, StudentParams, TrainParams, advice
from synthetic.params import SynthParams

#: Every section's schema, in params.yaml's order.
SCHEMAS = (SourceParams, SynthParams, ExtractParams, BuildParams, TrainParams, SoftLabelsParams, StudentParams,
           EnsembleParams, EvaluateParams, FeaturesParams, TemporalParams, RnnParams, RnnStudentParams, RnnEnsembleParams,
           StudyParams)
PRESETS = Path(__file__).with_name("presets")
#: The named entries of each family, unless a preset names others.
FAMILY_DEFAULTS = {"students": {f"s{i}": {"seed": i} for i in (1, 2, 3)},
                   "rnn_students": {f"r{i}": {"seed": i} for i in (1, 2, 3)}}


#: Sections only an optional command reads (``mtaffect study``), so a params file written
#: before they existed still runs the pipeline; that command asks for its section itself.
OPTIONAL = (StudyParams,)


def schemas_of(path: str | Path) -> list:
    """The sections to check in ``path``: every one, but an optional one it does not hold."""
    raw = load_yaml(read_text(Path(path)), str(path))
    held = raw if isinstance(raw, dict) else {}
    return [s for s in SCHEMAS if s not in OPTIONAL or s.section in held]


def check_all(path: str | Path) -> tuple[Params, list[str]]:
    """Every section of ``path`` checked, and the sections' agreement with each other (an
    ensemble's members are students); returns them and the advice on valid but doubtful
    settings."""
    p = load(path, *schemas_of(path))
    for ensemble, family in (("ensemble", "students"), ("rnn_ensemble", "rnn_students")):
        for member in getattr(p, ensemble).members:
            if member not in getattr(p, family):
                raise ParamsError(f"{path}: {ensemble}.members: {member!r} is not a {family[:-1].replace('_', ' ')} "
                                  f"({family}: {', '.join(getattr(p, family)) or 'none'}); add it under `{family}`")
    for family in FAMILY_DEFAULTS:  # training is deterministic: one setting, one network, twice
        seen = {}
        for name, entry in getattr(p, family).items():
            twin = seen.setdefault(repr(entry.model_dump()), name)
            if twin != name:
                raise ParamsError(f"{path}: {family}.{name}: the same settings as {family}.{twin} (seed "
                                  f"{entry.seed}): it would train the same network again; give it another seed")
    for task in ("au", "expr", "va"):
        missing = [s for s in getattr(p.build, f"{task}_sources") if s not in p.sources]
        if missing:
            raise ParamsError(f"{path}: build.{task}_sources names {missing[0]}, which has no entry under sources "
                              f"(sources: {', '.join(p.sources) or 'none'}); add it there, or leave it out here")
        unlabelled = [s for s in getattr(p.build, f"{task}_sources") if task not in SOURCE_TASKS[s]]
        if unlabelled:
            raise ParamsError(f"{path}: build.{task}_sources names {unlabelled[0]}, which has no {task.upper()} "
                              f"labels (it labels {', '.join(t.upper() for t in SOURCE_TASKS[unlabelled[0]])})")
    for name, source in p.sources.items():  # DVC deletes a stage's outputs before it runs: never a data set
        out, root = Path(p.extract.out, name).resolve(), Path(source.root).resolve()
        if out == root or out.is_relative_to(root) or root.is_relative_to(out):
            raise ParamsError(f"{path}: extract.out: {p.extract.out!r} puts {name}'s faces in {out}, which overlaps "
                              f"sources.{name}.root {source.root!r}: DVC removes a stage's output before running it, "
                              "so the data set would go; choose another extract.out")
    checkpoint = p.features.checkpoint
    if checkpoint not in ("best_member", "teacher"):
        if not Path(checkpoint).is_file():
            raise ParamsError(f"{path}: features.checkpoint: {checkpoint!r} is not a checkpoint file (nor "
                              "best_member, nor teacher)")
        if not zipfile.is_zipfile(checkpoint):  # what torch.save writes
            raise ParamsError(f"{path}: features.checkpoint: {checkpoint!r} is not a torch checkpoint (no zip archive)")
    for key, section in pretrained(p).items():
        if not Path(section.pretrained).is_file():
            kind = special_file(section.pretrained) or ("a folder" if Path(section.pretrained).is_dir() else None)
            what = f"{kind}, not a file" if kind else "no such file"
            raise ParamsError(f"{path}: {key}.pretrained: {section.pretrained}: {what} (a local backbone "
                              "state dict; nothing is downloaded)")
    devices = {s.section: getattr(p, s.section).device for s in SCHEMAS if "device" in s.model_fields}
    devices |= {f"{f}.{n}": s.device for f in FAMILY_DEFAULTS for n, s in getattr(p, f).items()}
    cuda = {k: v for k, v in devices.items() if v.startswith("cuda")}
    if cuda:
        import torch

        if not torch.cuda.is_available():
            key, device = next(iter(cuda.items()))
            raise ParamsError(f"{path}: {key}.device: {device!r} asked for, but this machine has no CUDA device "
                              "(use auto or cpu)")
    synthetic = [n for n, s in p.sources.items() if Path(s.root).resolve().is_relative_to(Path(p.synth.out).resolve())]
    notes = advice(p.teacher) + p.build.notes()
    if synthetic and p.teacher.backbone == "resnet50":
        return p, notes + [f"sources {', '.join(synthetic)} read the synthetic data ({p.synth.out}) "
                           "while training is the paper's: point sources at your datasets (README, "
                           "\"Working with real data\")"]
    return p, notes


def pretrained(p: Params) -> dict:
    """The teacher and student sections that name pretrained backbone weights."""
    return {key: s for key, s in ({"teacher": p.teacher} | {f"students.{n}": s for n, s in p.students.items()}).items()
            if s.pretrained}


def check_pretrained(p: Params, path: str | Path) -> None:
    """Each pretrained weights file loads into its backbone (torch: the caller sets its
    threads first): a file of another architecture stops the run before hours of
    extraction, not at the teacher's first step."""
    from pipeline.core.errors import CheckpointError
    from pipeline.training.models import MultitaskNet, load_pretrained_backbone

    fitted = set()
    for key, section in pretrained(p).items():
        if (section.backbone, section.pretrained) not in fitted:
            try:
                load_pretrained_backbone(MultitaskNet(section.backbone), section.pretrained)
            except CheckpointError as e:
                raise ParamsError(f"{path}: {key}.pretrained: {e}") from None
            fitted.add((section.backbone, section.pretrained))


def defaults() -> dict:
    """Every section at its default (the paper's values), as params.yaml would hold it: an
    inheriting section holds only its own knobs and what differs from its parent's."""
    out = {}
    for schema in SCHEMAS:
        if schema is SourceParams:
            continue
        values = schema().model_dump(mode="json")
        if schema.inherits is not None:
            parent = schema.inherits().model_dump(mode="json")
            values = {k: v for k, v in values.items() if k not in parent or parent[k] != v}
        out[schema.section] = values
    return out | {family: dict(entries) for family, entries in FAMILY_DEFAULTS.items()}


def preset(name: str) -> dict:
    """The sections of preset ``name``: the defaults (or, when it says ``extends: <preset>``,
    that preset's values) updated with ``presets/<name>.yaml``."""
    path = PRESETS / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PRESETS.glob("*.yaml")))
        raise ParamsError(f"no preset {name!r}: use one of {known}")
    given_sections = dict(mapping(load_yaml(path.read_text(), str(path)), str(path), "the top level"))
    base = given_sections.pop("extends", None)
    values = preset(base) if base is not None else defaults()
    for section, given in given_sections.items():
        values[section] = given if section in FAMILY_DEFAULTS else {**values[section], **given}
    order = {s.section: list(s.model_fields) for s in SCHEMAS}
    return {section: dict(sorted(v.items(), key=lambda kv: order[section].index(kv[0]))) if section in order else v
            for section, v in values.items()}


def apply_preset(path: str | Path, name: str) -> tuple[list[str], Path | None]:
    """Write preset ``name``'s values into the params file at ``path`` (through a symbolic
    link, which stays), keeping its comments and ``threads``; its ``sources`` too, unless
    they all read the synthetic data: then they become the data sets the preset's synthetic
    data holds (:func:`_synthetic_sources`). Returns the keys whose value changed
    (``section.key: old -> new``) and where the file as it was is kept when entries were
    removed (:func:`before_preset`), else None."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    yaml = YAML()  # round trip: comments and layout kept
    yaml.width = 120
    yaml.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    path = Path(path)
    text = read_text(path)
    path = path.resolve()  # a link to a shared file: the file changes, the link stays
    mode = path.stat().st_mode
    if read_only(path):
        raise ParamsError(f"{path}: read-only: refusing to replace it (make it writable first, e.g. chmod u+w)")
    load_yaml(text, str(path))  # a file that is no valid YAML: the one line check-params gives
    windows = "\r\n" in text  # written back with the line ends it has (the emitter's are \n)
    doc = yaml.load(text.replace("\r\n", "\n"))
    changed = []
    sections = preset(name)
    _synthetic_sources(doc, sections["synth"], path.parent, changed)
    for section, values in sections.items():
        current = doc.get(section)
        if current is None:
            doc[section] = current = CommentedMap()
            changed.append(f"{section}: added")
        for key in [k for k in current if k not in values]:  # not in the preset: back to the parent's value
            changed.append(f"{section}.{key}: {current[key]!r} -> (inherited)" if section not in FAMILY_DEFAULTS
                           else f"{section}.{key}: removed")
            del current[key]
        for key, value in values.items():
            if key not in current:  # in the schema's order
                changed.append(f"{section}.{key}: (inherited) -> {value!r}")
                current.insert(sum(k in current for k in list(values)[:list(values).index(key)]), key, _flow(value))
            elif _plain(current[key]) != value:
                changed.append(f"{section}.{key}: {_plain(current[key])!r} -> {value!r}")
                current[key] = _flow(value)
    backup = None
    if any(line.endswith(": removed") for line in changed):  # a user's own entries: kept in a copy
        backup = before_preset(path, text)
        write_text(backup, text)
    out = io.StringIO()
    yaml.dump(doc, out)  # the whole text first: a failing write then leaves nothing of the emitter's
    with atomic_write(path) as tmp:
        Path(tmp).write_text(out.getvalue().replace("\n", "\r\n") if windows else out.getvalue(), newline="")
        os.chmod(tmp, stat.S_IMODE(mode))  # the file keeps its permissions (a group's shared file, say)
    return changed, backup


def _synthetic_sources(doc, synth: dict, folder: Path, changed: list[str]) -> None:
    """When every entry of ``sources`` reads the synthetic data (``synth['out']``), make them
    the data sets it holds in ``synth``'s label schema (demo2022's six, demo's four): added
    entries point into it, entries of data sets it does not hold go. A user's own data set
    (a root elsewhere) is never touched, nor are the others then."""
    from synthetic.eras import ERAS

    sources, out = doc.get("sources") or {}, str(synth["out"]).rstrip("/")
    inside = (folder / out).resolve()
    if not all((folder / str((entry or {}).get("root", ""))).resolve().is_relative_to(inside)
               for entry in sources.values()) or not sources:
        return
    wanted = ERAS[synth["label_schema"]].sources
    for name in [n for n in sources if n not in wanted]:
        changed.append(f"sources.{name}: removed")
        del sources[name]
    for name in [n for n in wanted if n not in sources]:
        changed.append(f"sources.{name}: added")
        sources[name] = _flow({"root": f"{out}/{name}", "version": f"{out}/{name}.version.json"})


def before_preset(path: Path, text: str) -> Path:
    """Where ``apply_preset`` keeps ``text``, the file as it was, when the preset removes
    entries: ``params.before-preset.yaml``, or ``...before-preset.2.yaml`` and on when that
    name holds something else (an earlier backup is never overwritten)."""
    for n in itertools.count(1):
        backup = path.with_name(f"{path.stem}.before-preset{'' if n == 1 else f'.{n}'}{path.suffix}")
        if not backup.exists() or backup.read_text(encoding="utf-8", errors="replace") == text:
            return backup


def _flow(value):
    """Lists and mappings inside a section written on one line, as params.yaml writes them."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(value, (dict, list)):
        node = CommentedMap(value) if isinstance(value, dict) else CommentedSeq(value)
        node.fa.set_flow_style()
        return node
    return value


def _plain(value):
    """A round-trip YAML value as plain Python (to compare it with a preset's)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
