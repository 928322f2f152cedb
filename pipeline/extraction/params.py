"""Where the datasets are (``sources``) and how faces are extracted from them (``extract``)."""
from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field

from pipeline.core.params import Batch, Fraction, PathName, Section, Workers


class SourceParams(Section):
    """Where one dataset is (``sources.<name>``), and what DVC watches for its changes."""

    section = "sources"

    root: PathName  #: the dataset's folder, in the layout it ships in (docs/formats.md)
    #: the root itself, or a small file that changes whenever the data do (the version
    #: file ``synth`` writes, or the dataset's ``.dvc`` file): DVC then hashes that file
    #: instead of walking every file of the dataset again (pipeline/extraction/dataset_version.py)
    version: PathName
    #: Aff-Wild2: the annotations folder, relative to root, when it is not "annotations"
    #: (the 2022+ releases ship e.g. "5th ABAW Annotations")
    annotations: Optional[str] = None


class ExtractParams(Section):
    """Face extraction per source (``extract@<source>``)."""

    section = "extract"

    out: PathName = "data/faces"  #: shards and tables go to <out>/<source>/
    workers: Workers = 2  #: worker processes (work is split by video)
    batch: Batch = 16  #: frames per MTCNN batch and tracking block (predict uses the same, from the bundle)
    detect_size: Annotated[int, Field(ge=48, le=4096)] = 320  #: long side of the frame the detector sees
    min_face: Annotated[int, Field(ge=12, le=4096)] = 40  #: MTCNN min_face_size, in detector pixels
    min_prob: Fraction = 0.9  #: faces below this MTCNN probability are not kept
    track: bool = True  #: search near the previous face before a full-frame search
    template_scale: Annotated[float, Field(gt=0, le=4)] = 1.0  #: < 1 shows more context around the face
    face_size: Annotated[int, Field(ge=16, le=1024)] = 112  #: side of the aligned face, pixels
    shard_faces: Annotated[int, Field(ge=1, le=65_536)] = 4096  #: faces per HDF5 shard (4096 faces of 112 x 112 x 3 bytes: 154 MB)
    on_error: Literal["skip", "fail"] = "skip"  #: bad rows/files: count and skip, or stop
    use_cropped_aligned: bool = True  #: Aff-Wild2: use the organisers' crops when present
