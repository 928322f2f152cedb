"""Supervision and distillation losses of the paper (Eqs. 2-14), for incomplete labels.

Model outputs are a dict of logits per head: ``{"AU": [B, 8], "EXPR": [B, 7], "VA": [B, 40]}``
(VA = 20 valence bin logits, then 20 arousal bin logits). Labels follow the frame table's
convention (``pipeline.core.labels``): AU int ``[B, 8]`` with 1/0 and -1 unknown, EXPR int ``[B]``
with -1 unknown, VA float ``[B, 2]`` with NaN unknown. Unknown labels never contribute.

Reductions (docs/method.md, "Losses"). The paper sums over instances; we average the
per-instance terms, so their scale does not depend on the batch size:

- AU supervision: BCE summed over the known AUs of an instance, averaged over the
  instances with at least one known AU. Summing over AUs matches Eq. 2; the reference code
  averages over all 8 and multiplies by ``lambda_AU = 8`` instead, which is the same thing
  when all AUs are known, so the default task weights here are all 1.
- EXPR supervision: cross-entropy averaged over the instances with a known label.
- VA supervision, per dimension: CE on the 20 bins averaged over the known rows, plus
  ``1 - CCC`` computed once over those rows. The two dimensions are summed. Eq. 9 gives
  each instance 1/B of ``1 - CCC``, so averaged over the B instances the literal CCC term
  is ``(1 - CCC) / B``. By default (``ccc_weighting="authors"``) it is added whole, as the
  authors' code does: beside the batch-mean CE that weighs the CCC term B times what the
  literal Eq. 9/13 says. ``ccc_weighting="paper"`` divides it by B (the known rows).
- Distillation: averaged over all instances of the batch; AU summed over the 8 AUs, VA
  summed over the 2 dimensions, as in the supervision losses. No T^2 factor (neither the
  paper nor the reference code uses one).

Every loss returns a scalar tensor that is part of the autograd graph, also when nothing
is known (then it is ``0 * logits.sum()``: a zero with zero gradients, so that backward and
DistributedDataParallel see every head used).
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from pipeline.core.labels import AU_UNKNOWN, EXPR_UNKNOWN, TASKS, va_dims, va_to_bin
from pipeline.inference.outputs import va_expectation
from pipeline.evaluation.metrics import ccc_from_moments



def _zero_with_grad(logits: torch.Tensor) -> torch.Tensor:
    """A scalar 0 still connected to ``logits``, for batches where nothing is known."""
    return logits.sum() * 0.0


def ccc(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Concordance correlation coefficient of two 1-D tensors (population statistics), with
    gradients: ``pipeline.evaluation.metrics.ccc_from_moments`` on the batch's moments.

    A batch of one, or both inputs constant, gives 0 with zero gradient, so the loss
    ``1 - CCC`` is 1 there instead of NaN. (The reference code divides by unbiased standard
    deviations and gives NaN for a batch of one.)
    """
    x = x.reshape(-1)
    y = y.reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"ccc: shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    mean_x, mean_y = x.mean(), y.mean()
    dx, dy = x - mean_x, y - mean_y
    return ccc_from_moments(mean_x, mean_y, (dx * dx).mean(), (dy * dy).mean(), (dx * dy).mean())


# --- supervision --------------------------------------------------------------------------

def au_bce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eq. 4 over known AUs: BCE summed over an instance's known AUs, mean over instances.

    Instances without any known AU are left out of the mean; 0 (with grad) if none is known.
    """
    known = labels != AU_UNKNOWN
    instances = known.any(dim=1)
    if not instances.any():
        return _zero_with_grad(logits)
    target = torch.where(known, labels, torch.zeros_like(labels)).to(logits.dtype)
    per_entry = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    # where, not a multiplication by the mask: an unknown entry with an infinite logit
    # would otherwise turn into inf * 0 = NaN.
    per_entry = torch.where(known, per_entry, torch.zeros_like(per_entry))
    return per_entry.sum(dim=1)[instances].mean()


def expr_ce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eq. 5: cross-entropy over the instances with a known expression; 0 if none."""
    known = labels != EXPR_UNKNOWN
    if not known.any():
        return _zero_with_grad(logits)
    return F.cross_entropy(logits[known], labels[known].long())


CCC_WEIGHTINGS = ("authors", "paper")


def va_loss_terms(logits: torch.Tensor, labels: torch.Tensor, centres=None,
                  ccc_weighting: str = "authors") -> dict[str, torch.Tensor]:
    """The four VA supervision terms: ``{valence,arousal}_ce`` and ``{valence,arousal}_ccc_loss``.

    Each dimension uses its own known (non-NaN) rows: CE on the bin ``va_to_bin(y)``, and
    ``1 - CCC(y, expectation)`` over those rows, divided by their number with
    ``ccc_weighting="paper"`` (see the module docstring). A dimension without a known row
    gives zeros.
    """
    if ccc_weighting not in CCC_WEIGHTINGS:
        raise ValueError(f"unknown ccc_weighting {ccc_weighting!r}: use one of {CCC_WEIGHTINGS}")
    bins = torch.as_tensor(va_to_bin(labels.detach().cpu().numpy()), device=logits.device)
    dims = va_dims(logits)
    expectation = va_expectation(logits, centres)
    terms: dict[str, torch.Tensor] = {}
    for d, name in enumerate(("valence", "arousal")):
        known = ~torch.isnan(labels[:, d])
        if not known.any():
            terms[f"{name}_ce"] = _zero_with_grad(logits)
            terms[f"{name}_ccc_loss"] = _zero_with_grad(logits)
            continue
        terms[f"{name}_ce"] = F.cross_entropy(dims[known, d], bins[known, d])
        target = labels[known, d].to(logits.dtype)
        scale = 1.0 / int(known.sum()) if ccc_weighting == "paper" else 1.0
        terms[f"{name}_ccc_loss"] = scale * (1.0 - ccc(expectation[known, d], target))
    return terms


def va_loss(logits: torch.Tensor, labels: torch.Tensor, centres=None, ccc_weighting: str = "authors") -> torch.Tensor:
    """Eq. 9: for valence and arousal, bin CE plus (1 - CCC); the sum of both dimensions."""
    return sum(va_loss_terms(logits, labels, centres, ccc_weighting).values())


def supervision_loss(outputs: Mapping[str, torch.Tensor], labels, task: str, centres=None,
                     ccc_weighting: str = "authors") -> torch.Tensor:
    """The supervision loss of one task on its head's logits (Eqs. 4, 5, 9).

    ``labels`` is that task's label tensor, or a dict of label tensors per task (a batch
    carrying all three label sets, unknown where absent), from which ``labels[task]`` is used.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}: expected one of {TASKS}")
    if isinstance(labels, Mapping):
        labels = labels[task]
    logits = outputs[task]
    if task == "AU":
        return au_bce_loss(logits, labels)
    if task == "EXPR":
        return expr_ce_loss(logits, labels)
    return va_loss(logits, labels, centres, ccc_weighting)


# --- distillation -------------------------------------------------------------------------

def _soft_cross_entropy(student: torch.Tensor, teacher: torch.Tensor, T: float) -> torch.Tensor:
    """Per instance -sum softmax(t/T) * log_softmax(s/T) over the last dimension."""
    target = torch.softmax(teacher / T, dim=-1)
    return -(target * torch.log_softmax(student / T, dim=-1)).sum(dim=-1)


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, task: str,
                      T: float) -> torch.Tensor:
    """Eqs. 10-12 for one head, mean over the batch.

    - AU: BCE with target sigmoid(t) and prediction sigmoid(s), summed over the 8 AUs (no
      temperature, as in the paper and the reference code).
    - EXPR: CE(softmax(t/T), softmax(s/T)).
    - VA: the same CE on each 20-bin dimension, summed over valence and arousal.

    The teacher's logits are treated as constants (detached) and cast to the student's
    dtype, so float16 cached soft labels work. At s == t the loss equals the teacher's
    entropy, its minimum; it is not zero.
    """
    teacher = teacher.detach().to(student.dtype)
    if teacher.shape != student.shape:
        raise ValueError(f"distillation {task}: student {tuple(student.shape)} "
                         f"vs teacher {tuple(teacher.shape)}")
    if task == "AU":
        per_entry = F.binary_cross_entropy_with_logits(student, torch.sigmoid(teacher), reduction="none")
        return per_entry.sum(dim=1).mean()
    if task == "EXPR":
        return _soft_cross_entropy(student, teacher, T).mean()
    if task == "VA":
        return _soft_cross_entropy(va_dims(student), va_dims(teacher), T).sum(dim=1).mean()
    raise ValueError(f"unknown task {task!r}: expected one of {TASKS}")


# --- batch losses (Eqs. 13 and 14) ----------------------------------------------------------

def _weight(task_weights: Mapping[str, float] | None, task: str) -> float:
    return 1.0 if task_weights is None else float(task_weights.get(task, 1.0))


def teacher_loss(outputs_per_batch: Mapping[str, Mapping[str, torch.Tensor]],
                 labels_per_batch: Mapping, task_weights: Mapping[str, float] | None = None,
                 centres=None, ccc_weighting: str = "authors") -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 13: each task batch contributes only its own task's supervision loss.

    ``outputs_per_batch[task]`` is the model's output dict on the batch drawn for ``task``
    and ``labels_per_batch[task]`` its labels (see supervision_loss). Tasks missing from
    ``outputs_per_batch`` are skipped (single-task training). ``task_weights`` multiplies
    each task's term (default 1.0 each).

    Returns ``(total, parts)``; ``parts[task]`` is the unweighted, detached term, for logging.
    """
    total = None
    parts: dict[str, torch.Tensor] = {}
    for task in TASKS:
        if task not in outputs_per_batch:
            continue
        term = supervision_loss(outputs_per_batch[task], labels_per_batch[task], task, centres, ccc_weighting)
        parts[task] = term.detach()
        weighted = _weight(task_weights, task) * term
        total = weighted if total is None else total + weighted
    if total is None:
        raise ValueError("teacher_loss: no task batch given")
    return total, parts


def student_loss(outputs_per_batch: Mapping[str, Mapping[str, torch.Tensor]],
                 labels_per_batch: Mapping,
                 teacher_logits_per_batch: Mapping[str, Mapping[str, torch.Tensor]],
                 lam: float, T: float,
                 task_weights: Mapping[str, float] | None = None,
                 centres=None, ccc_weighting: str = "authors",
                 distill_unlabelled: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 14: on the batch drawn for task i, head i gets lam * supervision +
    (1 - lam) * distillation and every other head gets distillation alone.

    ``teacher_logits_per_batch[i]`` holds the teacher's logits per head for that batch.
    ``task_weights[h]`` multiplies every term of head h (default 1.0; the reference code
    weights nothing in the student). The total is the plain sum over batches and heads (the
    reference code divides it by 3: a constant scale). lam = 1 removes the teacher from the
    labelled head only; with ``distill_unlabelled=False`` the other heads get nothing (a
    control: lam = 1 then trains exactly as the teacher does).

    Returns ``(total, parts)``; parts are detached: ``parts[i]`` the weighted total of task
    i's batch, and the unweighted terms ``"<batch task>/<head>/supervision"`` and
    ``"<batch task>/<head>/distillation"``.
    """
    total = None
    parts: dict[str, torch.Tensor] = {}
    for batch_task in TASKS:
        if batch_task not in outputs_per_batch:
            continue
        outputs = outputs_per_batch[batch_task]
        teacher = teacher_logits_per_batch[batch_task]
        batch_total = None
        for head in TASKS:
            if head not in outputs or (head != batch_task and not distill_unlabelled):
                continue
            if head == batch_task:
                supervised = supervision_loss(outputs, labels_per_batch[batch_task], head, centres, ccc_weighting)
                parts[f"{batch_task}/{head}/supervision"] = supervised.detach()
                term = lam * supervised
                if lam < 1.0:
                    distil = distillation_loss(outputs[head], teacher[head], head, T)
                    parts[f"{batch_task}/{head}/distillation"] = distil.detach()
                    term = term + (1.0 - lam) * distil
            else:
                term = distillation_loss(outputs[head], teacher[head], head, T)
                parts[f"{batch_task}/{head}/distillation"] = term.detach()
            weighted = _weight(task_weights, head) * term
            batch_total = weighted if batch_total is None else batch_total + weighted
        parts[batch_task] = batch_total.detach()
        total = batch_total if total is None else total + batch_total
    if total is None:
        raise ValueError("student_loss: no task batch given")
    return total, parts
