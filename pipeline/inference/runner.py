"""Running models over an index, and scoring the predictions with the ABAW metrics."""
from __future__ import annotations

import numpy as np
import torch

from pipeline.core.index import FrameIndex, eval_batches
from pipeline.core.labels import va_centres
from pipeline.inference.outputs import outputs
from pipeline.training.models import load_checkpoint


@torch.no_grad()
def predict_many(models: dict[str, tuple[torch.nn.Module, str]], index: FrameIndex, device: torch.device,
                 batch: int = 128, progress=None) -> dict[str, dict[str, np.ndarray]]:
    """:func:`predict` for several ``{name: (model, va_centres)}`` in one pass over the
    faces: each batch is read and resized once, whatever the number of models."""
    was_training = {name: model.training for name, (model, _) in models.items()}
    centres = {name: torch.as_tensor(va_centres(c), dtype=torch.float32, device=device)
               for name, (_, c) in models.items()}
    parts = {name: {"AU": [], "EXPR": [], "VA": [], "logits": []} for name in models}
    for model, _ in models.values():
        model.eval()
    for x, _ in eval_batches(index, batch):
        x = x.to(device, memory_format=torch.channels_last)  # the faster layout for convolutions
        for name, (model, _) in models.items():
            for k, v in outputs(model, x, centres[name]).items():
                parts[name][k].append(v)
        if progress is not None:
            progress.update(len(x))
    for name, (model, _) in models.items():
        model.train(was_training[name])
    widths = {"AU": 8, "EXPR": 7, "VA": 2, "logits": 55}
    return {name: {k: torch.cat(v).numpy() if v else np.zeros((0, widths[k]), np.float32) for k, v in p.items()}
            for name, p in parts.items()}


def load_models(paths: dict[str, str], device: torch.device) -> dict[str, tuple[torch.nn.Module, str]]:
    """``{name: (model, va_centres)}`` of the checkpoints ``{name: path}``, as
    :func:`predict_many` takes them."""
    models = {}
    for name, path in paths.items():
        model, ckpt = load_checkpoint(path, device)
        models[name] = (model, ckpt.get("train", {}).get("va_centres", "centres"))
    return models


def predict(model: torch.nn.Module, index: FrameIndex, device: torch.device, batch: int = 128,
            centres: str = "centres", progress=None) -> dict[str, np.ndarray]:
    """Probabilities and VA expectations for every frame of ``index``, in index order:
    ``{"AU": [n,8] sigmoid, "EXPR": [n,7] softmax, "VA": [n,2], "logits": [n,55]}``."""
    return predict_many({"model": (model, centres)}, index, device, batch, progress)["model"]
