"""The temporal model (docs/method.md, "CNN-RNN"): one bidirectional GRU per task over a
window of the frozen CNN's per-task features, a linear layer per step.

Input: ``(features, lengths)``, features float [B, L, 3, 128] (windows padded at the end
to the longest, the three tasks' head features per frame) and lengths int [B]. Output:
``{"AU": [N, 8], "EXPR": [N, 7], "VA": [N, 40]}`` for the N = sum(lengths) real frames,
window after window and in order within each: the layout of the CNN's outputs on N
frames, so the CNN path's losses, metrics and ensemble take it unchanged. Padding never
reaches a real frame: the GRUs run on packed sequences.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from pipeline.core.errors import CheckpointError
from pipeline.core.labels import TASKS, head_sizes
from pipeline.core.schema import ABAW2020, LabelSchema
from pipeline.inference.ensemble import RNN_BUNDLE_KIND, load_bundle, save_bundle
from pipeline.training.models import HEAD_FEATURES, check_finite, model_schema, read_torch_file, recorded_schema

KIND = "gru"


class TemporalNet(nn.Module):
    def __init__(self, hidden: int = 64, feature_dim: int = HEAD_FEATURES, schema: LabelSchema = ABAW2020):
        super().__init__()
        self.hidden, self.feature_dim, self.schema = hidden, feature_dim, schema
        self.backbone_name = KIND  # what reports and caches name as the model's kind
        self.grus = nn.ModuleDict({t: nn.GRU(feature_dim, hidden, batch_first=True, bidirectional=True)
                                   for t in TASKS})
        self.heads = nn.ModuleDict({t: nn.Linear(2 * hidden, n) for t, n in head_sizes(schema).items()})

    def forward(self, x: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        features, lengths = x
        lengths = lengths.cpu()
        mask = torch.arange(features.shape[1]) < lengths[:, None]  # [B, L]: the real frames
        out = {}
        for i, task in enumerate(TASKS):
            packed = pack_padded_sequence(features[:, :, i], lengths, batch_first=True, enforce_sorted=False)
            steps, _ = pad_packed_sequence(self.grus[task](packed)[0], batch_first=True,
                                           total_length=features.shape[1])
            out[task] = self.heads[task](steps[mask.to(steps.device)])
        return out

    def config(self) -> dict:
        return {"kind": KIND, "hidden": self.hidden, "feature_dim": self.feature_dim,
                "schema": model_schema(self.schema)}


def load_temporal(path: str | Path, device: str | torch.device = "cpu") -> tuple[TemporalNet, dict]:
    """A temporal model from its checkpoint (``models.save_checkpoint``), checked."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: checkpoint not found")
    ckpt = read_torch_file(path, "checkpoint", device)
    config = ckpt.get("config", {}) if isinstance(ckpt, dict) else {}
    if config.get("kind") != KIND or "state_dict" not in ckpt:
        raise CheckpointError(f"{path}: not a temporal (GRU) checkpoint of mtaffect")
    schema = recorded_schema(config.get("schema"), path)
    check_finite(ckpt["state_dict"], path, "checkpoint")
    model = TemporalNet(config["hidden"], config["feature_dim"], schema)
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), ckpt


def gru_member(entry: dict) -> TemporalNet:
    """The network a temporal bundle's member entry holds the weights of."""
    config = entry["config"]
    return TemporalNet(config["hidden"], config["feature_dim"], recorded_schema(config.get("schema"), entry["name"]))


def save_rnn_bundle(path: str | Path, members: dict[str, str], au_thresholds, threshold_mode: str,
                    extra: dict) -> dict:
    """The temporal students' bundle: ``inference.ensemble``'s, of GRU members."""
    return save_bundle(path, members, au_thresholds, threshold_mode, None, RNN_BUNDLE_KIND, extra, load=load_temporal)


def load_rnn_bundle(path: str | Path, device: str | torch.device = "cpu", schema: LabelSchema | None = None):
    """The members ``(name, GRU model, va_centres)`` of a temporal bundle (of ``schema``; None:
    any), and its other entries."""
    return load_bundle(path, device, RNN_BUNDLE_KIND, build=gru_member, schema=schema)
