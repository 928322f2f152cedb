"""``mtaffect info FILE``: where a model, bundle, cache, table or report came from."""
from __future__ import annotations

import json

import click

from stages.common import friendly_errors


def _flat(value, prefix: str = ""):
    """``a.b = value`` lines of a nested mapping."""
    if isinstance(value, dict) and value:
        for key, inner in value.items():
            yield from _flat(inner, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield f"{prefix} = {json.dumps(value)}"


def describe(entry: dict, check_inputs: bool) -> list[str]:
    """The lines printed for one provenance record."""
    from pathlib import Path

    from pipeline.core.fileio import digest
    from pipeline.core.info import code_version

    lines = [f"stage   {entry['stage']}"]
    code = code_version(entry["code"])
    if not code["git"]:
        lines.append(f"code    {len(entry['code'])} files (git not available: cannot name the commit)")
    elif code["commit"]:
        subject = code["subject"] if len(code["subject"]) <= 72 else code["subject"][:71] + "..."
        lines.append(f"code    commit {code['commit'][:12]} ({code['date']}) {subject}")
    else:
        lines.append(f"code    uncommitted changes: the tree was dirty (no commit of HEAD's history holds "
                     f"these {len(entry['code'])} files)")
    if code["changed_now"]:
        lines.append(f"        changed since in the working tree: {', '.join(code['changed_now'])}")
    for name, given in entry["inputs"].items():
        state = ""
        if check_inputs:
            path = Path(given["path"])
            state = ("  (missing now)" if not path.exists() else
                     "  (same now)" if digest(path) == given["sha256"] else "  (differs now)")
        lines.append(f"input   {name}: {given['path']} sha256 {given['sha256'][:16]}{state}")
    lines.extend(f"param   {line}" for line in _flat(entry["params"]))
    return lines


@click.command("info")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the stored records as JSON.")
@click.option("--check-inputs/--no-check-inputs", default=True, show_default=True,
              help="Hash the recorded inputs again and say whether they are the same now.")
@friendly_errors
def cli(files, as_json, check_inputs):
    """Print where each FILE came from: the stage, the code's commit (or that the tree was
    dirty), the inputs' SHA-256 and the parameters.

    FILE is a checkpoint or bundle (.pt), a report (.json), the soft-label cache (.h5) or a
    table (.parquet) written by a stage. A bundle lists its members' records too.
    """
    from pipeline.core.info import read

    for path in files:
        try:
            records = read(path)
        except ValueError as e:
            raise click.ClickException(str(e)) from None
        if as_json:
            click.echo(json.dumps({path: records}, indent=2))
            continue
        click.secho(path, bold=True)
        for i, entry in enumerate(records):
            if i:
                click.echo("  --")
            for line in describe(entry, check_inputs):
                click.echo(f"  {line}")


if __name__ == "__main__":
    cli()
