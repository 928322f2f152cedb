"""``mtaffect info FILE``: where a model, bundle, cache, table or report came from."""
from __future__ import annotations

import json

import click

from stages.common import friendly_errors, named


def _flat(value, prefix: str = ""):
    """``a.b = value`` lines of a nested mapping."""
    if isinstance(value, dict) and value:
        for key, inner in value.items():
            yield from _flat(inner, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield f"{prefix} = {json.dumps(value)}"


def describe(record_file, entry: dict, check_inputs: bool) -> list[str]:
    """The lines printed for one provenance record."""
    from pipeline.core.hashing import digest, file_sha256
    from pipeline.core.info import code_version, resolve

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
    def now(path, sha256, hash_of) -> str:
        """How a file named by the record compares with what is there now."""
        if not path.exists():
            return "  (missing now)"
        try:
            return "  (same now)" if hash_of(path) == sha256 else "  (differs now)"
        except OSError as e:  # one unreadable file: said on its line, the rest of the report stands
            return f"  (cannot be read now: {e.strerror or e})"

    for name, given in entry["inputs"].items():
        state = now(resolve(record_file, given["path"]), given["sha256"], digest) if check_inputs else ""
        lines.append(f"input   {name}: {path_shown(record_file, given['path'])} sha256 {given['sha256'][:16]}{state}")
    for name, given in entry["outputs"].items():
        path, state = resolve(record_file, given["path"]), ""
        if given["sha256"] is not None:
            state = now(path, given["sha256"], file_sha256)
        sha = f" sha256 {given['sha256'][:16]}" if given["sha256"] else ""
        lines.append(f"output  {name}: {path_shown(record_file, given['path'])}{sha}{state}")
    lines.extend(f"param   {line}" for line in _flat(entry["params"]))
    return lines


def path_shown(record_file, path: str) -> str:
    """A recorded path as the user would type it here: relative to the working directory."""
    import os

    from pipeline.core.info import resolve

    return os.path.relpath(resolve(record_file, path))


@click.command("info")
@click.argument("files", nargs=-1, required=True, type=click.Path(), callback=named)
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON.")
@click.option("--check-inputs/--no-check-inputs", default=True, show_default=True,
              help="Hash the recorded inputs and outputs again and say whether they are the same now.")
@friendly_errors
def cli(files, as_json, check_inputs):
    """Print where each FILE came from: the stage, the code's commit (or that the tree was
    dirty), the inputs' and outputs' SHA-256 and the parameters.

    FILE is anything a stage wrote (a model, a bundle, a cache, a table, a report, an output
    folder or a file of one), or a copy of one: its record is found in the provenance/ folder of
    the project (docs/architecture.md, "Provenance"). A bundle lists its members' records too.
    """
    from pipeline.core.errors import CheckpointError, DataError
    from pipeline.core.info import find, label_schema_of

    failed, collected = [], {}
    for path in files:
        try:
            records, damaged = find(path)
        except (DataError, CheckpointError, FileNotFoundError) as e:
            if len(files) == 1:
                raise
            click.secho(f"error: {e}", fg="red", err=True)  # the next file is described all the same
            failed.append(path)
            continue
        for unread in damaged:
            click.secho(f"warning: {unread}: could not be read (a record of this file may be lost)", fg="yellow",
                        err=True)
        if as_json:  # one JSON document for all the files, printed at the end
            collected[path] = [rec for _, rec in records]
            continue
        click.secho(path, bold=True)
        schema = label_schema_of(path)
        if schema:
            click.echo(f"  schema  {schema}")
        for i, (record_file, entry) in enumerate(records):
            if i:
                click.echo("  --")
            click.echo(f"  record  {path_shown(record_file, record_file.name)}")
            for line in describe(record_file, entry, check_inputs):
                click.echo(f"  {line}")
    if as_json:
        click.echo(json.dumps(collected, indent=2))
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(files)} files have no record to show: {', '.join(failed)}")


if __name__ == "__main__":
    cli()
