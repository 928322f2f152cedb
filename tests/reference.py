"""Independent reference implementations for the metric tests: scikit-learn and numpy,
written the way the ABAW organisers describe the metrics (no code shared with pipeline/)."""
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from pipeline.core.labels import AU_NAMES, EXPR_NAMES


def corrcoef_ccc(x, y):
    """Eq. 8 written with Pearson's rho and population standard deviations; a constant
    input has no rho, but then the covariance, hence the CCC, is 0."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.std() == 0 or y.std() == 0:
        return 0.0
    rho = np.corrcoef(x, y)[0, 1]
    return 2 * rho * x.std() * y.std() / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


def sklearn_au(labels, probs, thresholds, names=AU_NAMES):
    """AU metrics the ABAW way, entry by entry with sklearn on the known entries."""
    pred = (probs >= thresholds).astype(int)
    known = labels != -1
    per_au = {}
    for j, name in enumerate(names):
        k = known[:, j]
        per_au[name] = f1_score(labels[k, j], pred[k, j], zero_division=0) if k.any() else None
    f1 = np.mean([v for v in per_au.values() if v is not None])
    acc = accuracy_score(labels[known], pred[known])
    return {"score": 0.5 * f1 + 0.5 * acc, "f1": f1, "acc": acc, "per_au_f1": per_au}


def sklearn_expr(labels, probs, names=EXPR_NAMES):
    known = labels != -1
    y, p = labels[known], probs[known].argmax(1)
    f1 = f1_score(y, p, average="macro")
    acc = accuracy_score(y, p)
    return {"score": 0.67 * f1 + 0.33 * acc, "f1": f1, "acc": acc,
            "per_class_f1": dict(zip(names, f1_score(y, p, labels=range(len(names)), average=None,
                                                     zero_division=0))),
            "confusion": confusion_matrix(y, p, labels=range(len(names))).tolist()}


def assert_close_dicts(got, expected, tol=1e-9):
    for key, value in expected.items():
        if isinstance(value, dict):
            assert_close_dicts(got[key], value, tol)
        elif value is None:
            assert got[key] is None, key
        elif isinstance(value, list):
            assert got[key] == value, key
        else:
            assert got[key] == pytest.approx(value, abs=tol), key


def sklearn_evaluation(rows, aus=AU_NAMES, classes=EXPR_NAMES):
    """The evaluation of one model's rows of a validation-prediction table (AUs and classes
    of its schema)."""
    aus = list(aus)
    au, thr = rows[aus].to_numpy(), rows[[f"thr_{a}" for a in aus]].to_numpy()
    result = {"AU": sklearn_au(au, rows[[f"p_{a}" for a in aus]].to_numpy(), thr, names=aus),
              "EXPR": sklearn_expr(rows["expr"].to_numpy(), rows[[f"p_{e}" for e in classes]].to_numpy(), classes)}
    va = {}
    for name in ("valence", "arousal"):
        known = rows[name].notna().to_numpy()
        va[f"ccc_{name}"] = corrcoef_ccc(rows[name].to_numpy(np.float64)[known],
                                         rows[f"pred_{name}"].to_numpy(np.float64)[known])
    va["ccc_mean"] = (va["ccc_valence"] + va["ccc_arousal"]) / 2
    result["VA"] = va
    return result


def au_column(frames, au: str) -> np.ndarray:
    """A frame table's AU column as labels: -1 (unknown) where the source has no such column."""
    return frames[au].to_numpy() if au in frames else np.full(len(frames), -1, np.int8)
