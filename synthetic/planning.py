"""The plan of a data set: its named sizes, and one job per video, subject, clip or batch
of images, made from the seed alone (cheap: no pixels).

Each job later draws its random numbers from its own generator, seeded by (seed, source,
job number) (``job_rng``), so the files do not depend on the number of workers or on the
order in which jobs finish.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthetic.params import SynthParams
from pipeline.core.labels import TASKS

from .eras import ERAS

#: Every data set synth can write (``eras.Era.sources``: which a run writes).
SOURCES = ("affwild2", "disfa", "expw", "afewva", "saffwild2", "affectnet")
SOURCE_IDS = {s: i + 1 for i, s in enumerate(SOURCES)}


# --- sizes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SizeSpec:
    """How much of each source a named size holds."""

    affwild2_train: int  #: training videos
    affwild2_val: int  #: validation videos (all three tasks labelled)
    affwild2_frames: tuple[int, int]  #: frames per training video (range)
    affwild2_val_frames: tuple[int, int]  #: frames per validation video (range)
    two_person_every: int  #: every k-th training video shows two people (_left/_right); 0 none
    disfa_subjects: int
    disfa_frames: int
    expw_images: int
    afewva_clips: int
    afewva_frames: tuple[int, int]
    afewva_actors: int  #: actors recur across clips, as in films
    coverage: int  #: every expression is forced this many times per source and split
    saffwild2_videos: int = 0  #: s-Aff-Wild2 (2022 files): videos its frames come from, a quarter validation
    saffwild2_frames: tuple[int, int] = (0, 0)
    affectnet_images: int = 0  #: AffectNet (2022 files)

    def scaled(self, k: int) -> "SizeSpec":
        """k times the training data; the validation videos stay (already enough for narrow intervals)."""
        return SizeSpec(
            affwild2_train=self.affwild2_train * k, affwild2_val=self.affwild2_val,
            affwild2_frames=self.affwild2_frames, affwild2_val_frames=self.affwild2_val_frames,
            two_person_every=self.two_person_every,
            disfa_subjects=self.disfa_subjects * k, disfa_frames=self.disfa_frames,
            expw_images=self.expw_images * k, afewva_clips=self.afewva_clips * k,
            afewva_frames=self.afewva_frames, afewva_actors=self.afewva_actors * k, coverage=self.coverage * k,
            saffwild2_videos=self.saffwild2_videos * k, saffwild2_frames=self.saffwild2_frames,
            affectnet_images=self.affectnet_images * k,
        )


# Many short validation videos: a score's spread comes from how much videos differ, not
# from how many frames each has, so the paired intervals of the demo's model comparison
# narrow with the number of videos. Much shorter ones stop being like the training videos
# (mostly onsets). Measurements: docs/architecture.md, "Validation size".
_DEMO = SizeSpec(affwild2_train=16, affwild2_val=500, affwild2_frames=(150, 250), affwild2_val_frames=(40, 70),
                 two_person_every=6,
                 disfa_subjects=6, disfa_frames=300, expw_images=1400, afewva_clips=30,
                 afewva_frames=(24, 48), afewva_actors=12, coverage=2,
                 saffwild2_videos=16, saffwild2_frames=(150, 250), affectnet_images=1500)
SIZES: dict[str, SizeSpec] = {
    # Seconds: every class and AU present a few times; tests and the DVC end-to-end test.
    "tiny": SizeSpec(affwild2_train=4, affwild2_val=2, affwild2_frames=(80, 96), affwild2_val_frames=(80, 96),
                     two_person_every=4,
                     disfa_subjects=2, disfa_frames=72, expw_images=40, afewva_clips=4,
                     afewva_frames=(24, 32), afewva_actors=3, coverage=1,
                     saffwild2_videos=4, saffwild2_frames=(60, 90), affectnet_images=60),
    # The default run: about 36,000 faces (27,000 of them validation); DISFA + ExpW (what MTCNN
    # must scan) about 3,200.
    "demo": _DEMO,
    "medium": _DEMO.scaled(10),  # ~120k faces
    "large": _DEMO.scaled(30),  # ~300k faces
    "huge": _DEMO.scaled(100),  # ~950k faces
}



def size_spec(name: str) -> SizeSpec:
    """The named size (``SynthParams.dataset_size``)."""
    if name not in SIZES:
        raise ValueError(f"unknown synthetic size {name!r}; choose one of {', '.join(SIZES)}")
    return SIZES[name]


# --- the plan ------------------------------------------------------------------------------


@dataclass
class Job:
    """One unit of work: a video (Aff-Wild2, DISFA), a clip (AFEW-VA) or a batch of images (ExpW)."""

    source: str
    index: int  #: job number within its source (seeds its random generator)
    name: str  #: video stem / subject / clip / first image
    split: str = "train"
    frames: int = 0
    width: int = 320
    height: int = 240
    tasks: tuple[str, ...] = ()
    people: int = 1
    forced: tuple[tuple[int, ...], ...] = ((),)  #: per person: classes to show first
    actor: int = 0  #: AFEW-VA
    folder: str = ""  #: AFEW-VA NN
    images: tuple[str, ...] = ()  #: ExpW and AffectNet image names
    labelled_frames: int = 0  #: DISFA: frames with label lines


def _round_robin(classes: list[int], n_slots: int) -> list[list[int]]:
    slots: list[list[int]] = [[] for _ in range(max(1, n_slots))]
    for i, c in enumerate(classes):
        slots[i % len(slots)].append(c)
    return slots


def _forced_classes(rng, coverage: int, n_classes: int = 7) -> list[int]:
    """The classes every source shows a few clear examples of (``coverage`` each, Neutral aside)."""
    classes = [c for c in range(1, n_classes)] * coverage
    return [int(c) for c in rng.permutation(classes)]


#: Training videos' task sets, as in Aff-Wild2 where most videos carry one or two tasks.
TASK_SETS = [("VA",), ("EXPR",), ("AU",), ("AU", "EXPR"), ("AU", "VA"), ("EXPR", "VA"), ("AU", "EXPR", "VA")]
TASK_SET_P = [0.28, 0.15, 0.1, 0.1, 0.1, 0.1, 0.17]
#: The first training videos take these, so even a tiny set has every task.
FIRST_TASK_SETS = [("AU", "EXPR", "VA"), ("AU",), ("EXPR",), ("VA",)]
AFFWILD2_FRAME_SIZES = [(320, 240), (480, 270)]


def plan(config: SynthParams) -> list[Job]:
    """Every job of the data set, in the order their results are written."""
    spec = size_spec(config.dataset_size)
    rng = np.random.default_rng([config.seed, 0])
    jobs: list[Job] = []

    # Aff-Wild2: training videos (some with two people), then validation videos.
    k = 0
    for split, count in (("train", spec.affwild2_train), ("val", spec.affwild2_val)):
        videos = []
        for i in range(count):
            every = spec.two_person_every
            two = split == "train" and every > 0 and i % every == every - 1
            w, h = AFFWILD2_FRAME_SIZES[1 if two else int(rng.integers(len(AFFWILD2_FRAME_SIZES)))]
            if split == "val":
                tasks = TASKS
            elif i < len(FIRST_TASK_SETS):
                tasks = FIRST_TASK_SETS[i]
            else:
                tasks = TASK_SETS[int(rng.choice(len(TASK_SETS), p=TASK_SET_P))]
            low, high = spec.affwild2_val_frames if split == "val" else spec.affwild2_frames
            n = int(rng.integers(low, high + 1))
            videos.append(Job(source="affwild2", index=k, name=f"{k + 1}-30-{w}x{h}", split=split, frames=n,
                              width=w, height=h, tasks=tuple(tasks), people=2 if two else 1))
            k += 1
        # Forced classes go to the videos labelled for expressions first.
        order = sorted(range(len(videos)), key=lambda j: "EXPR" not in videos[j].tasks)
        slots = _round_robin(_forced_classes(rng, spec.coverage, ERAS[config.label_schema].n_classes), len(videos))
        for slot, j in zip(slots, order):
            videos[j].forced = (tuple(slot),) + ((),) * (videos[j].people - 1)
        jobs.extend(videos)

    # DISFA: one job per subject.
    slots = _round_robin(_forced_classes(rng, spec.coverage), spec.disfa_subjects)
    for i in range(spec.disfa_subjects):
        # Some label files stop a few frames before the video ends.
        tail = int(rng.integers(2, 7)) if rng.random() < 0.5 else 0
        jobs.append(Job(source="disfa", index=i, name=f"SN{i + 1:03d}", frames=spec.disfa_frames,
                        forced=(tuple(slots[i]),), labelled_frames=spec.disfa_frames - tail))

    # ExpW: batches of images; the first batch carries the forced classes.
    per_job = 50
    forced = _forced_classes(rng, 3 * spec.coverage)
    for j, start in enumerate(range(0, spec.expw_images, per_job)):
        names = tuple(f"img_{i:06d}.jpg" for i in range(start, min(start + per_job, spec.expw_images)))
        jobs.append(Job(source="expw", index=j, name=names[0], images=names,
                        forced=(tuple(forced) if j == 0 else (),)))

    # AFEW-VA: clips numbered 001.., spread over folders 01..12 in contiguous blocks.
    n = spec.afewva_clips
    slots = _round_robin(_forced_classes(rng, spec.coverage), n)
    for i in range(n):
        folder = f"{i * 12 // max(n, 1) + 1:02d}" if n >= 12 else f"{i + 1:02d}"
        frames = int(rng.integers(spec.afewva_frames[0], spec.afewva_frames[1] + 1))
        jobs.append(Job(source="afewva", index=i, name=f"{i + 1:03d}", folder=folder, frames=frames,
                        actor=int(rng.integers(spec.afewva_actors)), forced=(tuple(slots[i]),)))
    if "saffwild2" in ERAS[config.label_schema].sources:
        jobs.extend(_plan_2022(rng, spec))
    return jobs


def _plan_2022(rng, spec: SizeSpec) -> list[Job]:
    """s-Aff-Wild2's videos (the last quarter validation) and AffectNet's batches of images."""
    jobs = []
    n = spec.saffwild2_videos
    slots = _round_robin(_forced_classes(rng, spec.coverage, 8), n)
    for i in range(n):
        w, h = AFFWILD2_FRAME_SIZES[int(rng.integers(len(AFFWILD2_FRAME_SIZES)))]
        frames = int(rng.integers(spec.saffwild2_frames[0], spec.saffwild2_frames[1] + 1))
        jobs.append(Job(source="saffwild2", index=i, name=f"mtl-{i + 1:03d}", split="val" if i >= n - n // 4 else "train",
                        frames=frames, width=w, height=h, tasks=TASKS, forced=(tuple(slots[i]),)))
    per_job = 50
    forced = _forced_classes(rng, 3 * spec.coverage, 8)
    for j, start in enumerate(range(0, spec.affectnet_images, per_job)):
        names = tuple(f"{j + 1}/{i:06d}.jpg" for i in range(start, min(start + per_job, spec.affectnet_images)))
        jobs.append(Job(source="affectnet", index=j, name=names[0], images=names, forced=(tuple(forced) if j == 0 else (),)))
    return jobs


def job_rng(config: SynthParams, job: Job) -> np.random.Generator:
    """The random stream of one job: the same in any worker, whatever ran before."""
    return np.random.default_rng([config.seed, SOURCE_IDS[job.source], job.index])
