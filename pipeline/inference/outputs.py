"""What a network's outputs mean: AU sigmoids, EXPR softmaxes and the VA expectation over
the bins (Eq. 7), and the ensemble's average of its members' (docs/method.md, "Ensemble").

Members are averaged as probabilities: AU sigmoids, EXPR softmaxes, and each member's VA
expectation (the authors' submission code does the same; their API averages raw logits
instead). The spread across members is the per-frame uncertainty.
"""
from __future__ import annotations

import numpy as np
import torch

from pipeline.core.labels import TASKS, VA_BIN_CENTRES, va_dims


def centres_tensor(centres, like: torch.Tensor) -> torch.Tensor:
    """The 20 VA bin values as a tensor on ``like``'s device and dtype (default: true centres)."""
    values = VA_BIN_CENTRES if centres is None else centres
    if isinstance(values, torch.Tensor):
        return values.to(device=like.device, dtype=like.dtype)
    return torch.as_tensor(np.asarray(values), dtype=like.dtype, device=like.device)


def va_expectation(logits: torch.Tensor, centres=None) -> torch.Tensor:
    """Eq. 7: predicted [valence, arousal] = sum(softmax(bin logits) * centres), shape [B, 2].

    ``centres`` defaults to the true bin centres (labels.VA_BIN_CENTRES); pass
    ``labels.va_centres("reference")`` for the authors' linspace(-1, 1, 20).
    """
    probs = torch.softmax(va_dims(logits), dim=-1)
    return probs @ centres_tensor(centres, logits)


def outputs(model: torch.nn.Module, x: torch.Tensor, centres: torch.Tensor) -> dict[str, torch.Tensor]:
    """One batch of evaluation views through ``model`` (in eval mode): AU sigmoids, EXPR
    softmax, VA expectations over the bin values ``centres``, and the 55 raw logits (CPU)."""
    out = model(x)
    return {"AU": torch.sigmoid(out["AU"]).cpu(), "EXPR": torch.softmax(out["EXPR"], dim=1).cpu(),
            "VA": va_expectation(out["VA"], centres).cpu(),
            "logits": torch.cat([out["AU"], out["EXPR"], out["VA"]], dim=1).cpu()}


def combine(member_predictions: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The ensemble's predictions from its members' (each as ``runner.predict`` gives):
    mean AU and EXPR probabilities and mean VA, plus the spread across members,
    ``uncertainty_AU`` / ``_EXPR`` (the members' standard deviation of each probability,
    averaged over AUs or classes) and ``uncertainty_VA`` [n, 2]."""
    if not member_predictions:
        raise ValueError("an ensemble needs at least one member")
    out = {}
    for task in TASKS:
        stack = np.stack([p[task] for p in member_predictions]).astype(np.float64)
        out[task] = stack.mean(axis=0).astype(np.float32)
        spread = stack.std(axis=0)
        out[f"uncertainty_{task}"] = (spread if task == "VA" else spread.mean(axis=1)).astype(np.float32)
    return out
