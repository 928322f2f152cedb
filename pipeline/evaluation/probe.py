"""The pixel linear probe: a baseline every network must beat (docs/method.md, "Metrics").

Faces as 32 x 32 grey pixels of the evaluation view (the 134 resize's centre 112 crop),
PCA to 150 dimensions fitted on the training faces, then per task a linear model trained
on that task's training index (every distinct frame once, unweighted; or ``weighted``,
each frame by the draws per epoch the build gave it, so that it sees the balanced
distribution the networks sample): a logistic regression per AU, a multinomial logistic
regression for the expression, a ridge regression for valence and for arousal. A
network that does not beat it has learned no more than pixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression, Ridge

from pipeline.core.images import IMAGE_SIZE, RESIZE

from pipeline.core.index import FrameIndex
from pipeline.core.shards import FaceReader

PIXELS = 32
COMPONENTS = 150
MAX_FRAMES = 20_000  #: per task; a seeded subset beyond that keeps the probe's cost bounded


def pixel_features(index: FrameIndex, positions: np.ndarray | None = None) -> np.ndarray:
    """float32 [n, 32 * 32] grey pixels in [0, 1] of the faces at ``positions`` (default all)."""
    positions = np.arange(len(index)) if positions is None else positions
    reader = FaceReader()
    o = (RESIZE - IMAGE_SIZE) // 2
    out = np.empty((len(positions), PIXELS * PIXELS), np.float32)
    try:
        for i, p in enumerate(positions):
            face = cv2.resize(reader.read(index.shard[p], index.row[p]), (RESIZE, RESIZE), interpolation=cv2.INTER_LINEAR)
            grey = cv2.cvtColor(face[o:o + IMAGE_SIZE, o:o + IMAGE_SIZE], cv2.COLOR_RGB2GRAY)
            out[i] = cv2.resize(grey, (PIXELS, PIXELS), interpolation=cv2.INTER_AREA).reshape(-1) / 255.0
    finally:
        reader.close()
    return out


def _subset(n: int, seed: int) -> np.ndarray:
    return np.arange(n) if n <= MAX_FRAMES else np.sort(np.random.default_rng(seed).choice(n, MAX_FRAMES, False))


@dataclass
class PixelProbe:
    pca: PCA
    au: list  # per AU: a fitted LogisticRegression, or the constant share of positives
    expr: LogisticRegression
    va: list  # valence, arousal: fitted Ridge models

    @classmethod
    def fit(cls, train: dict[str, FrameIndex], seed: int = 0, weighted: bool = False) -> "PixelProbe":
        feats = {t: (pixel_features(ix, pos := _subset(len(ix), seed)), pos) for t, ix in train.items()}
        pca = PCA(COMPONENTS, random_state=seed).fit(np.concatenate([f for f, _ in feats.values()]))
        z = {t: pca.transform(f) for t, (f, _) in feats.items()}

        def weights(task: str, known: np.ndarray) -> np.ndarray | None:
            """The known rows' draws per epoch, scaled to mean 1 (the regularisation's
            strength stays that of the unweighted fit), or None unweighted."""
            w = train[task].weight[feats[task][1]][known]
            return w / w.mean() if weighted and len(w) else None

        au_y = train["AU"].au[feats["AU"][1]]
        au = []
        for j in range(au_y.shape[1]):  # the AUs of the build's schema
            known = au_y[:, j] >= 0
            y = au_y[known, j]
            au.append(LogisticRegression(max_iter=2000).fit(z["AU"][known], y, sample_weight=weights("AU", known))
                      if len(np.unique(y)) == 2 else float(y.mean()) if len(y) else 0.0)
        ex_y = train["EXPR"].expr[feats["EXPR"][1]]
        known = ex_y >= 0
        expr = LogisticRegression(max_iter=2000).fit(z["EXPR"][known], ex_y[known], sample_weight=weights("EXPR", known))
        va_y = train["VA"].va[feats["VA"][1]]
        va = []
        for d in range(2):
            known = ~np.isnan(va_y[:, d])
            va.append(Ridge(alpha=1.0).fit(z["VA"][known], va_y[known, d], sample_weight=weights("VA", known)))
        return cls(pca, au, expr, va)

    def predict(self, index: FrameIndex) -> dict[str, np.ndarray]:
        z = self.pca.transform(pixel_features(index))
        au = np.stack([m.predict_proba(z)[:, 1] if hasattr(m, "predict_proba") else np.full(len(z), m)
                       for m in self.au], axis=1)
        expr = np.zeros((len(z), len(index.schema.expressions)))
        expr[:, self.expr.classes_] = self.expr.predict_proba(z)
        va = np.clip(np.stack([m.predict(z) for m in self.va], axis=1), -1, 1)
        return {"AU": au.astype(np.float32), "EXPR": expr.astype(np.float32), "VA": va.astype(np.float32)}
