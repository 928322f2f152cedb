"""Everything around the face: backgrounds, each source's look, camera effects, occluders,
and smooth head-pose trajectories.

Each source has a look (colour cast, contrast, gamma, saturation, grain, blur, JPEG
quality, vignette) and a kind of background; ``domain_shift`` blends every look towards a
common one (0 = all sources look alike, 1 = as described here, > 1 = exaggerated).
``difficulty`` scales the nuisances that make faces harder: pose range, blur, grain,
occluders and lighting changes (0 = clean frontal faces).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

from .episodes import smooth_noise
from .draw import gaussian_blur
from .geometry import Pose


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


# --- backgrounds ------------------------------------------------------------------------


def _clouds(rng, h, w, layers, colour: float = 0.25) -> np.ndarray:
    """Smooth random texture (float32 [h, w, 3]): for each (cells, amp) layer, a random
    grid of one value per ``cells`` pixels, enlarged (cheap low-frequency noise).

    The coarser grids are enlarged to the finest one's size and summed there, so the
    texture costs one full-size resize. Mostly brightness, with a ``colour`` share of
    per-channel variation: real walls and foliage vary in shade far more than in hue.
    """
    grids = []
    for cells, amp in layers:
        gh, gw = max(2, h // cells), max(2, w // cells)
        grids.append(rng.normal(0, amp, (gh, gw, 1)) + rng.normal(0, amp * colour, (gh, gw, 3)))
    fine = max(grids, key=lambda g: g.size)
    size = (fine.shape[1], fine.shape[0])
    total = sum(g if g is fine else cv2.resize(g, size, interpolation=cv2.INTER_CUBIC) for g in grids)
    return cv2.resize(total.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)


def _muted(rng, lo=40, hi=200) -> np.ndarray:
    """A random, somewhat desaturated BGR colour."""
    c = rng.uniform(lo, hi, 3)
    return 0.55 * c + 0.45 * c.mean()


def background(rng: np.random.Generator, h: int, w: int, kind: str) -> np.ndarray:
    """A textured, somewhat desaturated scene of ``kind`` (uint8 BGR [h, w, 3]).

    Drawn at half resolution and enlarged: it is blurred anyway, and ExpW draws one per
    image."""
    full_h, full_w = h, w
    h, w = (h + 1) // 2, (w + 1) // 2
    img = np.empty((h, w, 3), np.float32)
    if kind == "web":  # web photos: half outdoors, half indoors
        kind = "outdoor" if rng.random() < 0.5 else "room"
    if kind == "lab":
        base = rng.uniform(35, 75) * np.array([1.05, 1.0, 0.95]) + rng.normal(0, 5, 3)
        img[:] = base
        img += _clouds(rng, h, w, ((40, 4), (8, 2)), 0.1)
        img += np.linspace(8, -8, w, dtype=np.float32)[None, :, None]
    elif kind == "outdoor":
        sky = _muted(rng, 140, 230) * np.array([1.15, 1.0, 0.85])
        ground = _muted(rng, 50, 150)
        horizon = int(h * rng.uniform(0.3, 0.6))
        img[:horizon] = sky
        img[horizon:] = ground
        img += _clouds(rng, h, w, ((24, 18), (8, 6)))
        for _ in range(int(rng.integers(2, 6))):  # trees, posts, buildings
            x0 = int(rng.integers(0, w))
            bw = int(rng.integers(w // 20, w // 5))
            top = int(rng.integers(0, horizon + 1))
            img[top:horizon + int(rng.integers(0, h // 6)), x0:x0 + bw] = _muted(rng, 30, 140)
    else:  # room, web, film: walls, doors, shelves, windows
        wall = _muted(rng, 60, 210)
        img[:] = wall
        img += np.linspace(rng.normal(0, 15), rng.normal(0, 15), h, dtype=np.float32)[:, None, None]
        for _ in range(int(rng.integers(2, 7))):
            x0, y0 = int(rng.integers(-w // 4, w)), int(rng.integers(-h // 4, h))
            x1, y1 = x0 + int(rng.integers(w // 10, w // 2)), y0 + int(rng.integers(h // 10, h))
            img[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = _muted(rng, 25, 230)
        img += _clouds(rng, h, w, ((24, 12), (8, 4)))
        if kind == "film":
            img *= rng.uniform(0.45, 0.75)
    # Blurred and enlarged in uint8 (cheaper than in float32). Films keep the
    # background out of focus (and PNG frames small).
    img = np.clip(img, 0, 255, out=img).astype(np.uint8)
    img = cv2.GaussianBlur(img, (0, 0), max(0.5, w / 400) * (3.0 if kind == "film" else 1.0))
    return cv2.resize(img, (full_w, full_h), interpolation=cv2.INTER_LINEAR)


def vignette_mask(h: int, w: int, strength: float) -> np.ndarray:
    """Multiplicative darkening towards the corners (float32 [h, w, 1])."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xs - w / 2) / (w / 2)) ** 2 + ((ys - h / 2) / (h / 2)) ** 2
    return (1 - strength * np.clip(r2 / 2, 0, 1))[..., None].astype(np.float32)


# --- the camera ---------------------------------------------------------------------------


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


# --- occluders ------------------------------------------------------------------------------


def draw_occluder(img: np.ndarray, box: np.ndarray, rng: np.random.Generator, cover: float,
                  kind: str, colour) -> None:
    """Cover part of a face box: ``cover`` ~ the share of the box hidden.

    ``hand``: a skin-coloured hand over the mouth or chin; ``bar``: an object (microphone,
    cup, a passer-by's arm) across the lower face; ``full``: a large object hiding the
    whole face (the frame then has no usable face).
    """
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    col = tuple(float(c) for c in colour)
    if kind == "full":
        cx, cy = (x0 + x1) / 2 + rng.normal(0, 0.05) * bw, (y0 + y1) / 2 + rng.normal(0, 0.05) * bh
        axes = (int(bw * 0.75), int(bh * 0.8))
        cv2.ellipse(img, (int(cx), int(cy)), axes, rng.uniform(-20, 20), 0, 360, col, -1, cv2.LINE_AA)
        return
    if kind == "hand":
        # Palm over the lower face from one side, with fingers: at most the mouth area.
        side = -1 if rng.random() < 0.5 else 1
        cx = (x0 + x1) / 2 + side * bw * (0.55 - 0.45 * cover)
        cy = y0 + bh * rng.uniform(0.78, 0.92)
        axes = (max(2, int(bw * (0.16 + 0.2 * cover))), max(2, int(bh * (0.12 + 0.12 * cover))))
        cv2.ellipse(img, (int(cx), int(cy)), axes, rng.uniform(-30, 30), 0, 360, col, -1, cv2.LINE_AA)
        for f in range(4):
            fx = cx - side * axes[0] * (0.2 + 0.25 * f)
            cv2.line(img, (int(cx), int(cy)), (int(fx), int(cy - axes[1] * 1.6 + f * 2)), col,
                     max(1, int(bw * 0.06)), cv2.LINE_AA)
        return
    # bar: a diagonal object (microphone, arm) across the mouth and chin, never the eyes
    t = max(2, int(bh * (0.06 + 0.1 * cover)))
    yl, yr = y0 + bh * rng.uniform(0.8, 1.0), y0 + bh * rng.uniform(0.78, 0.98)
    cv2.line(img, (int(x0 - bw * 0.3), int(yl)), (int(x1 + bw * 0.3), int(yr)), col, t, cv2.LINE_AA)


# --- head motion ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PoseRange:
    """Where and how a source's faces sit in its frames."""

    size: tuple[float, float]  #: face half-width in pixels
    roll: float  #: +- degrees at difficulty 1
    yaw: float
    pitch: float
    sway: float  #: how far the head drifts, in face half-widths
    speed: float = 25.0  #: frames over which the pose changes noticeably


POSE_RANGES = {
    "affwild2": PoseRange(size=(42, 62), roll=12, yaw=20, pitch=8, sway=0.5),
    "disfa": PoseRange(size=(50, 58), roll=4, yaw=7, pitch=4, sway=0.12, speed=40),
    "expw": PoseRange(size=(34, 64), roll=15, yaw=20, pitch=8, sway=0.0),
    "afewva": PoseRange(size=(40, 64), roll=10, yaw=22, pitch=8, sway=0.45),
}


def pose_track(rng: np.random.Generator, n: int, h: int, w: int, pr: PoseRange, difficulty: float,
               centre=None, xlim=None, size_scale: float = 1.0) -> list[Pose]:
    """A smooth head trajectory of ``n`` frames that keeps the face inside the frame
    (and inside ``xlim`` = (x_min, x_max) when two people share it)."""
    d = float(difficulty)
    size0 = rng.uniform(*pr.size) * size_scale
    size = size0 * np.exp(smooth_noise(rng, n, 0.06 * min(d, 1.5), pr.speed * 1.5))

    def angle(limit: float, offset: bool) -> np.ndarray:
        """A head angle: a per-video offset plus a slow wander, within +-limit x difficulty."""
        if d <= 0:
            return np.zeros(n)
        base = rng.normal(0, limit * d * 0.4) if offset else 0.0
        return np.clip(base + smooth_noise(rng, n, limit * d * 0.45, pr.speed), -limit * d, limit * d)

    roll, yaw = angle(pr.roll, True), angle(pr.yaw, True)
    pitch = angle(pr.pitch, False)
    if centre is None:
        centre = (w / 2 + rng.normal(0, w * 0.06), h * rng.uniform(0.42, 0.52))
    cx = centre[0] + smooth_noise(rng, n, pr.sway * size0, pr.speed * 1.2)
    cy = centre[1] + smooth_noise(rng, n, pr.sway * size0 * 0.5, pr.speed * 1.2)
    # Keep the face box (about 1.0 x 1.3 half-widths around the centre) in the frame.
    lo, hi = xlim if xlim is not None else (0, w)
    cx = np.clip(cx, lo + size * 1.15, hi - size * 1.15)
    cy = np.clip(cy, size * 1.35, h - size * 1.45)
    return [Pose(float(cx[i]), float(cy[i]), float(size[i]), float(roll[i]), float(yaw[i]), float(pitch[i]))
            for i in range(n)]


def with_size(pose: Pose, size: float) -> Pose:
    return replace(pose, size=size)
