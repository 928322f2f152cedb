"""``mtaffect check-params`` (and the ``check_params`` stage): the whole params file checked."""
from __future__ import annotations

import click
import yaml

from stages.common import friendly_errors, params_option, use_threads, warn


@click.command("check-params")
@params_option
@click.option("--section", default=None, help="Show one section only.")
@click.option("--stamp", type=click.Path(dir_okay=False), default=None,
              help="Write this file (always the same bytes) once the file is valid: what dvc.yaml's stages wait for.")
@friendly_errors
def cli(params_path, section, stamp):
    """Check every section of params.yaml, and that they agree (an ensemble's members are
    students), and print the values that run: a student's are the teacher's, updated with
    `student` and its own entry.

    `dvc repro` runs this first (the check_params stage), so a bad value anywhere stops
    the run before any stage works.
    """
    from pipeline.core.catalogue import FAMILY_DEFAULTS, SCHEMAS, check_all, check_pretrained
    from pipeline.core.fileio import write_json

    p, notes = check_all(params_path)
    use_threads(p.threads)
    check_pretrained(p, params_path)
    warn(notes)
    if stamp:
        write_json(stamp, {"params": "valid"})
        return
    names = [s.section for s in SCHEMAS]
    shown = {"threads": p.threads, "sources": {n: s.model_dump() for n, s in p.sources.items()}}
    shown |= {n: getattr(p, n).model_dump() for n in names if n != "sources"}
    shown |= {family: {n: s.model_dump() for n, s in getattr(p, family).items()} for family in FAMILY_DEFAULTS}
    if section is not None:
        if section not in shown:
            raise click.UsageError(f"--section {section}: no such section ({', '.join(shown)})")
        shown = {section: shown[section]}
    click.echo(yaml.safe_dump(shown, sort_keys=False).rstrip())


if __name__ == "__main__":
    cli()
