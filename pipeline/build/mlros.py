"""ML-ROS (Charte et al. 2015) and the imbalance measures it rests on (docs/method.md,
"Data balancing"): IRLbl per label and MeanIR, on multi-label rows stored as bit codes.

Unknown labels (-1) are never counted as positive. The result is a clone count per row;
the build turns it into the row's per-epoch weight 1 + clones (the authors' code gives a
once-cloned row the weight of an uncloned one: docs/method.md says why we do not).
"""
from __future__ import annotations

from array import array
from typing import Sequence

import numpy as np


class NoPositiveLabelError(ValueError):
    """Some labels have no positive instance, so their IRLbl is undefined (infinite).

    ML-ROS can only clone instances that carry a label, so nothing can fix this; the
    caller should name the labels (``label_indices``, ``label_names``) and drop them or
    add data.
    """

    def __init__(self, label_indices: list[int], label_names: list[str]):
        self.label_indices = label_indices
        self.label_names = label_names
        which = ", ".join(f"{n} (column {j})" for j, n in zip(label_indices, label_names))
        super().__init__(f"no positive instance of {which}: IRLbl is undefined and ML-ROS "
                         "cannot clone what is not there")


def _label_name(j: int, names: Sequence[str] | None) -> str:
    return str(names[j]) if names is not None else f"#{j}"


def _check_multilabel(labels) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 2:
        raise ValueError(f"multi-label matrix must be 2-D [N, L], got shape {y.shape}")
    # For integers a range check is the whole check, and it needs no [N, L] temporaries.
    if y.size and (y.dtype.kind not in "iub" or y.min() < -1 or y.max() > 1):
        bad = (y != 1) & (y != 0) & (y != -1)
        if np.any(bad):
            raise ValueError(f"multi-label values must be 1, 0 or -1 (unknown), got {np.unique(y[bad])[:5]}")
    return y


# Multi-label rows as codes: bit j set when label j is positive. Unknown (-1) and negative
# (0) are both "not positive", which is all IRLbl and ML-ROS look at, so a code is all of
# a row they need: one or two bytes instead of an [N, L] matrix.
MAX_LABELS = 62


def code_dtype(n_labels: int) -> np.dtype:
    """The smallest unsigned integer type holding the codes of ``n_labels`` labels."""
    if n_labels > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} labels are supported, got {n_labels}")
    return np.dtype(next(t for t in (np.uint8, np.uint16, np.uint32, np.uint64) if np.iinfo(t).bits >= n_labels))


def positive_codes(labels) -> np.ndarray:
    """Each row's set of positive labels as a bit mask, [N] of ``code_dtype(L)``; ``labels``
    is int [N, L] with 1 positive, 0 negative, -1 unknown (not positive)."""
    y = _check_multilabel(labels)
    dtype = code_dtype(y.shape[1])
    codes = np.zeros(len(y), dtype)
    for j in range(y.shape[1]):  # column by column: no [N, L] temporary
        codes |= (y[:, j] == 1).astype(dtype) << dtype.type(j)
    return codes


def _carries(codes: np.ndarray, j: int) -> np.ndarray:
    return (codes >> codes.dtype.type(j)) & codes.dtype.type(1) == 1


def label_counts(codes: np.ndarray, n_labels: int, multiplicity: np.ndarray | None = None) -> np.ndarray:
    """Per label, the number of rows carrying it, or their total ``multiplicity``; float [L]."""
    codes = np.asarray(codes)
    if multiplicity is None:
        return np.array([np.count_nonzero(_carries(codes, j)) for j in range(n_labels)], dtype=np.float64)
    return np.array([np.sum(multiplicity, where=_carries(codes, j)) for j in range(n_labels)], dtype=np.float64)


def irlbl_from_counts(positives, names: Sequence[str] | None = None) -> np.ndarray:
    """Imbalance ratio per label from the per-label positive counts (``label_counts``):
    IRLbl(l) = max_l' pos(l') / pos(l), float [L]. MeanIR is its mean.

    Raises ``NoPositiveLabelError`` when labels have no positive at all; ``names`` only
    makes that message readable (e.g. ``labels.AU_NAMES``).
    """
    positives = np.asarray(positives, dtype=np.float64)
    missing = [int(j) for j in np.flatnonzero(positives <= 0)]
    if missing:
        raise NoPositiveLabelError(missing, [_label_name(j, names) for j in missing])
    return positives.max() / positives


# --- ML-ROS -------------------------------------------------------------------------


def _int_array(values: np.ndarray, typecode: str = "i") -> array:
    """``values`` as an array.array: the ML-ROS loop indexes and appends to these once per
    clone, which is as fast as with a list (far faster than with numpy) at 1-4 bytes an
    entry instead of a list's 8 (plus an int object per distinct value)."""
    out = array(typecode)
    out.frombytes(np.ascontiguousarray(values, dtype=np.dtype(typecode)).tobytes())
    return out


class _UniformStream:
    """Uniform [0, 1) numbers drawn from a seeded generator in blocks.

    One vectorised call per block instead of one generator call per clone; the values
    consumed do not depend on the block size, so the result depends only on the seed.
    """

    def __init__(self, seed: int, block: int):
        self._rng = np.random.default_rng(seed)
        self._block = max(1, block)
        self._values: list[float] = []
        self._next = 0

    def __call__(self) -> float:
        if self._next == len(self._values):
            self._values = self._rng.random(self._block).tolist()
            self._next = 0
        u = self._values[self._next]
        self._next += 1
        return u


def ml_ros(
    codes: np.ndarray,
    n_labels: int,
    budget_pct: float = 50.0,
    mean_ir: float | None = None,
    seed: int = 0,
    weights=None,
    names: Sequence[str] | None = None,
) -> np.ndarray:
    """ML-ROS clone counts (Charte et al. 2015): int64 [N], row i is drawn 1 + n_i times.

    ``codes`` are the rows' positive-label codes (``positive_codes``, one byte per AU
    frame: all ML-ROS needs of a row, and all the build keeps) for ``n_labels`` labels.

    The ML-ROS algorithm of Charte, Rivera, del Jesus and Herrera (Neurocomputing 163,
    2015), with the bag kept as per-row counts instead of copied rows:

    1. MeanIR is the data's own mean IRLbl unless ``mean_ir`` is given (the authors of the
       FG 2020 code preset 2.0). Minority labels: IRLbl > MeanIR. MeanIR stays fixed.
    2. Round robin over the minority labels: clone one instance drawn uniformly from the
       label's current bag (the originals carrying it *and* the clones made so far, so
       clones can be cloned). The clone carries all of the row's labels, so every count
       it touches goes up, possibly the majority label's too.
    3. A label leaves the minority set as soon as its IRLbl, recomputed with the clones,
       is <= MeanIR (checked after its clone, as Charte et al. do, and also before it, so
       a label already balanced by clones of co-occurring labels is not cloned again).
       A label that left is never re-added.
    4. Stop when no minority label remains or the budget is spent: floor(budget_pct% of
       the bag size) clones, the bag size being N (or sum(weights)).

    ``weights`` (optional, >= 0) are the rows' starting multiplicities, e.g. from an
    earlier reweighting; the returned clones come on top: multiplicity = weights + n.

    Drawing "a random instance carrying l from the bag" exactly, in O(1) per clone rather
    than O(N): the bag of l is its originals (static; total mass m_l) followed by a list
    of the original ids of every clone that carries l, appended as clones are made. A
    uniform u times the bag's current mass falls either among the originals (position
    floor(x), or a binary search in their cumulative weights when weighted) or at a
    position in the clone list, whose entries are repeated once per clone: this is
    exactly the draw with probability proportional to current multiplicity. Uniforms come
    from the seeded generator in blocks, so the per-clone work is a few Python operations.
    """
    codes = np.asarray(codes)
    n_rows = len(codes)
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    if w is not None and (w.shape != (n_rows,) or np.any(w < 0) or not np.all(np.isfinite(w))):
        raise ValueError(f"weights must be {n_rows} finite values >= 0, got shape {w.shape}")
    if budget_pct < 0:
        raise ValueError(f"budget_pct must be >= 0, got {budget_pct}")

    counts = label_counts(codes, n_labels, w)
    ir = irlbl_from_counts(counts, names)
    target = float(ir.mean()) if mean_ir is None else float(mean_ir)
    bag_size = n_rows if w is None else float(w.sum())
    budget = int(np.floor(budget_pct / 100.0 * bag_size + 1e-9))
    minority = [j for j in range(n_labels) if ir[j] > target]
    if budget == 0 or not minority:
        return np.zeros(n_rows, dtype=np.int64)

    # A cloned row adds one to the count of every label it carries: its labels are looked
    # up by its code (a few hundred distinct codes at most in practice).
    row_code = _int_array(codes, codes.dtype.char)
    labels_of = {c: tuple(j for j in range(n_labels) if (c >> j) & 1) for c in np.unique(codes).tolist()}
    originals = [_int_array(np.flatnonzero(_carries(codes, j))) for j in range(n_labels)]
    if w is None:
        original_mass = [float(len(o)) for o in originals]
        original_cum = None
    else:
        original_cum = [np.cumsum(w[np.frombuffer(o, np.intc)]) for o in originals]
        original_mass = [float(c[-1]) for c in original_cum]
    clones_carrying = [array("i") for _ in range(n_labels)]
    pos = counts.tolist()          # Python floats: scalar updates are far cheaper than numpy
    max_pos = max(pos)
    cloned = array("i")
    uniform = _UniformStream(seed, block=min(budget, 1 << 16))

    def draw(j: int) -> int:
        mass_orig = original_mass[j]
        x = uniform() * (mass_orig + len(clones_carrying[j]))
        if x < mass_orig:
            if original_cum is None:
                return originals[j][int(x)]
            k = int(np.searchsorted(original_cum[j], x, side="right"))
            return originals[j][min(k, len(originals[j]) - 1)]
        extra = clones_carrying[j]
        return extra[min(int(x - mass_orig), len(extra) - 1)]

    k = 0
    while minority and len(cloned) < budget:
        j = minority[k]
        if max_pos / pos[j] > target:
            row = draw(j)
            cloned.append(row)
            for jj in labels_of[row_code[row]]:
                pos[jj] += 1.0
                clones_carrying[jj].append(row)
                if pos[jj] > max_pos:
                    max_pos = pos[jj]
        if max_pos / pos[j] <= target:
            del minority[k]        # the next label slides into position k
        else:
            k += 1
        if k >= len(minority):
            k = 0
    return np.bincount(np.frombuffer(cloned, dtype=np.intc), minlength=n_rows).astype(np.int64, copy=False)
