"""``mtaffect repair-lock``: make a project whose dvc.lock a kill tore usable again."""
from __future__ import annotations

import click

from stages.common import friendly_errors


@click.command("repair-lock")
@click.option("--project", default=".", show_default=True, type=click.Path(file_okay=False, exists=True),
              help="The DVC project's folder.")
@friendly_errors
def cli(project):
    """Check dvc.lock and DVC's run-lock file; if a kill cut one short, bring dvc.lock back
    from the last commit (or set it aside) and drop the run-lock record.

    Then run `dvc repro`: every stage that had finished is restored from DVC's run cache
    instead of running again (README, "Interruptions").
    """
    from pipeline.core.dvc_lock import repair

    done = repair(project)
    for line in done:
        click.echo(line)
    if done:
        click.echo("now run `dvc repro`: finished stages come back from DVC's run cache without running again")
    else:
        click.echo("dvc.lock and DVC's run-lock record are whole: nothing to repair")


if __name__ == "__main__":
    cli()
