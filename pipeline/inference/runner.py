"""Running models over an index, and scoring the predictions with the ABAW metrics."""
from __future__ import annotations

import numpy as np
import torch

from pipeline.core.index import FrameIndex, eval_batches
from pipeline.core.labels import head_sizes, n_logits, va_centres
from pipeline.core.schema import LabelSchema
from pipeline.inference.outputs import outputs
from pipeline.training.models import load_checkpoint, va_centres_of


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
    def empty(model, k):  # an index without frames: arrays of the model's widths
        return np.zeros((0, {**head_sizes(model.schema), "VA": 2, "logits": n_logits(model.schema)}[k]), np.float32)

    return {name: {k: torch.cat(v).numpy() if v else empty(models[name][0], k) for k, v in p.items()}
            for name, p in parts.items()}


def load_models(paths: dict[str, str], device: torch.device,
                schema: LabelSchema | None = None) -> dict[str, tuple[torch.nn.Module, str]]:
    """``{name: (model, va_centres)}`` of the checkpoints ``{name: path}`` (of ``schema``
    when given), as :func:`predict_many` takes them."""
    models = {}
    for name, path in paths.items():
        model, ckpt = load_checkpoint(path, device, schema)
        models[name] = (model, va_centres_of(ckpt))
    return models


def predict(model: torch.nn.Module, index: FrameIndex, device: torch.device, batch: int = 128,
            centres: str = "centres", progress=None) -> dict[str, np.ndarray]:
    """Probabilities and VA expectations for every frame of ``index``, in index order:
    ``{"AU": [n, AUs] sigmoid, "EXPR": [n, classes] softmax, "VA": [n, 2], "logits": [n, all]}``."""
    return predict_many({"model": (model, centres)}, index, device, batch, progress)["model"]
