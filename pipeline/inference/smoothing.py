"""A model's outputs smoothed over time: ``evaluate``'s smoothed frame ensemble (the baseline
a temporal model has to beat) and ``predict --smooth``, one definition for both.

Each frame's AU and EXPR probabilities and VA become their mean over the ``window`` (odd)
frames centred on it, within its run. A run is a stretch of consecutive frames of one face:
a video's frames in the validation set, a face track's in predict, consecutive meaning
frame numbers ``step`` apart (``step``: predict's ``--every``). A frame where the face was
not found, or a longer gap, ends the run: no mean crosses it, and near a run's ends the
window holds fewer frames. Each window's values are added in frame order, in float64, so
the whole-table version (:func:`smooth`) and the streamed one (:class:`CentredStream`) give
the same numbers to the last bit (``tests/test_smoothing.py``).
"""
from __future__ import annotations

from collections import deque

import numpy as np

from pipeline.core.index import runs
from pipeline.core.labels import TASKS


def centred_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average of one run's rows ``x`` [n, d] over ``window`` (odd) rows."""
    half, n = window // 2, len(x)
    total, count = np.zeros(x.shape, np.float64), np.zeros(n)
    for offset in range(-half, half + 1):  # each window's values in frame order
        lo, hi = max(0, -offset), min(n, n - offset)
        if lo >= hi:  # a run shorter than the window
            continue
        total[lo:hi] += x[lo + offset:hi + offset]
        count[lo:hi] += 1
    return (total / count[:, None]).astype(x.dtype)


def smooth(preds: dict[str, np.ndarray], videos: np.ndarray, frames: np.ndarray, window: int) -> dict:
    """``preds`` (rows in any order) with AU, EXPR and VA smoothed within each video's runs."""
    order = np.lexsort((frames, videos))
    out = {k: v.copy() for k, v in preds.items()}
    for start, stop in runs(videos[order], frames[order]):
        rows = order[start:stop]
        for task in TASKS:
            out[task][rows] = centred_mean(preds[task][rows], window)
    return out


def pop_ready(queue) -> list:
    """``(frame, rows)`` from the front of a queue of ``[frame, rows, rows still pending]``
    entries, as long as the front one has nothing pending: frames leave in order."""
    out = []
    while queue and queue[0][2] == 0:
        frame, rows, _ = queue.popleft()
        out.append((frame, rows))
    return out


class CentredStream:
    """The same smoothing over a stream of frames, one face track at a time, in constant
    memory: ``push`` takes a frame's number and its rows (dicts with ``face``, ``track``
    and the ``columns``) and returns the frames now final, in order, as (frame, rows) with
    the rows' ``columns`` smoothed and ``decide(row)`` applied to each face's row again.
    A frame waits until ``window // 2`` more frames of each of its faces' runs have come,
    or until those runs end."""

    def __init__(self, window: int, step: int, columns: list[str], decide):
        self.half, self.step, self.columns, self.decide = max(window, 1) // 2, step, columns, decide
        self.runs: dict[int, _Run] = {}
        self.queue: deque = deque()  # [frame, rows, faces not final yet]

    def push(self, frame, number: int, rows: list[dict]) -> list:
        entry = [frame, rows, 0]
        faces = {row["track"]: row for row in rows if row["face"]}
        for track in list(self.runs):  # a run ends where its face is missing or a frame skipped
            if track not in faces or number != self.runs[track].last + self.step:
                self.runs.pop(track).finish(self)
        for track, row in faces.items():
            run = self.runs.setdefault(track, _Run())
            run.add(number, row, entry, self)
        self.queue.append(entry)
        return self._ready()

    def flush(self) -> list:
        for run in self.runs.values():
            run.finish(self)
        self.runs.clear()
        return self._ready()

    def _ready(self) -> list:
        return pop_ready(self.queue)


class _Run:
    """A track's current run: its values from ``half`` frames before the first row not yet
    final on, and those rows."""

    def __init__(self):
        self.last, self.first = None, 0  # last frame number; run position of values[0]
        self.values: list[np.ndarray] = []
        self.pending: deque = deque()  # (run position, row, queue entry) not yet final

    def add(self, number: int, row: dict, entry: list, stream: CentredStream) -> None:
        self.last = number
        self.values.append(np.array([row[c] for c in stream.columns], np.float64))
        self.pending.append((self.first + len(self.values) - 1, row, entry))
        entry[2] += 1
        end = self.first + len(self.values)  # the run's length so far
        while self.pending and self.pending[0][0] + stream.half < end:
            self._final(stream, end)

    def finish(self, stream: CentredStream) -> None:
        end = self.first + len(self.values)
        while self.pending:
            self._final(stream, end)

    def _final(self, stream: CentredStream, end: int) -> None:
        position, row, entry = self.pending.popleft()
        lo, hi = max(0, position - stream.half), min(end, position + stream.half + 1)
        total = np.zeros(len(stream.columns))
        for k in range(lo, hi):  # in frame order, as centred_mean adds them
            total += self.values[k - self.first]
        row.update(zip(stream.columns, (total / (hi - lo)).tolist()))
        stream.decide(row)
        entry[2] -= 1
        keep = (self.pending[0][0] if self.pending else end) - stream.half  # the next window's first value
        while self.first < keep and self.values:
            self.values.pop(0)
            self.first += 1
