"""The student ensemble's bundle (docs/method.md, "Ensemble"): one file with everything
``predict`` needs (the members' outputs are combined by ``inference.outputs.combine``).

The bundle (``models/ensemble.pt``) is a plain dict of tensors and values, loaded with
``weights_only=True``: ``format_version``, ``schema`` (label names, VA bins, image
size), ``alignment`` (template points, crop size and MTCNN settings of the extraction), the
members (name, backbone, model config, VA bin values, state dict and its SHA-256, checked on
loading, SHA-256 of the checkpoint file),
``au_thresholds`` with how they were chosen (where it came from: ``mtaffect info``, from its
record in ``provenance/``; a member is found by its SHA-256). The temporal
ensemble's bundle (``rnn_ensemble``) is the same dict of another ``kind``, with GRU
members, the sequence length and the features' checkpoint hash instead of an alignment.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from pipeline.core.errors import CheckpointError
from pipeline.core.fileio import write_torch
from pipeline.core.hashing import file_sha256
from pipeline.core.schema import LabelSchema
from pipeline.training.models import (MultitaskNet, check_finite, load_checkpoint, model_schema, read_torch_file,
                                      recorded_schema, va_centres_of, weights_sha256)

BUNDLE_FORMAT = 1
BUNDLE_KIND = "mtaffect-ensemble"
#: The temporal students' bundle (``rnn_ensemble``): GRU members, run on cached features
#: (``temporal.model`` loads and builds them).
RNN_BUNDLE_KIND = "mtaffect-rnn-ensemble"
KINDS = {BUNDLE_KIND: "an mtaffect ensemble bundle", RNN_BUNDLE_KIND: "an mtaffect temporal ensemble bundle"}


def cnn_member(entry: dict) -> torch.nn.Module:
    """The network a CNN bundle's member entry holds the weights of."""
    schema = recorded_schema(entry["config"].get("schema"), entry["name"])
    return MultitaskNet(entry["backbone"], schema=schema).to(memory_format=torch.channels_last)


def load_student(path: str | Path) -> tuple[MultitaskNet, dict]:
    """A student's checkpoint (:func:`load_checkpoint`); a checkpoint without the record of
    the soft labels it learned from (a teacher's, say) is refused naming it."""
    model, ckpt = load_checkpoint(path)
    if "soft_labels" not in ckpt:
        raise CheckpointError(f"{path}: not a student's checkpoint (no record of the soft labels it learned from; "
                              "a teacher's?): the ensemble's members are students (`dvc repro train_student@NAME`)")
    return model, ckpt


def distinct_checkpoints(checkpoints: dict[str, str], consequence: str = "members {first} and {second} would always "
                         "agree and report no uncertainty; give each member its own trained student") -> dict[str, str]:
    """name -> SHA-256 of each checkpoint; two names of one checkpoint are refused naming
    both files and ``consequence`` (``{first}``, ``{second}``: their names). For an ensemble,
    identical members agree everywhere: zero uncertainty on every row (false certainty)."""
    hashes = {}
    for name, checkpoint in checkpoints.items():
        sha = file_sha256(checkpoint)
        twin = next((other for other, h in hashes.items() if h == sha), None)
        if twin is not None:
            raise CheckpointError(f"{checkpoints[twin]} and {checkpoint} are the same checkpoint (sha256 {sha[:16]}...): "
                                  + consequence.format(first=twin, second=name))
        hashes[name] = sha
    return hashes


def save_bundle(path: str | Path, members: dict[str, str], au_thresholds, threshold_mode: str,
                alignment: dict | None, kind: str = BUNDLE_KIND, extra: dict | None = None,
                load=load_checkpoint) -> dict:
    """Write the bundle of ``members`` (name -> checkpoint path, read by ``load``) of
    ``kind``, with ``extra`` entries; returns its summary. Members of one checkpoint
    are refused (:func:`distinct_checkpoints`)."""
    hashes = distinct_checkpoints(members)
    entries, schema = [], None
    for name, checkpoint in members.items():
        model, ckpt = load(checkpoint)
        if schema is None:
            schema = model.schema
        schema.require_same(model.schema, f"{checkpoint}: member {name}")
        state = model.state_dict()
        entries.append({"name": name, "backbone": model.backbone_name, "config": ckpt["config"],
                        "state_dict": state, "weights_sha256": weights_sha256(state),
                        "va_centres": va_centres_of(ckpt),
                        "sha256": hashes[name]})
    thresholds = [float(t) for t in np.broadcast_to(np.asarray(au_thresholds, dtype=np.float64), (len(schema.aus),))]
    bundle = {"format_version": BUNDLE_FORMAT, "kind": kind, "schema": model_schema(schema), "alignment": alignment,
              "members": entries, "au_thresholds": thresholds, "au_threshold_mode": threshold_mode,
              **(extra or {})}
    write_torch(path, bundle)
    return {"members": {e["name"]: e["sha256"] for e in entries}, "au_thresholds": thresholds,
            "au_threshold_mode": threshold_mode}


def load_bundle(path: str | Path, device: str | torch.device = "cpu", kind: str = BUNDLE_KIND,
                build=cnn_member, schema: LabelSchema | None = None) -> tuple[list, dict]:
    """The members ``(name, model, va_centres)`` of a bundle of ``kind`` (each network made
    by ``build`` from its entry), and the bundle's other entries.

    A file that is not an mtaffect bundle, or one of another format version or of a label
    schema other than ``schema`` (None: any), is refused with a message saying what differs.
    """
    if not os.path.exists(path):
        fix = ("`dvc repro ensemble`" if kind == BUNDLE_KIND else
               "`dvc repro rnn_ensemble`, with its length in temporal.sequence_lengths")
        relative = not os.path.isabs(path) and not os.path.isdir(".dvc")  # e.g. the default, from a subfolder
        where = "; run from the project's root, or pass --model" if relative else ""
        raise FileNotFoundError(f"{path}: model bundle not found (run {fix}{where})")
    bundle = read_torch_file(path, "model bundle", device)
    if not isinstance(bundle, dict) or bundle.get("kind") != kind:
        raise CheckpointError(f"{path}: not {KINDS[kind]}" + (f" (it is {KINDS[bundle['kind']]})" if isinstance(
            bundle, dict) and bundle.get("kind") in KINDS else ""))
    if bundle.get("format_version") != BUNDLE_FORMAT:
        raise CheckpointError(f"{path}: bundle format {bundle.get('format_version')!r}; this version of mtaffect "
                              f"reads format {BUNDLE_FORMAT} (rebuild it with `dvc repro ensemble`)")
    recorded = recorded_schema(bundle.get("schema"), path, "model bundle")
    if schema is not None:
        schema.require_same(recorded, f"{path}: the model bundle")
    _check_entries(bundle, path, kind, recorded)
    members = []
    for entry in bundle["members"]:
        check_finite(entry["state_dict"], path, f"bundle (member {entry['name']})")
        recorded_sha = entry.get("weights_sha256")  # bundles written before it have none to check
        if recorded_sha is not None and weights_sha256(entry["state_dict"]) != recorded_sha:
            raise CheckpointError(f"{path}: member {entry['name']}'s weights do not match the digest the bundle "
                                  "recorded of them (changed after it was written): rebuild it with "
                                  + ("`dvc repro ensemble`" if kind == BUNDLE_KIND else "`dvc repro rnn_ensemble`"))
        model = build(entry)
        try:
            model.load_state_dict(entry["state_dict"])
        except RuntimeError as e:
            raise CheckpointError(f"{path}: member {entry['name']} does not fit its model: {str(e)[:200]}") from None
        recorded.require_same(model.schema, f"{path}: member {entry['name']}")
        members.append((entry["name"], model.to(device).eval(), entry["va_centres"]))
    return members, {k: v for k, v in bundle.items() if k != "members"} | {
        "member_sha256": {e["name"]: e["sha256"] for e in bundle["members"]}}


def _check_entries(bundle: dict, path, kind: str, schema: LabelSchema) -> None:
    """Every entry a bundle of ``kind`` needs is there and sensible, or one error naming it."""
    rebuild = "(rebuild it: dvc repro ensemble)" if kind == BUNDLE_KIND else "(rebuild it: dvc repro rnn_ensemble)"
    member_keys = {"name", "state_dict", "va_centres", "sha256", "config"} | ({"backbone"} if kind == BUNDLE_KIND else set())
    members = bundle.get("members")
    if not isinstance(members, list) or not members or not all(
            isinstance(m, dict) and member_keys <= set(m) for m in members):
        raise CheckpointError(f"{path}: its 'members' entry is missing or incomplete {rebuild}")
    first = {}
    for m in members:  # one checkpoint twice: zero spread, false certainty (distinct_checkpoints)
        twin = first.setdefault(m["sha256"], m["name"])
        if twin != m["name"]:
            raise CheckpointError(f"{path}: members {twin} and {m['name']} are the same checkpoint (sha256 "
                                  f"{str(m['sha256'])[:16]}...): they would always agree and report no uncertainty "
                                  f"{rebuild}")
    needed = ("au_thresholds", "alignment") if kind == BUNDLE_KIND else ("au_thresholds",)
    for key in needed:
        if not bundle.get(key):
            raise CheckpointError(f"{path}: bundle lacks its {key!r} entry {rebuild}")
    thresholds = np.asarray(bundle["au_thresholds"], dtype=np.float64)
    if thresholds.shape != (len(schema.aus),) or not (np.isfinite(thresholds).all() and (thresholds >= 0).all()
                                                         and (thresholds <= 1).all()):
        raise CheckpointError(f"{path}: its AU thresholds {bundle['au_thresholds']} are not {len(schema.aus)} "
                              f"probabilities in [0, 1] {rebuild}")
    if kind == BUNDLE_KIND:
        alignment = bundle["alignment"]
        try:
            ok = int(alignment["size"]) >= 16 and float(alignment["template_scale"]) > 0
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise CheckpointError(f"{path}: its 'alignment' entry lacks a crop size or template scale {rebuild}")
