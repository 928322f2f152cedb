"""``mtaffect check-params`` (and the ``check_params`` stage): the whole params file checked."""
from __future__ import annotations

import click
import yaml

from stages.common import friendly_errors, params_option, use_threads, warn

#: What --stamp writes, always: a file of other bytes there is not ours to replace.
STAMP = {"params": "valid"}


def _check_stamp(stamp: str) -> None:
    """Refuse a --stamp naming a file that is not an earlier stamp (a backup of params, say)."""
    import json
    from pathlib import Path

    if not Path(stamp).exists():
        return
    try:  # a named pipe or a folder is no stamp (and is not read: a pipe would wait)
        earlier = json.loads(Path(stamp).read_text()) if Path(stamp).is_file() else None
    except (ValueError, OSError):
        earlier = None
    if earlier != STAMP:
        raise click.ClickException(f"--stamp {stamp}: exists and is not an earlier stamp of check-params: refusing "
                                   "to replace it (choose another path)")


@click.command("check-params")
@params_option
@click.option("--section", "sections", multiple=True, help="Show this section only (repeatable).")
@click.option("--stamp", type=click.Path(dir_okay=False), default=None,
              help="Write this file (always the same bytes) once the file is valid: what dvc.yaml's stages wait for.")
@friendly_errors
def cli(params_path, sections, stamp):
    """Check every section of params.yaml, and that they agree (an ensemble's members are
    students), and print the values that run: a student's are the teacher's, updated with
    `student` and its own entry.

    `dvc repro` runs this first (the check_params stage), so a bad value anywhere stops
    the run before any stage works.
    """
    from pipeline.core.catalogue import FAMILY_DEFAULTS, check_all, check_pretrained, schemas_of
    from pipeline.core.fileio import write_json

    if stamp:
        _check_stamp(stamp)
    p, notes = check_all(params_path)
    use_threads(p.threads)
    check_pretrained(p, params_path)
    warn(notes)
    if stamp:
        write_json(stamp, STAMP)
        return
    names = [s.section for s in schemas_of(params_path)]
    shown = {"threads": p.threads, "sources": {n: s.model_dump() for n, s in p.sources.items()}}
    shown |= {n: getattr(p, n).model_dump() for n in names if n != "sources"}
    shown |= {family: {n: s.model_dump() for n, s in getattr(p, family).items()} for family in FAMILY_DEFAULTS}
    for section in sections:
        if section not in shown:
            raise click.UsageError(f"--section {section}: no such section ({', '.join(shown)})")
    if sections:
        shown = {section: shown[section] for section in sections}
    click.echo(yaml.safe_dump(shown, sort_keys=False).rstrip())


if __name__ == "__main__":
    cli()
