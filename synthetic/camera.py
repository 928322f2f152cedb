"""Each source's look and its camera: how a rendered scene becomes a recorded frame.

Each source has a look (colour cast, contrast, gamma, saturation, grain, blur, JPEG
quality, vignette) and a kind of background; ``domain_shift`` blends every look towards a
common one (0 = all sources look alike, 1 = as described here, > 1 = exaggerated).
``develop`` applies the tone curve, colour grade, motion and focus blur and sensor grain
(``Grain``) to a frame; ``vignette_mask`` darkens the corners.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from .draw import gaussian_blur


@dataclass(frozen=True)
class Look:
    """How a source's camera and post-processing render a scene."""

    gain: tuple[float, float, float] = (1.0, 1.0, 1.0)  #: BGR multipliers (colour cast)
    contrast: float = 1.0
    gamma: float = 1.0
    saturation: float = 0.85
    grain: float = 3.0  #: sd of the per-pixel noise, in grey levels (x difficulty)
    blur: float = 0.3  #: base Gaussian blur sigma in pixels (x difficulty)
    jpeg: int = 88  #: JPEG / MJPG quality
    vignette: float = 0.15
    shadow_tint: tuple[float, float, float] = (0.0, 0.0, 0.0)  #: BGR offset added to the shadows
    background: str = "room"  #: room | outdoor | lab | web | film


#: The common look that domain_shift 0 gives every source.
NEUTRAL_LOOK = Look()

#: Each source's own look (domain_shift 1).
LOOKS = {
    # In-the-wild YouTube videos: varied rooms and streets, compressed, some colour cast.
    "affwild2": Look(gain=(0.98, 1.0, 1.04), contrast=1.0, gamma=1.0, saturation=0.8, grain=3.5,
                     blur=0.45, jpeg=80, vignette=0.1, background="room"),
    # A lab: even light, plain dark backdrop, frontal camera, little noise, cool and flat.
    "disfa": Look(gain=(1.06, 1.0, 0.93), contrast=0.88, gamma=1.08, saturation=0.6, grain=2.0,
                  blur=0.25, jpeg=92, vignette=0.05, background="lab"),
    # Web photos: bright, saturated, contrasty, all sorts of scenes.
    "expw": Look(gain=(0.95, 1.0, 1.06), contrast=1.15, gamma=0.92, saturation=1.05, grain=2.5,
                 blur=0.3, jpeg=85, vignette=0.0, background="web"),
    # Film stills: dark, graded teal shadows and warm skin, strong vignette, film grain.
    "afewva": Look(gain=(0.94, 1.0, 1.06), contrast=1.12, gamma=1.15, saturation=0.95, grain=1.5,
                   blur=0.4, jpeg=72, vignette=0.35, shadow_tint=(22.0, 10.0, -6.0), background="film"),
}


def source_look(source: str, domain_shift: float) -> Look:
    """The source's look blended with the common one by ``domain_shift``."""
    a, b = NEUTRAL_LOOK, LOOKS[source]
    k = float(domain_shift)

    def mix(x, y):
        return x + k * (y - x)

    return Look(
        gain=tuple(mix(x, y) for x, y in zip(a.gain, b.gain)), contrast=mix(a.contrast, b.contrast),
        gamma=max(0.3, mix(a.gamma, b.gamma)), saturation=max(0.0, mix(a.saturation, b.saturation)),
        grain=max(0.0, mix(a.grain, b.grain)), blur=max(0.0, mix(a.blur, b.blur)),
        jpeg=int(np.clip(round(mix(a.jpeg, b.jpeg)), 30, 98)), vignette=max(0.0, mix(a.vignette, b.vignette)),
        shadow_tint=tuple(mix(x, y) for x, y in zip(a.shadow_tint, b.shadow_tint)),
        background=b.background if k >= 0.5 else a.background,
    )


# --- the camera ---------------------------------------------------------------------------


def vignette_mask(h: int, w: int, strength: float) -> np.ndarray:
    """Multiplicative darkening towards the corners (float32 [h, w, 1])."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xs - w / 2) / (w / 2)) ** 2 + ((ys - h / 2) / (h / 2)) ** 2
    return (1 - strength * np.clip(r2 / 2, 0, 1))[..., None].astype(np.float32)


def tone_lut(look: Look, brightness: float = 1.0) -> np.ndarray:
    """The tone curve as a 256-entry table shared by the three channels (uint8 [256, 1]):
    brightness, gamma and contrast. One table for all channels lets cv2.LUT treat the
    image as one wide grey plane, faster than a table per channel."""
    x = np.arange(256, dtype=np.float64) / 255.0
    y = np.clip(x * brightness, 0, 1) ** look.gamma
    y = (y - 0.5) * look.contrast + 0.5
    return np.clip(y * 255 + 0.5, 0, 255).astype(np.uint8).reshape(256, 1)


#: BT.601 luma weights in BGR order, as cv2.cvtColor(BGR2GRAY) uses.
LUMA = np.array([0.114, 0.587, 0.299])


@functools.lru_cache(maxsize=16)
def colour_matrix(look: Look) -> np.ndarray:
    """The colour grade as one affine map of BGR values (float32 [3, 4], for cv2.transform):
    saturation (a mix with the luma), the colour cast (a gain per channel) and the shadow
    tint (an offset per channel that fades linearly to nothing at white). Cached: a
    source's look is the same for every frame (the result is only read)."""
    s = look.saturation
    m = np.diag(look.gain) @ (s * np.eye(3) + (1 - s) * LUMA[None, :])
    tint = np.asarray(look.shadow_tint, np.float64)
    # + tint * (1 - luma / 255): the offset column, and -tint x luma / 255 in the matrix.
    return np.hstack([m - np.outer(tint, LUMA) / 255.0, tint[:, None]]).astype(np.float32)


class Grain:
    """Sensor noise for one video: a few precomputed noise fields, a random one per frame
    at a random offset (fresh Gaussian noise per frame would cost more than the rendering).

    The noise is round(N(0, sd)) per pixel and channel, drawn by looking up uniform 16-bit
    codes in an inverse-CDF table (rounded_normal_table): the same distribution as rounding
    normal deviates, and cheaper. Each field is kept as two uint8 images, its positive and
    its negative part: adding one and subtracting the other, both saturating, gives exactly
    clip(img + noise, 0, 255) (one of the two is 0 at every pixel), faster than adding
    int16 noise."""

    MARGIN = 16

    def __init__(self, rng: np.random.Generator, h: int, w: int, sd: float, fields: int = 4):
        m = self.MARGIN
        self.sd = float(sd)
        self.h, self.w = h, w
        if self.sd > 0.2:
            noise = rounded_normal_table(self.sd)
            codes = rng.integers(0, len(noise), (fields, h + m, w + m, 3), dtype=np.uint16)
            self.up = np.clip(noise, 0, 255).astype(np.uint8)[codes]
            self.down = np.clip(-noise, 0, 255).astype(np.uint8)[codes]

    def add(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.sd <= 0.2:
            return img
        h, w = img.shape[:2]
        i = int(rng.integers(len(self.up)))
        dy, dx = (int(v) for v in rng.integers(0, self.MARGIN, 2))
        out = cv2.add(img, self.up[i, dy:dy + h, dx:dx + w])
        return cv2.subtract(out, self.down[i, dy:dy + h, dx:dx + w], dst=out)


def rounded_normal_table(sd: float, bits: int = 16) -> np.ndarray:
    """round(N(0, sd)) as a table of 2^bits equally likely integers (int64).

    Integer k fills a share of the table equal to P(round(N(0, sd)) = k) = P(k - 0.5 <
    N(0, sd) < k + 0.5), to the nearest 1 / 2^bits: a uniform random index into it is a
    rounded normal deviate (tails beyond about 4.3 sd, probability < 2^-16, are cut)."""
    n = 1 << bits
    k_max = int(math.ceil(8 * sd)) + 1
    ks = np.arange(-k_max, k_max + 1)
    cdf = np.array([0.5 * (1 + math.erf((k + 0.5) / (sd * math.sqrt(2)))) for k in ks])  # P(N < k + 0.5)
    ends = np.minimum(np.round(cdf * n).astype(np.int64), n)
    ends[-1] = n
    return np.repeat(ks, np.diff(ends, prepend=0))


def develop(frame: np.ndarray, look: Look, rng: np.random.Generator, brightness: float = 1.0,
            blur: float = 0.0, motion: float = 0.0, grain: Grain | None = None) -> np.ndarray:
    """Turn a rendered scene into a camera frame: tone, colour, blur, grain (uint8)."""
    h, w = frame.shape[:2]
    out = cv2.LUT(frame.reshape(h, w * 3), tone_lut(look, brightness)).reshape(h, w, 3)
    out = cv2.transform(out, colour_matrix(look))
    if motion > 0.5:
        k = int(2 * round(motion) + 1)
        kernel = np.zeros((k, k), np.float32)
        angle = rng.uniform(0, np.pi)
        c = k // 2
        dx, dy = np.cos(angle) * c, np.sin(angle) * c
        cv2.line(kernel, (int(round(c - dx)), int(round(c - dy))), (int(round(c + dx)), int(round(c + dy))), 1.0, 1)
        out = cv2.filter2D(out, -1, kernel / kernel.sum())
    if blur > 0.15:
        out = gaussian_blur(out, blur)
    if grain is not None:
        out = grain.add(out, rng)
    return out
