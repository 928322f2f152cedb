"""The multitask network: a torchvision backbone, pooled features, one head per task.

Heads follow the paper (and the authors' code): BN(d) -> Linear(d, 128) -> ReLU ->
BN(128) -> Linear(128, out) with out = a logit per AU and per expression class of the label
schema (8 and 7 in abaw2020) and 40 VA logits (20 valence bins then 20 arousal bins).
Checkpoints are state dicts plus a plain config, loaded with ``weights_only=True``; one
trained for another backbone or label schema is refused with a message saying what differs.
"""
from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import struct
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import torchvision
from torch import nn

from pipeline.core.errors import CheckpointError
from pipeline.core.fileio import require_regular, write_torch
from pipeline.core.labels import VA_BINS, head_sizes
from pipeline.core.schema import ABAW2020, LabelSchema, schema_of

log = logging.getLogger("mtaffect.models")

HEAD_FEATURES = 128
#: Above this size the archive's CRC-32s are checked in a thread beside ``torch.load``;
#: below it the check is a few milliseconds, less than starting a thread costs.
THREADED_CHECK_BYTES = 64 << 20
IMAGE_SIZE = 112


def model_schema(schema: LabelSchema) -> dict:
    """What a checkpoint or bundle records of the labels its heads stand for (and what a
    loader must agree on): the AU and class names, the VA bins, the face size."""
    return {"AU": list(schema.aus), "EXPR": list(schema.expressions), "VA_bins": VA_BINS, "image_size": IMAGE_SIZE}


def recorded_schema(recorded, path, what: str = "checkpoint") -> LabelSchema:
    """The label schema of an artefact's :func:`model_schema` record; one CheckpointError
    naming the file when the record is missing or of no schema this code knows."""
    try:
        if recorded["VA_bins"] != VA_BINS or recorded["image_size"] != IMAGE_SIZE:
            raise ValueError(f"{recorded['VA_bins']} VA bins and {recorded['image_size']}-pixel faces, this code "
                             f"uses {VA_BINS} and {IMAGE_SIZE}")
        return schema_of(recorded["AU"], recorded["EXPR"])
    except (KeyError, TypeError, ValueError) as e:
        why = f"its schema record lacks {e}" if isinstance(e, KeyError) else (
            "it records no schema" if recorded is None else str(e))
        raise CheckpointError(f"{path}: a {what} of no label schema this version of mtaffect knows ({why})") from None


def attr_schema(text, path, what: str) -> LabelSchema:
    """:func:`recorded_schema` of an HDF5 file's ``label_schema`` attribute (JSON text)."""
    try:
        recorded = None if text is None else json.loads(text)
    except ValueError:
        raise CheckpointError(f"{path}: a {what} whose label schema record is not JSON (damaged? rerun the stage "
                              "that wrote it)") from None
    return recorded_schema(recorded, path, what)


def build_backbone(name: str) -> tuple[nn.Module, int]:
    """A torchvision classification model without its classifier, and its feature size.

    Randomly initialised (nothing is downloaded); the classifier (``fc`` or
    ``classifier``) becomes the identity so the network ends in globally pooled features.
    """
    try:
        net = torchvision.models.get_model(name, weights=None)
    except ValueError as e:
        raise ValueError(f"unknown backbone {name!r}: use a torchvision classification model name "
                         f"such as resnet50, resnet18, mobilenet_v3_small ({e})") from None
    if hasattr(net, "fc"):
        net.fc = nn.Identity()
    elif hasattr(net, "classifier"):
        net.classifier = nn.Identity()
    else:
        raise ValueError(f"backbone {name!r}: no 'fc' or 'classifier' to remove")
    net.eval()
    with torch.no_grad():
        dim = net(torch.zeros(2, 3, IMAGE_SIZE, IMAGE_SIZE)).flatten(1).shape[1]
    return net.train(), dim


class Head(nn.Sequential):
    def __init__(self, in_features: int, out: int):
        super().__init__(
            nn.BatchNorm1d(in_features), nn.Linear(in_features, HEAD_FEATURES), nn.ReLU(inplace=True),
            nn.BatchNorm1d(HEAD_FEATURES), nn.Linear(HEAD_FEATURES, out),
        )


class MultitaskNet(nn.Module):
    """Backbone + three heads. ``forward`` returns ``{"AU": [B, AUs], "EXPR": [B, classes], "VA": [B, 40]}``
    (AUs and classes of ``schema``)."""

    def __init__(self, backbone: str = "resnet50", bn_momentum: float | None = None,
                 schema: LabelSchema = ABAW2020):
        super().__init__()
        self.backbone_name, self.schema = backbone, schema
        self.backbone, self.feature_dim = build_backbone(backbone)
        self.heads = nn.ModuleDict({t: Head(self.feature_dim, n) for t, n in head_sizes(schema).items()})
        if bn_momentum is not None:
            # torchvision's MobileNetV3 uses 0.01: from random weights its running statistics
            # then lag far behind the weights for the whole of a short run, and evaluation fails
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.momentum = bn_momentum

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.backbone(x).flatten(1)
        return {t: head(features) for t, head in self.heads.items()}

    def task_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The 128-d per-task features after the heads' second BN (for the temporal model)."""
        features = self.backbone(x).flatten(1)
        out = {}
        for task, head in self.heads.items():
            h = features
            for layer in list(head)[:4]:  # up to the second BN, before the last Linear
                h = layer(h)
            out[task] = h
        return out

    def config(self) -> dict:
        return {"backbone": self.backbone_name, "schema": model_schema(self.schema)}


def read_torch_file(path: str | Path, what: str, device: str | torch.device = "cpu"):
    """``torch.load`` with ``weights_only=True`` (no arbitrary pickle ever runs); an empty,
    damaged or foreign file is one CheckpointError naming it.

    torch's files are zip archives with a CRC-32 per record, which ``torch.load`` does not
    check: a flipped bit in a weight would load as a wrong weight without a word. Every
    record is checked; in a large file, in a thread while torch reads it (zlib releases
    the GIL), so the check costs little of the load (``benchmarks/bench_load.py``).
    """
    require_regular(path, f"a {what}")
    if os.path.isfile(path) and os.path.getsize(path) == 0:  # torch would say only "EOFError: "
        raise CheckpointError(f"{path}: not a readable {what}: empty file (0 bytes)")
    with ThreadPoolExecutor(1) as pool:
        large = os.path.getsize(path) > THREADED_CHECK_BYTES if os.path.exists(path) else False
        records = pool.submit(_damaged_record, path) if large else None
        try:
            loaded = torch.load(path, map_location=device, weights_only=True)
        except Exception as e:  # noqa: BLE001 - unpickling errors come in many types
            loaded = e
        damaged = records.result() if large else _damaged_record(path)
    if damaged and damaged.startswith("not a torch file"):
        raise CheckpointError(f"{path}: not a readable {what}: {damaged}")
    if damaged:
        raise CheckpointError(f"{path}: {what} damaged: {damaged}")
    if isinstance(loaded, Exception):
        why = next(iter(str(loaded).splitlines()), "")[:160]  # some errors carry no message
        raise CheckpointError(f"{path}: not a readable {what} ({type(loaded).__name__}: {why})") from None
    return loaded


def _damaged_record(path) -> str | None:
    """What is wrong with a torch archive's records (a CRC-32 that does not match, or no
    archive at all), or None. The records are
    read through a memory map, so the CRC runs on the file's pages without a copy."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data, \
                zipfile.ZipFile(f) as archive:
            for record in archive.infolist():
                start = record.header_offset
                if data[start:start + 4] != b"PK\x03\x04":
                    return f"its record {record.filename} has no header where the index says"
                name_len, extra_len = struct.unpack("<HH", data[start + 26:start + 30])
                start += 30 + name_len + extra_len
                with memoryview(data)[start:start + record.compress_size] as stored:
                    if len(stored) != record.compress_size or zlib.crc32(stored) != record.CRC:
                        return f"its record {record.filename} fails its checksum"
    except zipfile.BadZipFile:  # a zip archive's start without its end: cut short
        with open(path, "rb") as f:
            begins = f.read(4) == b"PK\x03\x04"
        return "truncated (its end is missing)" if begins else "not a torch file (no zip archive)"
    except (OSError, EOFError, ValueError, struct.error):
        return None
    return None


def check_finite(state: dict, path: str | Path, what: str) -> None:
    """Refuse a state dict holding a weight that is not a finite number (a model with one
    would give NaN for every input, which reads as a confident "Neutral")."""
    floats = [(k, v) for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point()]
    if not floats:
        return
    # A sum is NaN or infinite when a value is; the rare sum of finite values that
    # overflows is looked at value by value.
    sums = torch.stack([v.sum(dtype=torch.float32) for _, v in floats])
    for i in (~torch.isfinite(sums)).nonzero().flatten().tolist():
        if not torch.isfinite(floats[i][1]).all():
            raise CheckpointError(f"{path}: {what} holds values that are not finite in {floats[i][0]}")


def weights_sha256(state: dict) -> str:
    """SHA-256 of a state dict's tensors (names, types, shapes and values in logical order,
    whatever their memory layout): what a bundle records of each member's weights."""
    h = hashlib.sha256()
    for name in sorted(state):
        value = state[name]
        if torch.is_tensor(value):
            t = value.detach().cpu().contiguous().reshape(-1)
            h.update(f"{name}:{t.dtype}:{tuple(value.shape)}\n".encode())
            h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def load_pretrained_backbone(model: MultitaskNet, path: str) -> int:
    """Load a local backbone state dict (e.g. ImageNet or VGGFace2 weights); never downloads.

    Classifier weights in the file are ignored. Every backbone weight must come from the
    file (BatchNorm's ``num_batches_tracked`` counters, which older files lack, excepted):
    a file for another architecture that happens to share a few key names would otherwise
    leave most of the network random without a word. Returns the number of keys loaded.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: pretrained weights not found (no download is attempted)")
    state = read_torch_file(path, "weights file")
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a state dict of backbone weights")
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.startswith(("fc.", "classifier."))}
    check_finite(state, path, "weights file")
    expected = [k for k in model.backbone.state_dict() if not k.endswith("num_batches_tracked")]
    matched = [k for k in expected if k in state]
    if len(matched) < len(expected):
        missing = [k for k in expected if k not in state]
        raise CheckpointError(f"{path}: matches {len(matched)} of the {len(expected)} weights of backbone "
                              f"{model.backbone_name} (missing e.g. {missing[:3]}): not weights for this backbone")
    try:
        result = model.backbone.load_state_dict(state, strict=False)
    except RuntimeError as e:  # same names, other shapes (e.g. ResNet-50 weights for a ResNet-18)
        raise CheckpointError(f"{path}: does not fit backbone {model.backbone_name}: {str(e)[:300]}") from None
    if result.unexpected_keys:
        raise CheckpointError(f"{path}: does not fit backbone {model.backbone_name}: unexpected keys "
                              f"{result.unexpected_keys[:5]}")
    log.info("loaded %d backbone weights from %s", len(matched), path)
    return len(matched)


def save_checkpoint(path: str | Path, model: nn.Module, extra: dict | None = None) -> None:
    """State dict + config (+ ``extra`` plain values), written atomically."""
    net = model.module if hasattr(model, "module") else model
    write_torch(path, {"state_dict": net.state_dict(), "config": net.config(), **(extra or {})})


def va_centres_of(ckpt: dict) -> str:
    """The VA bin centres a checkpoint's training used (its ``train`` record), "centres" for
    one without that record (made by hand, or before it)."""
    train = ckpt.get("train")
    return train.get("va_centres", "centres") if isinstance(train, dict) else "centres"


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu",
                    schema: LabelSchema | None = None) -> tuple[MultitaskNet, dict]:
    """A model from a checkpoint written by :func:`save_checkpoint`, with the label schema it
    records (refused when ``schema`` is given and differs); checks the backbone too. The
    model is in the channels-last layout (the faster one for inference)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: checkpoint not found")
    ckpt = read_torch_file(path, "checkpoint", device)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "config" not in ckpt:
        raise CheckpointError(f"{path}: not an mtaffect checkpoint (no state_dict/config)")
    config = ckpt["config"]
    recorded = recorded_schema(config.get("schema"), path)
    if schema is not None:
        schema.require_same(recorded, f"{path}: the checkpoint")
    check_finite(ckpt["state_dict"], path, "checkpoint")
    model = MultitaskNet(config["backbone"], schema=recorded)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: does not fit backbone {config['backbone']}: {str(e)[:300]}") from None
    return model.to(device, memory_format=torch.channels_last), ckpt

