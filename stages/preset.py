"""``mtaffect preset NAME``: write a preset's values (demo, tiny, abaw2020, demo2022, tiny2022) into params.yaml."""
from __future__ import annotations

import click

from stages.common import friendly_errors, params_option, warn


@click.command("preset")
@click.argument("name")
@params_option
@friendly_errors
def cli(name, params_path):
    """Write preset NAME's values into the params file: demo (the synthetic data on a CPU,
    as shipped), tiny (what the tests run), abaw2020 (the paper's setting on the real
    datasets); demo2022 and tiny2022 are demo and tiny in the label space of the 2022+
    releases (12 AUs, 8 classes with Other, six synthetic data sets). Values a preset does
    not set go back to their defaults (the paper's). The file's comments and `threads` stay,
    and `sources` unless they all read the synthetic data (they then become the data sets
    the preset's synthetic data holds); every value that changes is listed."""
    from pathlib import Path

    from pipeline.core.catalogue import apply_preset, check_all
    from pipeline.core.errors import DataError
    from pipeline.core.fileio import hold_lock, release_lock

    # two presets at once would each back up the other's half-written file: the user's values lost
    lock_path = Path(params_path).with_name(f".{Path(params_path).name}.preset-lock")
    try:
        lock = hold_lock(lock_path, f"another `mtaffect preset` is writing {params_path}: wait for it to end")
    except OSError as e:  # the lock file is ours: the user knows the folder and the params file
        raise DataError(f"{params_path}: its folder {lock_path.parent} cannot be written ({e.strerror}): the preset "
                        "rewrites the file there") from None
    try:
        changed, backup = apply_preset(params_path, name)
    finally:
        release_lock(lock_path, lock)
    for line in changed:
        click.echo(f"  {line}")
    click.echo(f"{params_path}: preset {name} ({len(changed)} values changed)")
    if backup is not None:
        click.echo(f"entries the preset does not hold were removed; the file as it was: {backup}")
    warn(check_all(params_path)[1])


if __name__ == "__main__":
    cli()
