"""Running a model over an index, and scoring the predictions with the ABAW metrics."""
from __future__ import annotations

import numpy as np
import torch

from pipeline import metrics
from pipeline.data import FrameIndex, eval_batches
from pipeline.labels import va_centres
from pipeline.losses import va_expectation


@torch.no_grad()
def predict(model: torch.nn.Module, index: FrameIndex, device: torch.device, batch: int = 128,
            centres: str = "centres", progress=None) -> dict[str, np.ndarray]:
    """Probabilities and VA expectations for every frame of ``index``, in index order:
    ``{"AU": [n,8] sigmoid, "EXPR": [n,7] softmax, "VA": [n,2], "logits": [n,55]}``."""
    was_training = model.training
    model.eval()
    c = torch.as_tensor(va_centres(centres), dtype=torch.float32, device=device)
    au, expr, va, logits = [], [], [], []
    for x, _ in eval_batches(index, batch):
        out = model(x.to(device, memory_format=torch.channels_last))  # the faster layout for convolutions
        au.append(torch.sigmoid(out["AU"]).cpu())
        expr.append(torch.softmax(out["EXPR"], dim=1).cpu())
        va.append(va_expectation(out["VA"], c).cpu())
        logits.append(torch.cat([out["AU"], out["EXPR"], out["VA"]], dim=1).cpu())
        if progress is not None:
            progress.update(len(x))
    model.train(was_training)
    cat = lambda xs, d: torch.cat(xs).numpy() if xs else np.zeros((0, d), np.float32)  # noqa: E731
    return {"AU": cat(au, 8), "EXPR": cat(expr, 7), "VA": cat(va, 2), "logits": cat(logits, 55)}


def score(index: FrameIndex, preds: dict[str, np.ndarray], au_thresholds=0.5) -> dict:
    """ABAW metrics of ``preds`` against the index's labels; a task without labels is None."""
    au = metrics.au_metrics(index.au, preds["AU"], au_thresholds)
    expr = metrics.expr_metrics(index.expr, preds["EXPR"])
    va = metrics.va_metrics(index.va, preds["VA"])
    result = {"AU": au, "EXPR": expr, "VA": va}
    result["total"] = metrics.abaw_total(result)
    return result
