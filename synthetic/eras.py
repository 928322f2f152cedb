"""The label set a synthetic data set is written in (``synth.label_schema``).

``abaw2020``: the paper's files: Aff-Wild2 in its 2020 layout with 8 AUs and the 7 basic
expressions. ``abaw2022``: the files of the 2022+ releases: Aff-Wild2 in the
``*_Challenge`` layout with 12 AUs and 8 classes (Other last), plus the two data sets of
that era: s-Aff-Wild2 (the multi-task challenge's frames, each task known or not on its
own) and AffectNet (stills labelled with expression and valence/arousal). The faces also
show AU10 and AU24 and the Other class (pressed lips under a raised upper lip: a state
none of the 7 basic ones names). The other sources label what they always did.
"""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.core.schema import ABAW2020, ABAW2022, EXPRESSIONS

from .landmarks import DRAWN_AUS, LATER_AUS

#: The spontaneous (expression-free) AU events per AU, as a share of frames at
#: ``spontaneous_au`` 1. Talking makes AU25/26 common; AU9, 15, 20 and 23 stay rare, as in
#: the real sets. The 2022 faces add AU10 and AU24 (after the others: the 2020 faces draw
#: the same random numbers as they always did).
_SPONTANEOUS_2020: dict[int, float] = {
    1: 0.08, 2: 0.05, 4: 0.08, 5: 0.03, 6: 0.05, 7: 0.08, 9: 0.02, 12: 0.06,
    15: 0.02, 17: 0.06, 20: 0.02, 23: 0.03, 25: 0.50, 26: 0.15,
}

#: Frame share of Other per source in the 2022 files (Aff-Wild2's 2022 EXPR set labels
#: about one frame in eight Other); sources that label 7 classes show none.
OTHER_SHARES = {"affwild2": 0.12, "saffwild2": 0.12, "affectnet": 0.013}  # AffectNet: Contempt


def _numbers(names) -> tuple[int, ...]:
    return tuple(int(a[2:]) for a in names)


@dataclass(frozen=True)
class Era:
    name: str  #: the schema of build.label_schema these files are for
    n_classes: int  #: expression classes the faces show (7, or 8 with Other)
    spontaneous: dict[int, float]
    drawn_aus: tuple[int, ...]  #: the AUs the faces show (the ground truth's intensity columns)
    truth_aus: tuple[int, ...]  #: the binary AUs the ground truth holds (every AU some file labels)
    affwild2_aus: tuple[str, ...]  #: the AU columns of Aff-Wild2's AU files
    affwild2_layout: str  #: the release layout of Aff-Wild2's annotations ("2020" / "2022")
    sources: tuple[str, ...]  #: the data sets written

    @property
    def classes(self) -> tuple[str, ...]:
        return EXPRESSIONS[: self.n_classes]


ERAS = {
    "abaw2020": Era("abaw2020", 7, _SPONTANEOUS_2020, DRAWN_AUS[: -len(LATER_AUS)], _numbers(ABAW2020.aus),
                    ABAW2020.aus, "2020", ("affwild2", "disfa", "expw", "afewva")),
    "abaw2022": Era("abaw2022", 8, {**_SPONTANEOUS_2020, 10: 0.03, 24: 0.04}, DRAWN_AUS,
                    tuple(sorted(set(_numbers(ABAW2020.aus)) | set(_numbers(ABAW2022.aus)))), ABAW2022.aus, "2022",
                    ("affwild2", "disfa", "expw", "afewva", "saffwild2", "affectnet")),
}
