"""Where each task's annotations are in an Aff-Wild2 release: the 2020 layout (``AU_Set/
Training_Set``, ...) or the 2022+ one (``AU_Detection_Challenge/Train_Set``, ...), under
the annotations folder (docs/formats.md, "Aff-Wild2"); and which file in ``videos/`` is a
video's."""
from __future__ import annotations

import os
import re
from pathlib import Path

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm")

#: Per release: the folder of each task's annotations, and of each split.
LAYOUTS = {
    "2020": ({"AU": ("AU_Set",), "EXPR": ("EXPR_Set",), "VA": ("VA_Set",)},
             {"Training_Set": "train", "Validation_Set": "val"}),
    "2022": ({"AU": ("AU_Detection_Challenge",), "EXPR": ("EXPR_Classification_Challenge", "EXPR_Recognition_Challenge"),
              "VA": ("VA_Estimation_Challenge",)},
             {"Train_Set": "train", "Validation_Set": "val"}),
}


def task_folders(ann: Path) -> tuple[list[tuple[str, Path, str]], list[str]]:
    """(task, folder, split) of every annotation folder under ``ann``, in one release's
    layout, and notes naming each folder in a task folder that is no split folder of that
    layout (``Val_Set``: not read); an error naming ``ann`` when it holds none, or both releases'."""
    found = {}
    for release, (task_dirs, split_dirs) in LAYOUTS.items():
        folders = [(task, ann / d / s, split) for task, names in task_dirs.items() for d in names
                   for s, split in split_dirs.items() if (ann / d / s).is_dir()]
        if folders:
            found[release] = folders
    if not found:
        raise FileNotFoundError(f"{ann}: no annotation folders of either release (AU_Set/Training_Set/... "
                                f"or AU_Detection_Challenge/Train_Set/...)")
    if len(found) > 1:
        raise FileNotFoundError(f"{ann}: holds the 2020 and the 2022 layouts: point 'annotations' at one of them")
    release, folders = next(iter(found.items()))
    task_dirs, split_dirs = LAYOUTS[release]
    for names in task_dirs.values():  # which of two label sets would win is not ours to guess
        if sum((ann / d).is_dir() for d in names) > 1:
            raise FileNotFoundError(f"{ann}: holds {' and '.join(names)} (one task's labels twice): keep one")
    notes = [f"{ann / d / sub.name}: not read, no split folder of the {release} layout "
             f"(expected {' or '.join(split_dirs)})"
             for names in task_dirs.values() for d in names if (ann / d).is_dir()
             for sub in sorted((ann / d).iterdir()) if sub.is_dir() and sub.name not in split_dirs]
    return folders, notes


def annotations_hint(root: Path) -> str:
    """Where the annotations might be instead: the folders of ``root`` that hold a task
    folder of either release (the 2022+ releases name theirs e.g. ``5th ABAW Annotations``)."""
    tasks = {d for task_dirs, _ in LAYOUTS.values() for names in task_dirs.values() for d in names}
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and any((d / t).is_dir() for t in tasks)) \
        if root.is_dir() else []
    if not found:
        return ""
    return "; " + " and ".join(repr(f) for f in found) + f" in {root} {'holds' if len(found) == 1 else 'hold'} " \
        f"annotation folders: set sources.affwild2.annotations: {found[0]!r} in params.yaml"


def video_files(root: Path) -> dict[str, list[str]]:
    """Name -> the video files of that name in ``videos/`` and its subfolders (paths relative
    to ``videos/``, sorted), the extension matched in any case (``.AVI``, as DISFA's): the
    folder is listed once, not globbed once per video."""
    folder = root / "videos"
    found: dict[str, list[str]] = {}
    if not folder.is_dir():
        return found

    def scan(path: Path, prefix: str, deeper: bool) -> None:
        for entry in os.scandir(path):
            stem, ext = os.path.splitext(entry.name)
            if entry.is_dir():
                if deeper:
                    scan(Path(entry.path), f"{entry.name}/", False)
            elif ext.lower() in VIDEO_EXTENSIONS:
                found.setdefault(stem, []).append(prefix + entry.name)

    scan(folder, "", True)
    return {name: sorted(paths) for name, paths in found.items()}


def find_video(root: Path, video: str, files: dict[str, list[str]]) -> tuple[Path | None, str]:
    """(the video file of a video, its ``_left``/``_right`` suffix removed; "") from
    :func:`video_files`, or (None, why not). Two files of one name (two subfolders, .avi and
    .mp4, .avi and .AVI) are no choice to make here: which is the labelled one is not
    known, and the wrong one would put every label on another video's frames."""
    base = re.sub(r"_(left|right)$", "", video)
    paths = files.get(base, [])
    if not paths:
        return None, "no cropped_aligned folder and no video file"
    if len(paths) > 1:
        count = "two" if len(paths) == 2 else str(len(paths))
        return None, f"{count} files for video '{base}': '{', '.join(paths)}'; keep one"
    return root / "videos" / paths[0], ""
