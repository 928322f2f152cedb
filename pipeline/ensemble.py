"""The student ensemble (docs/method.md, "Ensemble") and its bundle: one file with
everything ``predict`` needs.

Members' outputs are averaged as probabilities: AU sigmoids, EXPR softmaxes, and each
member's VA expectation (the authors' submission code does the same; their API averages
raw logits instead). The spread across members is the per-frame uncertainty.

The bundle (``models/ensemble.pt``) is a plain dict of tensors and values, loaded with
``weights_only=True``: ``format_version``, ``schema`` (label names, VA bins, image
size), ``alignment`` (template points, crop size and MTCNN settings of the extraction), the
members (name, backbone, VA bin values, state dict, SHA-256 of the checkpoint file),
``au_thresholds`` with how they were chosen, and ``provenance`` (``pipeline.provenance``:
the ensemble stage's record; each member keeps its checkpoint's records).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from pipeline.errors import CheckpointError
from pipeline.fileio import file_sha256, write_torch
from pipeline.models import SCHEMA, MultitaskNet, load_checkpoint, read_torch_file

BUNDLE_FORMAT = 1
BUNDLE_KIND = "mtaffect-ensemble"


def combine(member_predictions: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The ensemble's predictions from its members' (each as ``inference.predict`` gives):
    mean AU and EXPR probabilities and mean VA, plus the spread across members,
    ``uncertainty_AU`` / ``_EXPR`` (the members' standard deviation of each probability,
    averaged over AUs or classes) and ``uncertainty_VA`` [n, 2]."""
    if not member_predictions:
        raise ValueError("an ensemble needs at least one member")
    out = {}
    for task in ("AU", "EXPR", "VA"):
        stack = np.stack([p[task] for p in member_predictions]).astype(np.float64)
        out[task] = stack.mean(axis=0).astype(np.float32)
        spread = stack.std(axis=0)
        out[f"uncertainty_{task}"] = (spread if task == "VA" else spread.mean(axis=1)).astype(np.float32)
    return out


def save_bundle(path: str | Path, members: dict[str, str], au_thresholds, threshold_mode: str,
                alignment: dict, provenance: list | None = None) -> dict:
    """Write the bundle of ``members`` (name -> checkpoint path); returns its summary."""
    entries = []
    for name, checkpoint in members.items():
        model, ckpt = load_checkpoint(checkpoint)
        entries.append({"name": name, "backbone": model.backbone_name, "state_dict": model.state_dict(),
                        "va_centres": ckpt.get("train", {}).get("va_centres", "centres"),
                        "sha256": file_sha256(checkpoint), "provenance": ckpt.get("provenance", [])})
    thresholds = [float(t) for t in np.broadcast_to(np.asarray(au_thresholds, dtype=np.float64), (8,))]
    bundle = {"format_version": BUNDLE_FORMAT, "kind": BUNDLE_KIND, "schema": SCHEMA, "alignment": alignment,
              "members": entries, "au_thresholds": thresholds, "au_threshold_mode": threshold_mode,
              "provenance": provenance or []}
    write_torch(path, bundle)
    return {"members": {e["name"]: e["sha256"] for e in entries}, "au_thresholds": thresholds,
            "au_threshold_mode": threshold_mode}


def load_bundle(path: str | Path, device: str | torch.device = "cpu") -> tuple[list[tuple[str, MultitaskNet, str]], dict]:
    """The members ``(name, model, va_centres)`` of a bundle, and the bundle's other entries.

    A file that is not an mtaffect bundle, or one of another format version or label
    schema, is refused with a message saying what differs.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: model bundle not found (run `dvc repro ensemble`)")
    bundle = read_torch_file(path, "model bundle", device)
    if not isinstance(bundle, dict) or bundle.get("kind") != BUNDLE_KIND:
        raise CheckpointError(f"{path}: not an mtaffect ensemble bundle")
    if bundle.get("format_version") != BUNDLE_FORMAT:
        raise CheckpointError(f"{path}: bundle format {bundle.get('format_version')!r}; this version of mtaffect "
                              f"reads format {BUNDLE_FORMAT} (rebuild it with `dvc repro ensemble`)")
    if bundle.get("schema") != SCHEMA:
        raise CheckpointError(f"{path}: made for another label schema: {bundle.get('schema')} != {SCHEMA}")
    members = []
    for entry in bundle["members"]:
        model = MultitaskNet(entry["backbone"])
        model.load_state_dict(entry["state_dict"])
        members.append((entry["name"], model.to(device, memory_format=torch.channels_last).eval(), entry["va_centres"]))
    return members, {k: v for k, v in bundle.items() if k != "members"} | {
        "member_sha256": {e["name"]: e["sha256"] for e in bundle["members"]}}
