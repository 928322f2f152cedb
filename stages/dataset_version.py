"""``mtaffect dataset-version ROOT``: write ``ROOT.version.json`` for ``sources.<name>.version``."""
from __future__ import annotations

import json

import click

from stages.common import friendly_errors


@click.command("dataset-version")
@click.argument("root", type=click.Path(exists=True, file_okay=False))
@click.option("--quiet", is_flag=True, help="No progress bar.")
@friendly_errors
def cli(root, quiet):
    """Write ROOT.version.json next to a dataset folder: its file count and digest.

    Point `sources.<name>.version` at it and DVC watches that one file instead of hashing
    every file of the dataset at each `dvc status` (README, "Working with real data"). Run
    it again whenever the dataset changes: extraction refuses files that differ from it.
    """
    from pathlib import Path

    from pipeline.core.errors import DataError
    from pipeline.extraction.dataset_version import unfollowed_links, write_version

    marker = Path(root).resolve().parent / "synth.json"
    if marker.is_file() and "mtaffect synthetic" in marker.read_text(errors="replace"):
        raise DataError(f"{root}: a synthetic data set, whose version file is synth's output: an edit of it is "
                        "undone by `dvc repro --force synth`, which writes the data and their versions again")
    path = write_version(root, progress=not quiet)
    links = unfollowed_links(root)
    record = json.loads(path.read_text())
    click.echo(f"{path}: {record['files']} files, sha256 {record['sha256'][:16]}...")
    if links:
        click.secho(f"warning: {len(links)} entries not read (links dangling or to a folder, pipes, devices: "
                    f"extraction does not read them either), e.g. {links[0]}", fg="yellow", err=True)


if __name__ == "__main__":
    cli()
