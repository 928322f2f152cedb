"""Imbalance measures and per-task rebalancing (method.md, "Data balancing").

Everything here works on plain numpy arrays and returns either row positions to keep
(downsampling) or per-row weights: the expected number of times a row is drawn per
epoch. The build stage writes those weights into the training index and
``pipeline.sampling.TaskBatchSampler`` draws with probability proportional to them.

- AU: ML-ROS (Charte et al. 2015) clone counts; a row cloned n times weighs 1 + n.
- EXPR: every present class gets the same share of the draws.
- VA: flatten the histogram of the 20 fixed [-1, 1] bins, jointly (20x20 cells) or per
  dimension (iterative proportional fitting of both marginals).
- Reference-style downsampling: keep every k-th row of a class, or of a whole source.

Unknown labels (-1 for AU and EXPR, NaN for VA) are never counted as a value: an unknown
AU is simply not positive, and an unknown expression or VA row gets weight 0.
"""
from __future__ import annotations

from array import array
from typing import Mapping, Sequence

import numpy as np

from pipeline.labels import EXPR_NAMES, VA_BINS, VA_RANGE, va_to_bin


# --- imbalance measures for multi-label data ------------------------------------------
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
    """Each row's set of positive labels as a bit mask, [N] of ``code_dtype(L)``."""
    return _codes(_check_multilabel(labels))


def _codes(y: np.ndarray) -> np.ndarray:
    """``positive_codes`` of an already checked label matrix."""
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
    """IRLbl from the per-label positive counts (see ``irlbl``)."""
    positives = np.asarray(positives, dtype=np.float64)
    missing = [int(j) for j in np.flatnonzero(positives <= 0)]
    if missing:
        raise NoPositiveLabelError(missing, [_label_name(j, names) for j in missing])
    return positives.max() / positives


def irlbl(labels, names: Sequence[str] | None = None) -> np.ndarray:
    """Imbalance ratio per label: IRLbl(l) = max_l' pos(l') / pos(l), float [L].

    ``labels`` is int [N, L] with 1 positive, 0 negative, -1 unknown (not positive).
    Raises ``NoPositiveLabelError`` (a ValueError) when labels have no positive at all;
    ``names`` only makes that message readable (e.g. ``labels.AU_NAMES``).
    """
    y = _check_multilabel(labels)
    return irlbl_from_counts(label_counts(_codes(y), y.shape[1]), names)


def irlbl_weighted(labels, multiplicity, names: Sequence[str] | None = None) -> np.ndarray:
    """IRLbl of the bag in which row i appears ``multiplicity[i]`` times (e.g. 1 + clones)."""
    y = _check_multilabel(labels)
    m = np.asarray(multiplicity, dtype=np.float64)
    if m.shape != (len(y),) or np.any(m < 0) or not np.all(np.isfinite(m)):
        raise ValueError(f"multiplicity must be {len(y)} finite values >= 0, got shape {m.shape}")
    return irlbl_from_counts(label_counts(_codes(y), y.shape[1], m), names)


def mean_ir(labels, names: Sequence[str] | None = None) -> float:
    """MeanIR: the mean of IRLbl over the labels."""
    return float(irlbl(labels, names).mean())


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
    labels,
    budget_pct: float = 50.0,
    mean_ir: float | None = None,
    seed: int = 0,
    weights=None,
    names: Sequence[str] | None = None,
) -> np.ndarray:
    """ML-ROS clone counts (Charte et al. 2015): int64 [N], row i is drawn 1 + n_i times.

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
    y = _check_multilabel(labels)
    return ml_ros_codes(_codes(y), y.shape[1], budget_pct=budget_pct, mean_ir=mean_ir, seed=seed,
                        weights=weights, names=names)


def ml_ros_codes(
    codes: np.ndarray,
    n_labels: int,
    budget_pct: float = 50.0,
    mean_ir: float | None = None,
    seed: int = 0,
    weights=None,
    names: Sequence[str] | None = None,
) -> np.ndarray:
    """``ml_ros`` on the rows' positive-label codes (``positive_codes``): same result, and
    what the build uses, since it keeps only the codes (a byte per AU frame)."""
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


# --- expressions: equal probability per class ---------------------------------------
def _check_classes(classes, n_classes: int) -> np.ndarray:
    c = np.asarray(classes)
    if c.ndim != 1:
        raise ValueError(f"classes must be 1-D, got shape {c.shape}")
    bad = (c != -1) & ((c < 0) | (c >= n_classes))
    if np.any(bad):
        raise ValueError(f"class labels must be in 0..{n_classes - 1} or -1, got {np.unique(c[bad])[:5]}")
    return c.astype(np.int64)


def class_histogram(classes, n_classes: int = len(EXPR_NAMES), weights=None) -> np.ndarray:
    """(Weighted) count per class, float [n_classes]; -1 rows are not counted."""
    c = _check_classes(classes, n_classes)
    known = c >= 0
    w = None if weights is None else np.asarray(weights, dtype=np.float64)[known]
    return np.bincount(c[known], weights=w, minlength=n_classes).astype(np.float64)


def absent_classes(classes, n_classes: int = len(EXPR_NAMES)) -> list[int]:
    """Classes with no labelled row (the caller warns or fails, naming them)."""
    return [int(k) for k in np.flatnonzero(class_histogram(classes, n_classes) == 0)]


def class_balanced_weights(classes, n_classes: int = len(EXPR_NAMES)) -> np.ndarray:
    """Per-row expected draws per epoch giving every present class the same share.

    Row i of class k weighs L / (K * count_k), K the number of present classes and L the
    number of labelled rows, so the weights sum to L (an epoch as long as the labelled
    data) and each present class gets L / K draws in expectation. Rows labelled -1 weigh
    0. Absent classes cannot be drawn: see ``absent_classes``.
    """
    c = _check_classes(classes, n_classes)
    per_row = class_weights(class_histogram(c, n_classes))
    return np.where(c >= 0, per_row[np.maximum(c, 0)], 0.0)


def class_weights(counts) -> np.ndarray:
    """The weight of one row of each class, from the class counts (see
    ``class_balanced_weights``); 0 for absent classes."""
    counts = np.asarray(counts, dtype=np.float64)
    n_labelled = counts.sum()
    if n_labelled == 0:
        raise ValueError("no labelled row (every class label is -1): nothing to balance")
    per_row = np.zeros(len(counts))
    present = counts > 0
    per_row[present] = n_labelled / (np.count_nonzero(present) * counts[present])
    return per_row


# --- valence / arousal: flatten the bin histogram ------------------------------------
VA_MODES = ("joint", "marginal")


def va_bin_index(va, bins: int = VA_BINS) -> np.ndarray:
    """Bin of each value on ``bins`` equal bins over [-1, 1] (same convention as
    ``labels.va_to_bin``, which it is for the default 20); NaN gives -1."""
    v = np.asarray(va, dtype=np.float64)
    outside = v[np.isfinite(v) & ((v < VA_RANGE[0]) | (v > VA_RANGE[1]))]
    if len(outside):
        raise ValueError(f"valence/arousal must lie in [-1, 1], got e.g. {outside[:5]}")
    if bins == VA_BINS:
        return va_to_bin(v)
    edges = np.linspace(VA_RANGE[0], VA_RANGE[1], bins + 1)
    index = np.clip(np.digitize(v, edges) - 1, 0, bins - 1)
    return np.where(np.isnan(v), -1, index).astype(np.int64)


def _va_bins(va, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Valence bins, arousal bins and the mask of rows where both are known."""
    x = np.asarray(va, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"va must be [N, 2] (valence, arousal), got shape {x.shape}")
    v_bin, a_bin = va_bin_index(x[:, 0], bins), va_bin_index(x[:, 1], bins)
    return v_bin, a_bin, (v_bin >= 0) & (a_bin >= 0)


def bin_histogram(va, mode: str = "joint", weights=None, bins: int = VA_BINS) -> np.ndarray:
    """(Weighted) VA bin counts of the rows where both values are known.

    ``joint``: [bins, bins], indexed [valence bin, arousal bin]; ``marginal``: [2, bins],
    row 0 valence, row 1 arousal. For the build report before (no weights) and after.
    """
    if mode not in VA_MODES:
        raise ValueError(f"unknown VA histogram mode {mode!r}: use one of {VA_MODES}")
    v_bin, a_bin, known = _va_bins(va, bins)
    w = np.ones(len(known)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != known.shape:
        raise ValueError(f"weights must have one value per row ({len(known)}), got shape {w.shape}")
    v_bin, a_bin, w = v_bin[known], a_bin[known], w[known]
    if mode == "joint":
        return np.bincount(v_bin * bins + a_bin, weights=w, minlength=bins * bins).reshape(bins, bins)
    return np.stack([np.bincount(v_bin, weights=w, minlength=bins),
                     np.bincount(a_bin, weights=w, minlength=bins)])


def _ipf_uniform_marginals(table: np.ndarray, iterations: int, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Row and column factors r, c making table * r[:, None] * c[None, :] have uniform
    row sums over occupied rows and uniform column sums over occupied columns.

    Iterative proportional fitting: alternately rescale rows then columns to the target.
    When such a table exists, it converges to the one closest to the data in KL
    divergence, i.e. it keeps the valence-arousal correlation as much as flat marginals
    allow. When none exists (the occupied cells cannot carry two flat marginals), it
    drifts toward it with some cells' weights shrinking; we stop after ``iterations``,
    having just flattened arousal exactly and valence approximately.
    """
    rows, cols = table.sum(axis=1) > 0, table.sum(axis=0) > 0
    total = table.sum()
    row_target, col_target = total / rows.sum(), total / cols.sum()
    r, c = np.ones(table.shape[0]), np.ones(table.shape[1])
    for _ in range(iterations):
        row_sum = (table * c[None, :]).sum(axis=1) * r
        r[rows] *= row_target / row_sum[rows]
        col_sum = (table * r[:, None]).sum(axis=0) * c
        c[cols] *= col_target / col_sum[cols]
        row_sum = (table * r[:, None] * c[None, :]).sum(axis=1)
        if np.max(np.abs(row_sum[rows] / row_target - 1)) < tol:
            break
    return r, c


def va_balanced_weights(va, mode: str = "joint", bins: int = VA_BINS,
                        ipf_iterations: int = 200, ipf_tol: float = 1e-6) -> np.ndarray:
    """Per-row expected draws per epoch flattening the VA bin histogram, float [N].

    Bins are fixed over [-1, 1] (not the data range, as the reference code does), so the
    same value always falls in the same bin whatever data are merged.

    - ``joint``: the reference's choice: 20x20 cells, weight 1 / cell count, so every
      occupied cell gets the same share.
    - ``marginal``: both 1-D histograms (valence and arousal) flat over their occupied
      bins, found by iterative proportional fitting on the 20x20 table (see
      ``_ipf_uniform_marginals``). Chosen over "mean of 1/count_v and 1/count_a", which
      flattens neither marginal; IPF flattens both exactly whenever that is possible and
      otherwise changes the joint shape least.

    Rows with NaN in either value weigh 0; the weights sum to the number of known rows.
    """
    v_bin, a_bin, known = _va_bins(va, bins)
    cell_weight = va_cell_weights(bin_histogram(va, "joint", bins=bins), mode, ipf_iterations, ipf_tol)
    weight = np.zeros(len(known))
    weight[known] = cell_weight[v_bin[known], a_bin[known]]
    return weight


def va_cell_weights(table, mode: str = "joint", ipf_iterations: int = 200, ipf_tol: float = 1e-6) -> np.ndarray:
    """The weight of one row in each [valence bin, arousal bin] cell, from the joint bin
    counts ``table`` (see ``va_balanced_weights``), scaled so that the rows' weights sum
    to their number: ``(table * weights).sum() == table.sum()``."""
    if mode not in VA_MODES:
        raise ValueError(f"unknown VA balancing mode {mode!r}: use one of {VA_MODES}")
    table = np.asarray(table, dtype=np.float64)
    if table.sum() == 0:
        raise ValueError("no row with both valence and arousal known: nothing to balance")
    if mode == "joint":
        cell_weight = np.divide(1.0, table, out=np.zeros_like(table), where=table > 0)
    else:
        r, c = _ipf_uniform_marginals(table, ipf_iterations, ipf_tol)
        cell_weight = np.where(table > 0, r[:, None] * c[None, :], 0.0)
    return cell_weight * (table.sum() / (table * cell_weight).sum())


# --- reference-style downsampling ----------------------------------------------------
def downsample_every(mask_or_index, k: int) -> np.ndarray:
    """Keep every k-th row of a class, in row order: the rows of rank 0, k, 2k, ...

    ``mask_or_index`` is a boolean mask over all rows (True for the class) or the row
    positions of the class. Returns the kept row positions (int64).
    """
    if k < 1:
        raise ValueError(f"downsampling step must be >= 1, got {k}")
    x = np.asarray(mask_or_index)
    positions = np.flatnonzero(x) if x.dtype == bool else x.astype(np.int64).reshape(-1)
    return positions[::k].astype(np.int64)


def downsample_classes(classes, every: Mapping[int, int]) -> np.ndarray:
    """Row positions kept when class k keeps every ``every[k]``-th row and other rows
    (including unknown -1) are all kept; sorted. The reference's EXPR setting on
    Aff-Wild2 is ``{0: 10, 4: 2, 5: 2}`` (Neutral /10, Happiness and Sadness /2)."""
    c = np.asarray(classes)
    keep = ~np.isin(c, list(every))
    kept = [np.flatnonzero(keep)] + [downsample_every(c == k, step) for k, step in every.items()]
    return np.sort(np.concatenate(kept)).astype(np.int64)


def downsample_by(n: int, factor: int) -> np.ndarray:
    """Row positions 0, factor, 2 factor, ... of n rows (the reference's VA /5)."""
    if factor < 1:
        raise ValueError(f"downsampling factor must be >= 1, got {factor}")
    return np.arange(0, n, factor, dtype=np.int64)
