"""The unified label schema and the mapping of every source's labels into it.

One place for names, orders, ranges and bins, so that readers, losses, metrics and
reports cannot disagree. Unknown labels stay unknown: -1 for AUs and expressions,
NaN for valence and arousal; nothing here ever turns "unknown" into 0.
"""
from __future__ import annotations

import numpy as np

from pipeline.core.schema import ABAW2020, LabelSchema

# --- action units -------------------------------------------------------------------
#: The paper's 8 AUs (the abaw2020 schema), for what only that era has (e.g. its readers).
AU_NAMES: tuple[str, ...] = ABAW2020.aus
#: The same AUs as FACS numbers (1, 2, 4, ...), in the same order.
AU_NUMBERS: tuple[int, ...] = tuple(int(name[2:]) for name in AU_NAMES)
AU_UNKNOWN = -1

# --- expressions --------------------------------------------------------------------
EXPR_NAMES: tuple[str, ...] = ABAW2020.expressions  # the 7 basic expressions
EXPR_UNKNOWN = -1

# --- valence / arousal --------------------------------------------------------------
VA_NAMES: tuple[str, ...] = ("valence", "arousal")
VA_RANGE: tuple[float, float] = (-1.0, 1.0)
VA_BINS = 20
#: 21 equal edges over [-1, 1]; bin k covers [edges[k], edges[k+1]), the last one is closed.
#: Built as k/10 so an edge equals the float a user writes (0.1), which linspace misses.
VA_BIN_EDGES = np.arange(-VA_BINS // 2, VA_BINS // 2 + 1) / (VA_BINS // 2)
#: The true centres of those bins: -0.95, -0.85, ..., 0.95 (the default, docs/method.md).
VA_BIN_CENTRES = (VA_BIN_EDGES[:-1] + VA_BIN_EDGES[1:]) / 2
#: What the authors' code uses for the expectation: 20 points with both ends, which are
#: not the centres of its own bins. Offered as an option only.
VA_BIN_CENTRES_REFERENCE = np.linspace(VA_RANGE[0], VA_RANGE[1], VA_BINS)

TASKS: tuple[str, ...] = ("AU", "EXPR", "VA")
#: An AU is "present" when its probability reaches this (unless thresholds are tuned on validation).
AU_THRESHOLD = 0.5

#: Frame numbers from here on are no video's (four days at 30 fps): a typo, never allocated for.
MAX_FRAMES = 10_000_000


def head_sizes(schema: LabelSchema) -> dict[str, int]:
    """Head output sizes: a logit per AU, one per class, 20 valence + 20 arousal bin logits
    (8, 7, 40 in abaw2020; 12, 8, 40 in abaw2022)."""
    return {"AU": len(schema.aus), "EXPR": len(schema.expressions), "VA": 2 * VA_BINS}


def logit_slices(schema: LabelSchema) -> dict[str, slice]:
    """Where each head's logits sit when the three are stored side by side, in TASKS order."""
    slices, start = {}, 0
    for task, n in head_sizes(schema).items():
        slices[task] = slice(start, start + n)
        start += n
    return slices


def n_logits(schema: LabelSchema) -> int:
    """Logits of the three heads together (55 in abaw2020, 60 in abaw2022)."""
    return sum(head_sizes(schema).values())


def split_logits(logits, schema: LabelSchema) -> dict:
    """[..., n_logits] logits (a tensor or an array) as ``{"AU": [..., AUs], "EXPR": [..., classes], "VA": [..., 40]}``."""
    return {task: logits[..., s] for task, s in logit_slices(schema).items()}


def va_dims(logits):
    """[B, 40] VA logits (a tensor or an array) as [B, 2, 20]: valence bins, then arousal bins."""
    return logits.reshape(logits.shape[0], 2, VA_BINS)


def va_centres(kind: str = "centres") -> np.ndarray:
    """Bin values used for the VA expectation: ``centres`` (default) or ``reference``."""
    if kind == "centres":
        return VA_BIN_CENTRES.copy()
    if kind == "reference":
        return VA_BIN_CENTRES_REFERENCE.copy()
    raise ValueError(f"unknown VA bin-centre kind {kind!r}: use 'centres' or 'reference'")


def va_to_bin(values) -> np.ndarray:
    """Bin index 0..19 of VA values in [-1, 1]; 1.0 falls in the last bin; NaN gives -1
    (unknown); +-inf is out of range.

    A value outside [-1, 1] is an error, not the nearest bin: it means a reader mapped the
    labels wrongly (e.g. AFEW-VA's [-10, 10] not divided by 10).
    """
    v = np.asarray(values, dtype=np.float64)
    outside = v[~np.isnan(v) & ((v < VA_RANGE[0]) | (v > VA_RANGE[1]))]  # +-inf too: out of range
    if len(outside):
        raise ValueError(f"valence/arousal must lie in [-1, 1], got e.g. {outside[:5]}")
    bins = np.digitize(v, VA_BIN_EDGES) - 1
    bins = np.clip(bins, 0, VA_BINS - 1)
    return np.where(np.isnan(v), -1, bins).astype(np.int64)


# --- per-source mappings ------------------------------------------------------------
#: DISFA intensities 0..5; an AU is active when its intensity reaches this value.
DISFA_INTENSITY_THRESHOLD = 2
#: The 12 AUs DISFA labels (a frame table keeps them all; the build keeps the schema's).
DISFA_AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)


def disfa_to_au(intensity) -> np.ndarray:
    """DISFA intensity (0..5, or -1 unknown) to a unified 0/1 AU label (-1 stays unknown)."""
    x = np.asarray(intensity)
    if np.any((x != -1) & ((x < 0) | (x > 5))):
        raise ValueError(f"DISFA intensity out of 0..5: {x[(x != -1) & ((x < 0) | (x > 5))][:5]}")
    return np.where(x == -1, AU_UNKNOWN, (x >= DISFA_INTENSITY_THRESHOLD).astype(np.int8)).astype(np.int8)


#: ExpW labels: 0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral.
EXPW_NAMES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
EXPW_TO_UNIFIED: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 0)
#: The inverse: unified class -> ExpW label.
UNIFIED_TO_EXPW: tuple[int, ...] = tuple(EXPW_TO_UNIFIED.index(k) for k in range(len(EXPW_TO_UNIFIED)))


def expw_to_expr(label) -> np.ndarray:
    """ExpW label 0..6 to the unified expression index."""
    x = np.asarray(label)
    if np.any((x < 0) | (x > 6)):
        raise ValueError(f"ExpW expression label out of 0..6: {x[(x < 0) | (x > 6)][:5]}")
    return np.asarray(EXPW_TO_UNIFIED, dtype=np.int8)[x]


#: AFEW-VA stores integers in [-10, 10].
AFEWVA_SCALE = 10.0


def afewva_to_va(value) -> np.ndarray:
    """AFEW-VA integer in [-10, 10] to a float32 in [-1, 1]."""
    x = np.asarray(value, dtype=np.float64)
    if np.any(np.abs(x) > AFEWVA_SCALE):
        raise ValueError(f"AFEW-VA value out of [-10, 10]: {x[np.abs(x) > AFEWVA_SCALE][:5]}")
    return (x / AFEWVA_SCALE).astype(np.float32)


#: Aff-Wild2 invalid markers per annotation set.
AFFWILD2_INVALID = {"AU": -1, "EXPR": -1, "VA": -5}
#: The header each Aff-Wild2 annotation set of the 2020 release carries (any order is accepted).


def affwild2_au(row) -> np.ndarray:
    """One Aff-Wild2 AU row (one value per header AU) to int8; any -1 makes all unknown.

    The organisers mark a whole frame invalid with -1; a row with one -1 is not to be
    trusted in its other columns either.
    """
    x = np.asarray(row, dtype=np.float64)
    if np.any(x == AFFWILD2_INVALID["AU"]):
        return np.full(len(x), AU_UNKNOWN, dtype=np.int8)
    if np.any((x != 0) & (x != 1)):
        raise ValueError(f"Aff-Wild2 AU values must be 0, 1 or -1, got {row}")
    return x.astype(np.int8)


def affwild2_expr(value, codes=None) -> int:
    """One Aff-Wild2 EXPR value (an index into the file's header, -1 invalid) to its code
    (``codes[value]``: the header's classes as codes of ``schema.EXPRESSIONS``, by default
    the 2020 header's; -1 unknown)."""
    codes = range(len(EXPR_NAMES)) if codes is None else codes
    v = int(value)
    if v == AFFWILD2_INVALID["EXPR"]:
        return EXPR_UNKNOWN
    if not 0 <= v < len(codes):
        raise ValueError(f"Aff-Wild2 expression must be 0..{len(codes) - 1} (the header's classes) or -1, got {value}")
    return int(codes[v])


def affwild2_va(valence, arousal) -> tuple[float, float]:
    """One Aff-Wild2 VA row to floats; -5 in both columns is unknown (NaN, NaN). -5 in one
    column only is a ValueError: such a row is no label the reader can trust, not a
    valence with an unknown arousal."""
    v, a = float(valence), float(arousal)
    if (v == AFFWILD2_INVALID["VA"]) != (a == AFFWILD2_INVALID["VA"]):
        raise ValueError(f"one of valence and arousal is unknown (-5), the other not, got {valence},{arousal}")
    if v == AFFWILD2_INVALID["VA"]:
        return float("nan"), float("nan")
    if not (-1.0 <= v <= 1.0 and -1.0 <= a <= 1.0):
        raise ValueError(f"Aff-Wild2 valence/arousal must be in [-1, 1] or -5, got {valence},{arousal}")
    return v, a


def header_order(header: str, expected: tuple[str, ...], where: str) -> list[int]:
    """Column positions of ``expected`` names in a comma-separated header line.

    Lets a reader map by name when a file lists the columns in another order; fails with
    the file name when a name is missing.
    """
    cols = [c.strip() for c in header.strip().split(",")]
    lower = [c.lower() for c in cols]
    missing = [n for n in expected if n.lower() not in lower]
    if missing:
        raise ValueError(f"{where}: line 1: header {header.strip()!r} lacks {', '.join(missing)}")
    return [lower.index(n.lower()) for n in expected]
