"""New inputs for ``mtaffect predict``: which files are videos or images, their frames
streamed one at a time (memory does not grow with a video's length), and the overlay
video written as frames come."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.core.errors import DataError
from pipeline.core.fileio import OUTPUTS_LIST, temp_path
from pipeline.extraction.video import quiet_opencv
from pipeline.extraction.worker import read_rgb
from pipeline.predict.outputs import earlier_outputs
from pipeline.extraction.sources.affwild2_layout import VIDEO_EXTENSIONS
from pipeline.extraction.sources.base import IMAGE_EXTENSIONS
from pipeline.extraction.sources.unlabelled import not_read

quiet_opencv()  # our one line names the file and says why, OpenCV's own lines only confuse


@dataclass(frozen=True)
class Input:
    """One thing to predict on: a video, one image, or a folder of images (sorted by name)."""

    path: Path
    kind: str  # "video" | "image" | "folder"
    images: tuple[Path, ...] = ()

    @property
    def name(self) -> str:
        """The output files' name: the file's stem, or the folder's name (``.`` is the name
        of the folder it stands for: never a hidden ``.csv``)."""
        return self.path.resolve().name if self.kind == "folder" else self.path.stem


def find_inputs(paths) -> tuple[list[Input], list[str]]:
    """Check every given path before any work: a video, an image, or a folder holding
    videos and/or images (each video of a folder is its own input; its images are one).
    Files of a folder that an earlier predict or export-abaw wrote there (its outputs
    list) are left out. Returns the inputs, and a line per folder on what it holds and is
    not read (earlier outputs, subfolders, other files)."""
    found, notices = [], []
    if any(str(given) == "" for given in paths):  # Path("") is the current folder
        raise DataError("an empty input name was given (an unset shell variable?)")
    for given in map(Path, paths):
        if not given.exists():
            link = " (a symbolic link to nothing, or a loop of links)" if given.is_symlink() else ""
            raise DataError(f"{given}: no such file or folder{link}")
        if given.is_dir():
            # an earlier run's timeline is a PNG: read back, it would be a photo to predict on
            written, commands = earlier_outputs(given)
            if written:
                notices.append(f"{given}: {len(written)} file(s) written by an earlier mtaffect "
                               f"{' and '.join(commands)} left out ({OUTPUTS_LIST})")
            entries = sorted(p for p in given.iterdir() if p.is_file() and p not in written and p.name != OUTPUTS_LIST)
            notices += not_read(given, entries, (*VIDEO_EXTENSIONS, *IMAGE_EXTENSIONS))
            videos = [p for p in entries if p.suffix.lower() in VIDEO_EXTENSIONS]
            images = tuple(p for p in entries if p.suffix.lower() in IMAGE_EXTENSIONS)
            if not videos and not images:
                subfolders = any(p.is_dir() for p in given.iterdir())
                raise DataError(f"{given}: no video ({', '.join(VIDEO_EXTENSIONS)}) or image "
                                f"({', '.join(IMAGE_EXTENSIONS)}) in this folder"
                                + (f" (subfolders are not searched: give them, e.g. {given}/*)" if subfolders else "")
                                + (f" ({len(written)} file(s) an earlier mtaffect wrote there left out)" if written
                                   else ""))
            found += [_video(v) for v in videos] + ([Input(given, "folder", images)] if images else [])
        elif not given.is_file():
            raise DataError(f"{given}: not a regular file (a pipe or a device cannot be read as a video or image)")
        elif given.suffix.lower() in VIDEO_EXTENSIONS:
            found.append(_video(given))
        elif given.suffix.lower() in IMAGE_EXTENSIONS:
            found.append(Input(given, "image", (given,)))
        else:
            raise DataError(f"{given}: neither a video ({', '.join(VIDEO_EXTENSIONS)}) nor an image "
                            f"({', '.join(IMAGE_EXTENSIONS)})")
    return found, notices


def _video(path: Path) -> Input:
    try:  # OpenCV would only say it cannot open it
        with open(path, "rb"):
            pass
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror or e})") from None
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes)")
    cap = open_video(path)
    opened = cap.isOpened()
    ok = opened and cap.grab()
    empty = opened and not ok and cap.get(cv2.CAP_PROP_FRAME_COUNT) <= 0
    cap.release()
    if empty:
        raise DataError(f"{path}: holds no frame (a video container with nothing in it)")
    if not ok:
        raise DataError(f"{path}: cannot be decoded as a video (damaged, cut short, or not a video)")
    return Input(path, "video")


def open_video(path: Path) -> cv2.VideoCapture:
    """FFmpeg alone, as the extraction decodes: when it fails, OpenCV's fallback readers
    print their own lines on stderr (e.g. "Unexpected element" for a truncated AVI)."""
    return cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)


@dataclass
class Frame:
    """One picture: its number (video frame, or image number in the folder's order), its
    time in seconds (NaN for images), the file it came from (images), RGB uint8 pixels."""

    number: int
    time: float
    file: str
    image: np.ndarray


def frames_not_decoded(path: Path, decoded: int, listed: int) -> int:
    """How many of the frames a video's container lists were lost to damage or truncation
    (0 when none, or unknown). An AVI lists its frames exactly, and FFmpeg skips its damaged
    chunks without an error, counting the frames after them on (time stamps too): neither
    shows where, so every frame short counts. Other containers' counts may be estimates or
    include frames an edit list hides (an edited video: no damage): only a clear shortfall."""
    short = max(0, listed - decoded)
    return short if path.suffix.lower() == ".avi" or short > max(3, listed // 20) else 0


@dataclass
class VideoFrames:
    """Every ``every``-th frame of a video, decoded in order, each timed by the decoder's own
    time stamp (a phone's variable frame rate makes frame / average rate wrong by tenths of
    a second). After iterating, ``decoded`` is the number of frames read, ``listed`` what
    the container claims, and ``lost`` how many of those were not decoded
    (:func:`frames_not_decoded`)."""

    path: Path
    every: int = 1
    fps: float = 0.0
    listed: int = 0
    decoded: int = 0
    lost: int = 0

    def __post_init__(self):
        cap = open_video(self.path)
        self.fps, self.listed = cap.get(cv2.CAP_PROP_FPS) or 0.0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        cap.release()

    def __iter__(self):
        cap = open_video(self.path)
        try:
            number = 0
            while True:
                if number % self.every:
                    if not cap.grab():
                        break
                else:
                    ok, bgr = cap.read()
                    if not ok:
                        break
                    time = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000
                    yield Frame(number, time, "", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                number += 1
            self.decoded = number
            self.lost = frames_not_decoded(self.path, number, self.listed)
        finally:
            cap.release()


def image_frames(inp: Input, skipped: list, keep_unreadable: bool = False):
    """The images of an image input, numbered in name order; an unreadable or truncated
    one (read as the extraction reads it) is appended to ``skipped`` as (file, reason) and
    yields no frame, or with ``keep_unreadable`` a frame without an image (its row says
    no face: a per-image submission must not lose it without a word)."""
    for number, path in enumerate(inp.images):
        # cv2.imread decodes a truncated JPEG as a half-grey picture; read_rgb refuses it
        rgb, why, _ = read_rgb(str(path))
        if rgb is None:
            why = misnamed_video(path) or why
            skipped.append((str(path), why))
            if not keep_unreadable:
                continue
        yield Frame(number, float("nan"), path.name, rgb)


#: How a file named as an image but holding a video is described (single file or in a folder).
VIDEO_BEHIND = "a video behind an image name"
#: The first bytes of the image formats predict reads: FFmpeg opens such a file cut short
#: as a one-frame "video" (its image demuxer), which is still a truncated image.
IMAGE_MAGIC = (b"\xff\xd8", b"\x89PNG", b"BM", b"II*\x00", b"MM\x00*")


def misnamed_video(path: Path) -> str:
    """Why an image name that OpenCV cannot decode as an image is a video (a clip renamed
    .jpg): the reason to give, or "" when it is no video either."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return ""
    if not head or head.startswith(IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return ""
    cap = open_video(path)
    try:
        if not (cap.isOpened() and cap.grab()):
            return ""
    finally:
        cap.release()
    return f"{VIDEO_BEHIND} ({path.suffix}): rename it to its video extension"


class OverlayWriter:
    """The input video with each face's box, track id, top expression and V/A drawn on it
    (OpenCV, mp4v), written under a temporary name and renamed by :meth:`close` only once
    it reads back whole (OpenCV's writer reports no error, e.g. on a full disk)."""

    def __init__(self, path: Path, fps: float):
        self.path, self.tmp = path, temp_path(path).with_suffix(".tmp.mp4")  # the suffix picks the container
        self.fps, self.writer, self.frames = fps if fps > 0 else 25.0, None, 0

    def add(self, frame: Frame, rows: list[dict]) -> None:
        image = cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR)
        if self.writer is None:
            h, w = image.shape[:2]
            self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self.writer.isOpened():
                raise OSError(f"{self.path}: OpenCV cannot write an mp4v video here")
        for row in rows:
            if not row["face"]:
                cv2.putText(image, "no face", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 255), 2)
                continue
            x1, y1, x2, y2 = (int(round(row[k])) for k in ("box_x1", "box_y1", "box_x2", "box_y2"))
            cv2.rectangle(image, (x1, y1), (x2, y2), (0, 220, 0), 2)
            label = f"#{row['track']} {row['expression']} V{row['valence']:+.2f} A{row['arousal']:+.2f}"
            cv2.putText(image, label, (x1, max(16, y1 - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 220, 0), 1)
        self.writer.write(image)
        self.frames += 1

    def close(self) -> None:
        if self.writer is None:
            return
        self.writer.release()
        cap = cv2.VideoCapture(str(self.tmp))
        readable = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
        cap.release()
        if readable != self.frames:
            self.tmp.unlink(missing_ok=True)
            raise OSError(f"{self.path}: the video could not be written whole ({readable} of {self.frames} frames "
                          "read back; is the disk full?): not written")
        self.tmp.replace(self.path)

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.release()
        self.tmp.unlink(missing_ok=True)
