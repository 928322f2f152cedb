"""Labels over time: expression episodes, AU intensities, valence and arousal per frame.

One person's video is a chain of segments. A neutral segment holds a neutral face; an
expression segment rises (onset), holds (apex) and falls (offset) along a smooth
envelope e(t) in [0, apex], with apex ~ U(0.2, 1). From e(t):

* the expression label is the segment's class while e(t) >= 0.35 x apex, else Neutral
  (annotators call the faint start and end of an expression neutral);
* the prototype's AUs (happiness 6+12, sadness 1+4+15, ...) get intensity
  5 x weight x e(t)^0.8, plus spontaneous AU events (talking, brow flashes, ...) that
  come and go on their own, plus the person's resting bias;
* valence and arousal follow the class's place on the circumplex, scaled by sqrt(e(t)),
  plus a slow random drift per video.

Everything here is cheap numpy on label arrays, no pixels, so the label statistics can
be checked on hundreds of thousands of frames (tests do).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.core.schema import EXPRESSIONS

from .eras import ERAS, OTHER_SHARES, Era
from .landmarks import AU_INDEX, DRAWN_AUS

NEUTRAL, ANGER, DISGUST, FEAR, HAPPINESS, SADNESS, SURPRISE, OTHER = range(len(EXPRESSIONS))

#: AU prototype of each expression: AU -> weight at the apex (FACS/EMFACS, strong where
#: a weak AU would make the class ambiguous: disgust's AU9 and AU17, anger's AU23).
PROTOTYPES: dict[int, dict[int, float]] = {
    NEUTRAL: {},
    ANGER: {4: 1.0, 5: 0.6, 7: 0.9, 23: 1.0},
    DISGUST: {9: 1.0, 15: 0.7, 17: 0.9, 4: 0.4},
    FEAR: {1: 0.9, 2: 0.8, 4: 0.6, 5: 0.9, 20: 1.0, 25: 1.0, 26: 0.6},
    HAPPINESS: {6: 0.85, 12: 1.0, 25: 0.45},
    SADNESS: {1: 0.9, 4: 0.6, 15: 1.0, 17: 0.4},
    SURPRISE: {1: 1.0, 2: 1.0, 5: 0.8, 25: 1.0, 26: 1.0},
    OTHER: {24: 1.0, 10: 0.9, 7: 0.5},  # only in the 2022 files (synthetic.eras)
}

#: Where each expression sits in valence/arousal at full intensity (circumplex model).
EXPR_VA: dict[int, tuple[float, float]] = {
    NEUTRAL: (0.0, -0.05), ANGER: (-0.55, 0.65), DISGUST: (-0.6, 0.25), FEAR: (-0.6, 0.7),
    HAPPINESS: (0.7, 0.4), SADNESS: (-0.6, -0.35), SURPRISE: (0.15, 0.75), OTHER: (-0.35, 0.2),
}

#: Frame share of each expression per source, in the unified order, at imbalance 1.
#: Aff-Wild2 and ExpW follow their published label counts (neutral and happiness
#: dominate, fear and disgust are rare); DISFA's subjects watched clips chosen to amuse,
#: surprise and disgust; AFEW-VA's film clips are emotional by selection.
EXPR_SHARES: dict[str, tuple[float, ...]] = {
    #            Neu    Ang    Dis    Fea    Hap    Sad    Sur
    "affwild2": (0.40, 0.04, 0.025, 0.02, 0.25, 0.18, 0.085),
    "expw": (0.38, 0.04, 0.044, 0.012, 0.333, 0.115, 0.076),
    "disfa": (0.45, 0.03, 0.08, 0.05, 0.22, 0.07, 0.10),
    "afewva": (0.30, 0.12, 0.06, 0.10, 0.20, 0.12, 0.10),
    "saffwild2": (0.40, 0.04, 0.025, 0.02, 0.25, 0.18, 0.085),  # frames of Aff-Wild2's videos
    "affectnet": (0.26, 0.087, 0.013, 0.022, 0.47, 0.089, 0.049),  # its manually annotated training set
}

LABEL_THRESHOLD = 0.35  #: e(t) / apex below which a frame is labelled Neutral
INTENSITY_GAMMA = 0.8  #: AU intensity = 5 x weight x e^gamma
APEX_RANGE = (0.2, 1.0)
ONSET_RANGE = (0.15, 0.3)  #: onset and offset, as fractions of a segment
EXPR_FRAMES = (16, 56)  #: length range of an expression segment, in frames
NEUTRAL_FRAMES = (8, 40)
FORCED_FRAMES_MAX = 26  #: forced (coverage) episodes are short, so that tiny videos hold several


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


# The share of an expression segment below the label threshold: on each ramp, the part
# where smoothstep(x) < LABEL_THRESHOLD. Solved once, used to hit the configured shares.
_X0 = float(np.interp(LABEL_THRESHOLD, _smoothstep(np.linspace(0, 1, 10001)), np.linspace(0, 1, 10001)))
UNLABELLED_SHARE = _X0 * 2 * float(np.mean(ONSET_RANGE))


def expression_shares(source: str, imbalance: float = 1.0, era: Era = ERAS["abaw2020"]) -> np.ndarray:
    """Target frame share per class of ``era``: the source's shares raised to ``imbalance``
    (a class the source never shows stays at 0).

    imbalance 1 = real-like skew, 0 = all classes equally often, > 1 = more skewed.
    """
    s = np.asarray(EXPR_SHARES[source], np.float64)
    if era.n_classes > len(s):
        other = OTHER_SHARES.get(source, 0.0)
        s = np.append(s * (1 - other), other)
    s = np.where(s > 0, s ** float(imbalance), 0.0)
    return s / s.sum()


def segment_probabilities(shares: np.ndarray) -> np.ndarray:
    """Probability of each class per segment so that frame shares come out as ``shares``.

    Expression segments are longer than neutral ones and lose their faint ends to
    Neutral, so segment probabilities are frame shares corrected for both.
    """
    lam = 1.0 - UNLABELLED_SHARE
    le, ln = np.mean(EXPR_FRAMES), np.mean(NEUTRAL_FRAMES)
    q = np.empty(len(shares))
    q[1:] = shares[1:] / (lam * le)
    q[0] = max(0.0, shares[0] - (1 - lam) / lam * shares[1:].sum()) / ln
    return q / q.sum()


@dataclass
class Track:
    """Per-frame labels of one person over a video (all arrays have n frames)."""

    expr: np.ndarray  #: int8 unified class
    envelope: np.ndarray  #: float32 expression intensity e(t)
    aus: np.ndarray  #: float32 [n, len(DRAWN_AUS)] intensity 0..5
    valence: np.ndarray  #: float32
    arousal: np.ndarray

    def take(self, rows) -> "Track":
        """The labels of frames ``rows`` only."""
        return Track(expr=self.expr[rows], envelope=self.envelope[rows], aus=self.aus[rows],
                     valence=self.valence[rows], arousal=self.arousal[rows])


def smooth_noise(rng: np.random.Generator, n: int, sd: float, length: float) -> np.ndarray:
    """A slowly varying random track: white noise low-passed over ~``length`` frames."""
    k = max(1, int(length))
    raw = rng.standard_normal(n + 4 * k)
    kernel = np.hanning(2 * k + 1)
    kernel /= np.sqrt((kernel ** 2).sum())
    out = np.convolve(raw, kernel, mode="same")[2 * k: 2 * k + n]
    return (out * sd).astype(np.float64)


def expression_track(rng: np.random.Generator, n: int, probs: np.ndarray, forced=()):
    """Class label, envelope and segments [(start, stop, class)] per frame.

    ``probs`` are per-segment class probabilities (see :func:`segment_probabilities`);
    ``forced`` classes come first (so that tiny sets hold every class).
    """
    expr = np.zeros(n, np.int8)
    env = np.zeros(n, np.float64)
    segments = []
    forced = list(forced)
    # Start inside the first segment, as if the camera had been running already (but
    # show forced classes in full).
    t = -int(rng.integers(0, EXPR_FRAMES[1] // 2)) if not forced else 0
    while t < n:
        clear = bool(forced)  # forced episodes are clear examples: a strong apex
        c = forced.pop(0) if forced else int(rng.choice(len(probs), p=probs))
        if c == NEUTRAL:
            t += int(rng.integers(NEUTRAL_FRAMES[0], NEUTRAL_FRAMES[1] + 1))
            continue
        hi = EXPR_FRAMES[1] if not clear else FORCED_FRAMES_MAX
        length = int(rng.integers(EXPR_FRAMES[0], hi + 1))
        apex = rng.uniform(0.6, 1.0) if clear else rng.uniform(*APEX_RANGE)
        on, off = rng.uniform(*ONSET_RANGE, size=2)
        x = (np.arange(length) + 0.5) / length
        e = apex * np.minimum(_smoothstep(x / on), _smoothstep((1 - x) / off))
        lo, stop = max(t, 0), min(n, t + length)
        if stop > lo:
            env[lo:stop] = e[lo - t: stop - t]
            expr[lo:stop] = np.where(env[lo:stop] >= LABEL_THRESHOLD * apex, c, NEUTRAL)
            segments.append((lo, stop, c))
        t += length
    return expr, env, segments


def prototype_intensities(rng: np.random.Generator, c: int, base: np.ndarray) -> np.ndarray:
    """AU intensities [len(base), n_AUs] of class ``c`` along ``base`` = e(t)^gamma.

    Each occurrence draws its own weights (people smile differently); weak prototype AUs
    are sometimes left out.
    """
    out = np.zeros((len(base), len(DRAWN_AUS)))
    for au, w in PROTOTYPES[c].items():
        if w < 0.7 and rng.random() < 0.3:
            continue
        out[:, AU_INDEX[au]] = 5.0 * w * rng.uniform(0.85, 1.1) * base
    return out


def au_intensities(rng: np.random.Generator, segments, env: np.ndarray, spontaneous: float,
                   era: Era = ERAS["abaw2020"]) -> np.ndarray:
    """AU intensity per video frame: expression prototypes plus spontaneous events."""
    n = len(env)
    aus = np.zeros((n, len(DRAWN_AUS)), np.float64)
    base = env ** INTENSITY_GAMMA
    for s, e, c in segments:
        aus[s:e] += prototype_intensities(rng, c, base[s:e])
    if spontaneous > 0:
        for au, share in era.spontaneous.items():
            aus[:, AU_INDEX[au]] += spontaneous_events(rng, n, min(0.9, share * spontaneous), video=True)
    return np.clip(aus, 0, 5)


def spontaneous_events(rng: np.random.Generator, n: int, share: float, video: bool) -> np.ndarray:
    """Short bumps of one AU covering about ``share`` of the frames (one frame if a still)."""
    out = np.zeros(n)
    if share <= 0:
        return out
    if not video:
        hit = rng.random(n) < share
        out[hit] = rng.uniform(0.5, 4.0, hit.sum())
        return out
    mean_len = 14.0
    n_events = rng.poisson(share * n / mean_len)
    for _ in range(n_events):
        length = int(rng.integers(6, 23))
        start = int(rng.integers(-length // 2, n))
        x = (np.arange(length) + 0.5) / length
        bump = rng.uniform(1.0, 4.2) * np.sin(np.pi * x) ** 1.5
        lo, hi = max(0, start), min(n, start + length)
        if hi > lo:
            out[lo:hi] = np.maximum(out[lo:hi], bump[lo - start: hi - start])
    return out


def va_track(rng: np.random.Generator, owner: np.ndarray, env: np.ndarray, video: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Valence and arousal from the class's circumplex position and the envelope, plus drift."""
    proto = np.array([EXPR_VA[c] for c in range(len(EXPR_VA))])
    k = np.sqrt(np.clip(env, 0, 1))
    v = proto[owner, 0] * k
    a = proto[owner, 1] * k + proto[NEUTRAL, 1] * (1 - k)
    n = len(owner)
    if video:
        v = v + rng.normal(0, 0.06) + smooth_noise(rng, n, 0.08, 20)
        a = a + rng.normal(0, 0.06) + smooth_noise(rng, n, 0.08, 20)
    else:
        v = v + rng.normal(0, 0.1, n)
        a = a + rng.normal(0, 0.1, n)
    return np.clip(v, -1, 1), np.clip(a, -1, 1)


def person_track(rng: np.random.Generator, n: int, shares: np.ndarray, spontaneous: float = 1.0,
                 forced=(), era: Era = ERAS["abaw2020"]) -> Track:
    """All labels of one person over ``n`` video frames; ``shares`` = target class shares."""
    expr, env, segments = expression_track(rng, n, segment_probabilities(shares), forced)
    owner = np.zeros(n, np.int64)
    for s, e, c in segments:
        owner[s:e] = c
    aus = au_intensities(rng, segments, env, spontaneous, era)
    v, a = va_track(rng, owner, env, video=True)
    return Track(expr=expr, envelope=env.astype(np.float32), aus=aus.astype(np.float32),
                 valence=v.astype(np.float32), arousal=a.astype(np.float32))


def still_labels(rng: np.random.Generator, n: int, shares: np.ndarray, spontaneous: float = 1.0,
                 forced=(), era: Era = ERAS["abaw2020"]) -> Track:
    """Labels of ``n`` independent still faces (ExpW). A photo catches a face somewhere on
    its expression's envelope, mostly near the apex and never in the faint ends (which
    would be labelled Neutral), so the face share per class is ``shares`` itself."""
    forced = list(forced)
    p = np.asarray(shares, np.float64) / np.sum(shares)
    expr = np.array([forced[i] if i < len(forced) else rng.choice(len(p), p=p) for i in range(n)], np.int8)
    apex = rng.uniform(*APEX_RANGE, n)
    apex[: len(forced)] = np.maximum(apex[: len(forced)], 0.6)  # forced faces are clear examples
    phase = np.clip(rng.beta(4, 1.3, n), LABEL_THRESHOLD, 1)
    env = np.where(expr == NEUTRAL, 0.0, apex * phase)
    base = env ** INTENSITY_GAMMA
    aus = np.zeros((n, len(DRAWN_AUS)))
    for i in range(n):
        aus[i] = prototype_intensities(rng, int(expr[i]), base[i: i + 1])[0]
    if spontaneous > 0:
        for au, share in era.spontaneous.items():
            aus[:, AU_INDEX[au]] += spontaneous_events(rng, n, min(0.9, share * spontaneous), video=False)
    v, a = va_track(rng, expr.astype(np.int64), env, video=False)
    return Track(expr=expr, envelope=env.astype(np.float32), aus=np.clip(aus, 0, 5).astype(np.float32),
                 valence=v.astype(np.float32), arousal=a.astype(np.float32))
