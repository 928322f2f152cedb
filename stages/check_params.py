"""Validate params.yaml and show the effective values of the active profile."""
from __future__ import annotations

import click
import yaml

from pipeline.core.config import FAMILIES, SECTIONS
from stages.common import load, params_option


@click.command("check-params")
@params_option
@click.option("--section", type=click.Choice(sorted(SECTIONS)), default=None, help="Show one section only.")
def cli(params_path, section):
    """Validate params.yaml (every profile) and print the active profile's values."""
    p = load(params_path)
    names = [section] if section else list(SECTIONS)
    shown = ({"profile": p.profile, "threads": p.threads, "sources": {n: s.model_dump() for n, s in p.sources.items()}}
             if not section else {})
    shown.update({n: getattr(p, n).model_dump() for n in names})
    if not section:
        for family in FAMILIES:
            shown[family] = {n: s.model_dump() for n, s in getattr(p, family).items()}
    click.echo(yaml.safe_dump(shown, sort_keys=False).rstrip())


if __name__ == "__main__":
    cli()
