"""Checking params.yaml: YAML without duplicate keys, unknown keys with a suggestion, and
pydantic's type and range errors turned into one line that names the key."""
from __future__ import annotations

import codecs
import difflib
import os
import reprlib
from pathlib import Path

import pydantic

from pipeline.core.errors import ParamsError


def load_yaml(text: str, where: str):
    """YAML as DVC reads it (ruamel.yaml, YAML 1.2: ``010`` is ten and ``yes`` a string, so
    the value a stage runs with is the one ``dvc params diff`` shows); a key given twice,
    which PyYAML would silently keep the last of, is an error."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        return YAML(typ="safe").load(text)
    except YAMLError as e:
        mark, problem = getattr(e, "problem_mark", None), getattr(e, "problem", None) or str(e)
        line = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ParamsError(f"{where}: not valid YAML{line}: {' '.join(problem.split())}") from None


def read_text(path: Path) -> str:
    """A parameters file's text: UTF-8 (a byte-order mark is fine), or one clear error."""
    if not Path(path).exists():
        if Path(path).is_symlink():
            raise ParamsError(f"{path}: a symbolic link to {os.readlink(path)}, which does not exist (or a loop of links)")
        raise ParamsError(f"{path}: not found (run from the project root, or pass --params)")
    if not Path(path).is_file():
        raise ParamsError(f"{path}: not a file")
    data = Path(path).read_bytes()
    if wide := wide_text(data[:4096]):
        raise ParamsError(f"{path}: not UTF-8 text ({wide}, by its byte-order mark or NUL bytes): save it as UTF-8")
    if b"\0" in data:  # NUL is valid UTF-8, but no editor writes it: a video, an archive, ...
        raise ParamsError(f"{path}: not a text file (it holds NUL bytes): give the params file, a YAML text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ParamsError(f"{path}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}): "
                          "save it as UTF-8") from None
    if not text.strip():
        raise ParamsError(f"{path}: the file is empty" + (f" (restore it from git: `git checkout {path}`)"
                                                          if _in_git(Path(path)) else ""))
    return text


def wide_text(head: bytes) -> str | None:
    """The encoding, "UTF-16" or "UTF-32", when ``head``, a file's first bytes, begins text in one:
    a byte-order mark, or (no mark) one byte lane of characters and NULs in the others, as
    ASCII text is in them. A file of zeros, or of binary, is neither."""
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):  # before UTF-16's: FF FE begins both
        return "UTF-32"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "UTF-16"
    for width, name in ((4, "UTF-32"), (2, "UTF-16")):
        if len(head) < 2 * width:
            continue
        nuls = [head[k::width].count(0) / len(head[k::width]) for k in range(width)]
        if sorted(nuls)[1] > 0.9 and min(nuls) < 0.1:  # one lane holds the text, the others are NUL
            return name
    return None


def _in_git(path: Path) -> bool:
    """Whether ``path`` is inside a git work tree (else ``git checkout`` cannot restore it)."""
    return any((folder / ".git").exists() for folder in path.resolve().parents)


#: Keys renamed because DVC leaves keys named "size" (and "nfiles") out of the hash its run
#: cache finds earlier runs by (treeverse/dvc#10296): a changed value would bring back the
#: outputs of the old one. No parameter may be named so (tests/test_params.py).
RENAMED = {"synth.size": "dataset_size", "extract.size": "face_size"}


def reject_unknown(d: dict, known, where: str, prefix: str) -> None:
    """Fail on a key of ``d`` not in ``known``, suggesting the closest known one."""
    for key in d:
        if key not in known:
            renamed = next((new for old, new in RENAMED.items() if f"{prefix}{key}".endswith(old)), None)
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = (f"; it is now '{prefix}{renamed}' (DVC's run cache ignores keys named size)" if renamed
                    else f"; did you mean '{prefix}{close[0]}'?" if close else f"; known: {', '.join(sorted(known))}")
            raise ParamsError(f"{where}: unknown key '{prefix}{key}'{hint}")


def require(d: dict, keys, where: str, prefix: str, what: str = "key") -> None:
    for key in keys:
        if key not in d:
            raise ParamsError(f"{where}: missing {what} '{prefix}{key}'")


_EXPECTED = {
    "int_type": "an integer", "float_type": "a number", "bool_type": "true or false",
    "string_type": "a string", "list_type": "a list", "dict_type": "a mapping",
}
_BOUNDS = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"),
           "less_than_equal": ("<=", "le"), "less_than": ("<", "lt")}


# A value as the message shows it: a few items and levels, never the whole of a huge value
# (a YAML alias nesting a list in itself ten times over has 10^8 items).
_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 2, 6, 6, 80, 80


def _message(error: dict) -> str:
    kind, value = error["type"], error.get("input")
    shown = _SHORT.repr(value)
    shown = shown if len(shown) <= 160 else shown[:150] + " ..."
    got = f"got {shown} ({type(value).__name__})"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, {got}"
    if kind == "literal_error":
        return f"expected one of {error['ctx']['expected'].replace(' or ', ', ')}, got {shown}"
    if kind in _BOUNDS:
        sign, bound = _BOUNDS[kind]
        return f"must be {sign} {error['ctx'][bound]}, got {shown}"
    if kind == "value_error":
        return str(error["ctx"]["error"])
    return f"{error['msg']}, {got}"


def validate(cls: type[pydantic.BaseModel], values: dict, where: str, label: str, sep: str = ".", spell=str):
    """``cls`` built from ``values``; the first problem raises one ParamsError naming
    ``<label><sep><key>`` (e.g. ``params.yaml: teacher.epochs: expected an integer, got ...``),
    the key as ``spell`` writes it."""
    try:
        return cls.model_validate(values)
    except pydantic.ValidationError as e:
        error = e.errors()[0]
        key = ".".join(str(part) for part in error["loc"])
        raise ParamsError(f"{where}: {label}{sep}{spell(key)}: {_message(error)}") from None
