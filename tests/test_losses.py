"""Losses against hand-computed values and independent numpy implementations."""
import math

import numpy as np
import pytest
import torch

from pipeline.core import labels as L
from pipeline.training import losses
from pipeline.core.schema import ABAW2020, ABAW2022

SIZES = L.head_sizes(ABAW2020)

# --- independent numpy references (written from the paper's equations, not from losses.py) --


def np_log_softmax(x):
    x = np.asarray(x, dtype=np.float64)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def np_bce(target, prob):
    return -(target * np.log(prob) + (1 - target) * np.log(1 - prob))


def np_ccc(x, y):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    rho = np.corrcoef(x, y)[0, 1]
    return 2 * rho * x.std() * y.std() / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


def np_va_loss(logits, va, centres):
    """Eq. 9 per dimension over known rows, summed over both dimensions."""
    logits = np.asarray(logits, np.float64).reshape(len(logits), 2, 20)
    total = 0.0
    for d in range(2):
        known = ~np.isnan(va[:, d])
        log_p = np_log_softmax(logits[known, d])
        # the bins written out from the definition: 20 bins of width 0.1 over [-1, 1]
        bins = np.minimum(np.floor((va[known, d] + 1) / 0.1 + 1e-9).astype(int), 19)
        ce = -log_p[np.arange(known.sum()), bins].mean()
        expectation = np.exp(log_p) @ centres
        total += ce + 1 - np_ccc(expectation, va[known, d])
    return total


def np_soft_ce(student, teacher, T):
    target = np.exp(np_log_softmax(np.asarray(teacher) / T))
    return -(target * np_log_softmax(np.asarray(student) / T)).sum(-1)


def np_distillation(student, teacher, task, T):
    s, t = np.asarray(student, np.float64), np.asarray(teacher, np.float64)
    if task == "AU":
        return np_bce(np_sigmoid(t), np_sigmoid(s)).sum(1).mean()
    if task == "EXPR":
        return np_soft_ce(s, t, T).mean()
    return np_soft_ce(s.reshape(-1, 2, 20), t.reshape(-1, 2, 20), T).sum(1).mean()


def t(x, dtype=torch.float64, grad=False):
    return torch.tensor(x, dtype=dtype, requires_grad=grad)


def random_outputs(gen, batch):
    return {task: torch.randn(batch, n, generator=gen, dtype=torch.float64, requires_grad=True)
            for task, n in SIZES.items()}


# --- CCC ----------------------------------------------------------------------------------


def test_ccc_hand_values():
    # x = [0, 1], y = [0, 2]: means .5 and 1, variances .25 and 1, covariance .5
    # -> 2 * .5 / (.25 + 1 + .25) = 2/3
    assert losses.ccc(t([0.0, 1.0]), t([0.0, 2.0])).item() == pytest.approx(2 / 3, abs=1e-7)
    assert losses.ccc(t([1.0, 2.0, 3.0]), t([1.0, 2.0, 3.0])).item() == pytest.approx(1.0, abs=1e-7)
    assert losses.ccc(t([1.0, 2.0, 3.0]), t([3.0, 2.0, 1.0])).item() == pytest.approx(-1.0, abs=1e-7)


def test_ccc_matches_corrcoef_formula():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=50), rng.normal(0.3, 2.0, size=50) + rng.normal(size=50)
    assert losses.ccc(t(x), t(y)).item() == pytest.approx(np_ccc(x, y), abs=1e-7)


@pytest.mark.parametrize("x, y", [
    ([0.4], [0.4]),            # batch of one, equal
    ([0.4], [-0.2]),           # batch of one, different
    ([0.3, 0.3, 0.3], [0.3, 0.3, 0.3]),   # constant and identical
    ([0.3, 0.3, 0.3], [0.1, 0.5, 0.9]),   # constant prediction, varying target
    ([0.1, 0.5, 0.9], [-0.7, -0.7, -0.7]),  # varying prediction, constant target
])
def test_ccc_degenerate_inputs_give_zero_and_finite_gradients(x, y):
    xt = t(x, grad=True)
    value = losses.ccc(xt, t(y))
    value.backward()
    assert value.item() == pytest.approx(0.0, abs=1e-6)
    assert torch.isfinite(xt.grad).all()


# --- supervision --------------------------------------------------------------------------


def test_au_bce_hand_value_and_unknown_ignored():
    logits = torch.zeros(3, 8, dtype=torch.float64)
    logits[1, 1] = math.log(3)            # sigmoid = 0.75
    labels = torch.full((3, 8), -1, dtype=torch.int64)
    labels[0, 0] = 1                      # -log(0.5) = log 2
    labels[1, 1] = 0                      # -log(1 - 0.75) = log 4
    # instance 2 has no known AU: left out of the mean
    expected = (math.log(2) + math.log(4)) / 2
    assert losses.au_bce_loss(logits, labels).item() == pytest.approx(expected, abs=1e-12)

    changed = logits.clone()
    changed[0, 3] = 50.0                  # unknown entries: any value, even extreme ones
    changed[2] = -80.0
    changed[1, 7] = float("inf")
    leaf = changed.clone().requires_grad_(True)
    loss = losses.au_bce_loss(leaf, labels)
    loss.backward()
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    assert torch.isfinite(leaf.grad).all()
    assert leaf.grad[2].abs().sum() == 0 and leaf.grad[0, 3] == 0


def test_au_bce_sums_over_aus_against_numpy():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(5, 8))
    labels = rng.integers(-1, 2, size=(5, 8))
    labels[4] = -1
    known = labels != -1
    per_entry = np_bce(labels.clip(0), np_sigmoid(logits))
    expected = np.where(known, per_entry, 0).sum(1)[known.any(1)].mean()
    assert losses.au_bce_loss(t(logits), torch.tensor(labels)).item() == pytest.approx(expected, abs=1e-10)


def test_au_bce_nothing_known_is_zero_with_grad():
    logits = t(np.ones((2, 8)), grad=True)
    loss = losses.au_bce_loss(logits, torch.full((2, 8), -1))
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None and (logits.grad == 0).all()


def test_expr_ce_hand_value_and_unknown_rows():
    logits = torch.zeros(3, 7, dtype=torch.float64)
    logits[1] = t([0, 0, 0, 0, math.log(7), 0, 0])   # p(Happiness) = 7 / 13
    labels = torch.tensor([3, 4, -1])
    expected = (math.log(7) + math.log(13 / 7)) / 2
    assert losses.expr_ce_loss(logits, labels).item() == pytest.approx(expected, abs=1e-12)
    logits[2] = 100.0                     # unknown row: irrelevant
    assert losses.expr_ce_loss(logits, labels).item() == pytest.approx(expected, abs=1e-12)
    none_known = losses.expr_ce_loss(logits.requires_grad_(True), torch.tensor([-1, -1, -1]))
    assert none_known.item() == 0.0 and none_known.requires_grad


def test_va_expectation_uses_centres():
    logits = torch.zeros(2, 40, dtype=torch.float64)
    logits[0, 19] = 1000.0                # valence all in the last bin
    logits[0, 20] = 1000.0                # arousal all in the first bin
    expected_uniform = L.VA_BIN_CENTRES.mean()  # 0 for the true centres
    pred = losses.va_expectation(logits)
    np.testing.assert_allclose(pred.numpy(), [[0.95, -0.95], [expected_uniform] * 2], atol=1e-12)
    ref = losses.va_expectation(logits, L.va_centres("reference"))
    np.testing.assert_allclose(ref[0].numpy(), [1.0, -1.0], atol=1e-12)


def test_va_loss_uniform_logits_hand_value():
    # uniform bins: CE = log 20 per dimension; constant expectation -> CCC 0 -> 1 - CCC = 1
    labels = t([[0.5, -0.3], [-0.2, 0.9], [0.0, 0.1]])
    loss = losses.va_loss(torch.zeros(3, 40, dtype=torch.float64), labels)
    assert loss.item() == pytest.approx(2 * (math.log(20) + 1), abs=1e-6)


def test_va_loss_against_numpy_with_unknown_rows():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(6, 40)) * 2
    va = rng.uniform(-1, 1, size=(6, 2))
    va[0] = [1.0, -1.0]                   # the range's ends
    va[2] = np.nan
    va[4, 1] = np.nan                     # one dimension unknown only
    for kind in ("centres", "reference"):
        centres = L.va_centres(kind)
        got = losses.va_loss(t(logits), t(va), centres).item()
        assert got == pytest.approx(np_va_loss(logits, va, centres), abs=1e-6)
    terms = losses.va_loss_terms(t(logits), t(va))
    assert set(terms) == {"valence_ce", "valence_ccc_loss", "arousal_ce", "arousal_ccc_loss"}


def test_ccc_weighting_paper_divides_the_ccc_term_by_the_known_rows():
    # uniform logits: CE log 20 and 1 - CCC = 1 per dimension; valence known on 3 rows,
    # arousal on 2: the paper's weighting gives 1/3 and 1/2 of the CCC term.
    labels = t([[0.5, -0.3], [-0.2, np.nan], [0.0, 0.1]])
    logits = torch.zeros(3, 40, dtype=torch.float64)
    authors = losses.va_loss(logits, labels)
    paper = losses.va_loss(logits, labels, ccc_weighting="paper")
    assert authors.item() == pytest.approx(2 * math.log(20) + 2, abs=1e-9)
    assert paper.item() == pytest.approx(2 * math.log(20) + 1 / 3 + 1 / 2, abs=1e-9)
    with pytest.raises(ValueError, match="ccc_weighting"):
        losses.va_loss(logits, labels, ccc_weighting="mean")


def test_the_papers_lambda_and_temperature_are_the_students_defaults():
    # Eq. 11-12 temperature and Eq. 14 weight of the ground truth (grid-searched in the paper):
    # one definition, the student's parameters (the loss functions take them explicitly)
    from pipeline.training.params import StudentParams

    assert StudentParams().temperature == 1.5 and StudentParams().lam == 0.6


def test_va_loss_ignores_unknown_rows():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(4, 40))
    va = np.array([[0.1, 0.2], [np.nan, np.nan], [-0.5, 0.7], [0.9, -0.9]])
    base = losses.va_loss(t(logits), t(va)).item()
    logits[1] = rng.normal(size=40) * 10
    assert losses.va_loss(t(logits), t(va)).item() == pytest.approx(base, abs=1e-12)


def test_va_loss_batch_of_one_and_constant_target_are_finite():
    logits = t(np.random.default_rng(4).normal(size=(1, 40)), grad=True)
    loss = losses.va_loss(logits, t([[0.3, -0.4]]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    # a batch whose targets are all equal and whose predictions are all equal
    logits = torch.zeros(3, 40, dtype=torch.float64, requires_grad=True)
    loss = losses.va_loss(logits, t([[0.3, 0.3]] * 3))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    nothing = losses.va_loss(logits, t([[np.nan, np.nan]] * 3))
    assert nothing.item() == 0.0 and nothing.requires_grad


def test_supervision_loss_dispatch_and_dict_labels():
    gen = torch.Generator().manual_seed(0)
    outputs = random_outputs(gen, 4)
    batch_labels = {"AU": torch.tensor([[1, 0, -1, 1, 0, 0, 1, -1]] * 4),
                    "EXPR": torch.tensor([0, 6, -1, 2]),
                    "VA": t([[0.1, 0.2], [0.3, -0.5], [np.nan, np.nan], [-0.9, 0.4]])}
    au_logits, au = outputs["AU"].detach().numpy(), batch_labels["AU"].numpy()
    known = au >= 0
    np_au = np.where(known, np_bce(np.clip(au, 0, 1), np_sigmoid(au_logits)), 0.0).sum(1).mean()
    assert losses.supervision_loss(outputs, batch_labels, "AU").item() == pytest.approx(np_au, abs=1e-9)
    log_p, expr = np_log_softmax(outputs["EXPR"].detach().numpy()), batch_labels["EXPR"].numpy()
    np_expr = -np.mean([log_p[i, c] for i, c in enumerate(expr) if c >= 0])
    assert losses.supervision_loss(outputs, batch_labels["EXPR"], "EXPR").item() == pytest.approx(np_expr, abs=1e-9)
    assert losses.supervision_loss(outputs, batch_labels, "VA").item() == pytest.approx(
        np_va_loss(outputs["VA"].detach().numpy(), batch_labels["VA"].numpy(), L.VA_BIN_CENTRES), abs=1e-6)
    with pytest.raises(ValueError):
        losses.supervision_loss(outputs, batch_labels, "POSE")


# --- distillation -------------------------------------------------------------------------


@pytest.mark.parametrize("schema", [ABAW2020, ABAW2022], ids=lambda s: s.name)
@pytest.mark.parametrize("task", L.TASKS)
def test_distillation_against_numpy(task, schema):
    rng = np.random.default_rng(5)
    n = L.head_sizes(schema)[task]
    s, te = rng.normal(size=(3, n)), rng.normal(size=(3, n)) * 2
    got = losses.distillation_loss(t(s), t(te), task, T=1.5).item()
    assert got == pytest.approx(np_distillation(s, te, task, 1.5), abs=1e-10)


def test_distillation_expr_hand_value():
    # teacher uniform, student one-hot-ish: CE = -mean(log softmax(s / T))
    student = t([[3.0, 0, 0, 0, 0, 0, 0]])
    expected = -np.mean(np_log_softmax(np.array([2.0, 0, 0, 0, 0, 0, 0])))  # s / T with T = 1.5
    got = losses.distillation_loss(student, torch.zeros(1, 7, dtype=torch.float64), "EXPR", T=1.5)
    assert got.item() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("task", L.TASKS)
def test_distillation_is_minimal_at_the_teacher(task):
    rng = np.random.default_rng(6)
    teacher = t(rng.normal(size=(4, SIZES[task])) * 2)
    at_teacher = losses.distillation_loss(teacher.clone(), teacher, task, T=1.5)
    # the minimum is the teacher's (soft) entropy
    if task == "AU":
        p = np_sigmoid(teacher.numpy())
        entropy = np_bce(p, p).sum(1).mean()
    elif task == "EXPR":
        p = np.exp(np_log_softmax(teacher.numpy() / 1.5))
        entropy = -(p * np.log(p)).sum(1).mean()
    else:
        p = np.exp(np_log_softmax(teacher.numpy().reshape(4, 2, 20) / 1.5))
        entropy = -(p * np.log(p)).sum(-1).sum(1).mean()
    assert at_teacher.item() == pytest.approx(entropy, abs=1e-10)
    for _ in range(5):
        moved = teacher + t(rng.normal(size=teacher.shape)) * 0.3
        assert losses.distillation_loss(moved, teacher, task, T=1.5).item() > at_teacher.item()
    # and the gradient vanishes there
    student = teacher.clone().requires_grad_(True)
    losses.distillation_loss(student, teacher, task, T=1.5).backward()
    assert student.grad.abs().max().item() < 1e-12


def test_distillation_does_not_touch_the_teacher_and_accepts_float16():
    teacher = torch.randn(2, 7, requires_grad=True)
    student = torch.randn(2, 7, requires_grad=True)
    losses.distillation_loss(student, teacher, "EXPR", T=1.5).backward()
    assert teacher.grad is None and student.grad is not None
    half = losses.distillation_loss(student.detach(), teacher.detach().half(), "EXPR", T=1.5)
    assert half.dtype == torch.float32


# --- batch losses -------------------------------------------------------------------------


def make_batches(seed, batch=3):
    gen = torch.Generator().manual_seed(seed)
    outputs = {task: random_outputs(gen, batch) for task in L.TASKS}
    teacher = {task: {h: v.detach() * 1.3 + 0.1 for h, v in random_outputs(gen, batch).items()}
               for task in L.TASKS}
    labels = {"AU": torch.tensor([[1, 0, 0, 1, 0, 0, 1, 1],
                                  [0, 0, 1, 0, 1, -1, 0, 0],
                                  [1, 1, 0, 0, 0, 0, 0, 1]]),
              "EXPR": torch.tensor([4, 0, 6]),
              "VA": t([[0.2, 0.5], [-0.6, 0.1], [0.45, -0.3]])}
    return outputs, labels, teacher


def np_supervision(outputs, labels, task):
    logits = outputs[task].detach().numpy()
    y = labels[task].numpy()
    if task == "AU":
        known = y != -1
        return np.where(known, np_bce(y.clip(0), np_sigmoid(logits)), 0).sum(1).mean()
    if task == "EXPR":
        return -np_log_softmax(logits)[np.arange(len(y)), y].mean()
    return np_va_loss(logits, y, L.VA_BIN_CENTRES)


def test_teacher_loss_is_weighted_sum_of_own_task_losses():
    outputs, labels, _ = make_batches(0)
    weights = {"AU": 8.0, "EXPR": 1.0, "VA": 0.5}
    total, parts = losses.teacher_loss(outputs, labels, weights)
    expected = sum(weights[task] * np_supervision(outputs[task], labels, task) for task in L.TASKS)
    assert total.item() == pytest.approx(expected, abs=1e-6)
    assert set(parts) == set(L.TASKS)
    assert parts["EXPR"].item() == pytest.approx(np_supervision(outputs["EXPR"], labels, "EXPR"), abs=1e-10)
    # the other heads of a task batch are not part of the loss
    total.backward()
    assert outputs["AU"]["EXPR"].grad is None and (outputs["AU"]["AU"].grad != 0).any()


def test_teacher_loss_single_task():
    outputs, labels, _ = make_batches(1)
    total, parts = losses.teacher_loss({"EXPR": outputs["EXPR"]}, labels)
    assert list(parts) == ["EXPR"]
    assert total.item() == pytest.approx(np_supervision(outputs["EXPR"], labels, "EXPR"), abs=1e-10)


@pytest.mark.parametrize("lam", [0.6, 1.0, 0.0])
def test_student_loss_against_numpy(lam):
    outputs, labels, teacher = make_batches(2)
    weights = {"AU": 2.0, "VA": 0.5}       # EXPR defaults to 1
    total, parts = losses.student_loss(outputs, labels, teacher, lam=lam, T=1.5, task_weights=weights)
    expected = 0.0
    for batch_task in L.TASKS:
        for head in L.TASKS:
            distil = np_distillation(outputs[batch_task][head].detach().numpy(),
                                     teacher[batch_task][head].numpy(), head, 1.5)
            if head == batch_task:
                term = lam * np_supervision(outputs[batch_task], labels, head) + (1 - lam) * distil
            else:
                term = distil
            expected += weights.get(head, 1.0) * term
    assert total.item() == pytest.approx(expected, abs=1e-6)
    # 3 supervision terms, the distillation terms (the labelled head's only when lam < 1)
    # and one weighted total per task batch
    assert len(parts) == 3 + (9 if lam < 1 else 6) + 3
    assert "VA/AU/distillation" in parts and "AU/AU/supervision" in parts
    assert sum(parts[t].item() for t in L.TASKS) == pytest.approx(total.item(), abs=1e-9)


def test_student_without_unlabelled_distillation_is_the_teacher_at_lam_one():
    outputs, labels, teacher = make_batches(5)
    weights = {"AU": 2.0, "VA": 0.5}
    student, parts = losses.student_loss(outputs, labels, teacher, lam=1.0, T=1.5, task_weights=weights,
                                         distill_unlabelled=False)
    assert not any(k.endswith("distillation") for k in parts)
    assert student.item() == losses.teacher_loss(outputs, labels, weights)[0].item()  # exactly
    # lam < 1: the labelled heads only, each lam * supervision + (1 - lam) * distillation
    total, parts = losses.student_loss(outputs, labels, teacher, lam=0.6, T=1.5, distill_unlabelled=False)
    expected = sum(0.6 * np_supervision(outputs[t], labels, t)
                   + 0.4 * np_distillation(outputs[t][t].detach().numpy(), teacher[t][t].numpy(), t, 1.5)
                   for t in L.TASKS)
    assert total.item() == pytest.approx(expected, abs=1e-6)


def test_student_loss_lam_one_is_pure_supervision_on_the_labelled_head():
    outputs, labels, teacher = make_batches(3)
    total, parts = losses.student_loss(outputs, labels, teacher, lam=1.0, T=1.5)
    teacher_total, _ = losses.teacher_loss(outputs, labels)
    others = sum(value for key, value in parts.items()
                 if key.endswith("distillation") and key.split("/")[0] != key.split("/")[1])
    assert total.item() == pytest.approx(teacher_total.item() + others.item(), abs=1e-10)
    # the labelled head's gradient then equals the teacher loss's gradient
    total.backward()
    grad_student = outputs["EXPR"]["EXPR"].grad.clone()
    outputs2, _, _ = make_batches(3)
    losses.teacher_loss(outputs2, labels)[0].backward()
    torch.testing.assert_close(grad_student, outputs2["EXPR"]["EXPR"].grad)


def test_student_equal_to_teacher_on_unlabelled_heads_leaves_only_entropy():
    outputs, labels, teacher = make_batches(4)
    for batch_task in L.TASKS:
        for head in L.TASKS:
            if head != batch_task:
                outputs[batch_task][head] = teacher[batch_task][head].clone().requires_grad_(True)
    total, _ = losses.student_loss(outputs, labels, teacher, lam=0.6, T=1.5)
    total.backward()
    assert outputs["AU"]["EXPR"].grad.abs().max().item() < 1e-12
    assert torch.isfinite(total)
