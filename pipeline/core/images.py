"""Faces as the networks see them: uint8 RGB 112x112 -> float, ImageNet mean/std.

Training: resize to 134 and a random 112 crop plus a random horizontal flip, per image
(the authors' code drew one crop and one flip for the whole run by mistake). Evaluation:
resize to 134, centre crop.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

IMAGE_SIZE = 112
RESIZE = 134  # the authors' Resize(134) before a 112 crop
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255


def to_tensor(faces: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> normalised float NCHW."""
    x = torch.from_numpy(faces).permute(0, 3, 1, 2).float()
    return (x - MEAN) / STD


def draw_augmentation(generator: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop offsets [n, 2] and flip decisions [n] for ``n`` images."""
    offsets = torch.randint(0, RESIZE - IMAGE_SIZE + 1, (n, 2), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    return offsets, flips


def resize(x: torch.Tensor) -> torch.Tensor:
    """NCHW images at 134 x 134, the size every 112 view is cut from."""
    return F.interpolate(x, size=(RESIZE, RESIZE), mode="bilinear", align_corners=False, antialias=False)


def crop_views(big: torch.Tensor, offsets, flips, source=None) -> torch.Tensor:
    """112 crops of resized images: crop i is image ``source[i]`` (default i) at offsets
    ``(dy, dx) = offsets[i]``, mirrored where ``flips[i]``."""
    n = len(flips)
    out = torch.empty(n, 3, IMAGE_SIZE, IMAGE_SIZE)
    for i in range(n):
        oy, ox = int(offsets[i][0]), int(offsets[i][1])
        crop = big[i if source is None else int(source[i]), :, oy:oy + IMAGE_SIZE, ox:ox + IMAGE_SIZE]
        out[i] = crop.flip(-1) if flips[i] else crop
    return out


def augment(x: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """A 112 crop of the 134 resize and a flip per image, as drawn by ``draw_augmentation``."""
    return crop_views(resize(x), offsets, flips)


def centre_view(x: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """The evaluation view: 134 resize, centre 112 crop (optionally mirrored)."""
    o = (RESIZE - IMAGE_SIZE) // 2
    crop = resize(x)[:, :, o:o + IMAGE_SIZE, o:o + IMAGE_SIZE]
    return crop.flip(-1) if flip else crop
