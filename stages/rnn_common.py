"""What the temporal stages (``rnn_*``) share: the checked features, the frame labels and
where each sequence length's files go.

The CNN checkpoints are read only to check that the features come from the one
``features.checkpoint`` names (a features file made by hand from another checkpoint is
refused); they are not DVC dependencies of these stages: the features file is, and it
changes exactly when the checkpoint it came from does."""
from __future__ import annotations

from pathlib import Path

import click

features_option = click.option("--features", "features_path", default="data/features.h5", show_default=True,
                               type=click.Path(dir_okay=False), help="The frozen CNN's features (features stage).")
frames_option = click.option("--faces", "table", default=None, type=click.Path(dir_okay=False),
                             help="Aff-Wild2's frame table with the labels (default: "
                                  "<extract.out>/affwild2/frames.parquet).")
students_option = click.option("--students", "students_dir", default="models/students", show_default=True,
                               type=click.Path(file_okay=False),
                               help="The CNN students' checkpoints (to check which checkpoint made the features).")
teacher_option = click.option("--teacher", "cnn_teacher", default="models/teacher.pt", show_default=True,
                              type=click.Path(dir_okay=False), help="The CNN teacher (idem).")


def input_options(command):
    """The options of every temporal stage's inputs: features, frame table, CNN checkpoints."""
    for option in (teacher_option, students_option, frames_option, features_option):
        command = option(command)
    return command


def open_features(checkpoint: str, members: list[str], faces: str, schema, features_path: str, table: str | None,
                  students_dir: str, cnn_teacher: str):
    """The features file and the frame table (default: Aff-Wild2's in the extraction folder
    ``faces``), after checking that the features are of the label ``schema`` the build asks
    for (a CNN of another schema would teach its own labels without a word) and come from
    the checkpoint ``features.checkpoint`` (``checkpoint``, among ensemble ``members``) names now."""
    from pipeline.core.index import FrameIndex
    from pipeline.temporal.features import Features, choose_checkpoint

    features = Features(features_path)
    schema.require_same(features.schema, f"{features_path}: the features file")
    features.check_checkpoint(choose_checkpoint(checkpoint, members, students_dir, cnn_teacher))
    table = table or str(Path(faces) / "affwild2" / "frames.parquet")
    if not Path(table).exists():
        raise FileNotFoundError(f"{table}: Aff-Wild2's frame table not found (run `dvc repro extract@affwild2`)")
    return features, FrameIndex.read(table, features.schema)  # the labels of the CNN's schema


def per_length(folder: str | Path, length: int, suffix: str = ".pt") -> Path:
    """The file of one sequence length in a stage's output folder."""
    return Path(folder) / f"T{length}{suffix}"
