"""Generate the synthetic data set (the demo's data) and its contact sheet."""
from __future__ import annotations

import click

from pipeline.core.params import with_overrides
from pipeline.core.schema import SCHEMAS
from synthetic.params import SYNTH_SIZES, SynthParams
from stages.common import follows_out, friendly_errors, load, params_option, provenance_option, set_option


@click.command("synth")
@params_option
@set_option
@click.option("--size", "dataset_size", type=click.Choice(SYNTH_SIZES), default=None,
              help="Named size (synth.dataset_size): tiny (seconds), demo (~36k faces), medium, large, huge.")
@click.option("--label-schema", "label_schema", type=click.Choice(tuple(SCHEMAS)), default=None,
              help="The files' label set (synth.label_schema): abaw2020 (8 AUs, 7 classes, the 2020 Aff-Wild2 "
                   "layout) or abaw2022 (12 AUs, 8 classes with Other, the 2022+ layout).")
@click.option("--seed", type=int, default=None, help="Random seed; same seed and values give identical files.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Output folder (gets affwild2/ disfa/ expw/ afewva/ ground_truth.parquet synth.json).")
@click.option("--contact-sheet", "contact_sheet", type=click.Path(dir_okay=False), default=None,
              help="Where to write the PNG grid of expressions, AUs and sources.")
@click.option("--no-contact-sheet", is_flag=True, help="Skip the contact sheet.")
@click.option("--difficulty", type=float, default=None, help="Pose, blur, grain, occluders, lighting (0 = clean).")
@click.option("--domain-shift", "domain_shift", type=float, default=None,
              help="Strength of each source's look (0 = all sources alike).")
@click.option("--label-noise", "label_noise", type=float, default=None,
              help="Share of training labels flipped (validation labels are always clean).")
@click.option("--imbalance", type=float, default=None, help="Class skew: 1 = like the real sets, 0 = balanced.")
@click.option("--spontaneous-au", "spontaneous_au", type=float, default=None,
              help="Scale of expression-free AU events.")
@click.option("--identity-spread", "identity_spread", type=float, default=None, help="Variety of face shapes.")
@click.option("--workers", type=int, default=None, help="Rendering processes (speed only, never the files).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
@provenance_option("synth")
@friendly_errors
@follows_out(contact_sheet=".png")
def cli(params_path, dataset_size, label_schema, seed, out, contact_sheet, no_contact_sheet, difficulty, domain_shift, label_noise,
        imbalance, spontaneous_au, identity_spread, workers, progress, provenance_path):
    """Write the synthetic datasets in their real formats (four; six with --label-schema
    abaw2022), the ground truth, and a contact sheet.

    Every option defaults to the `synth` section of params.yaml.
    """
    from pathlib import Path

    from pipeline.core import provenance
    from pipeline.extraction.dataset_version import SUFFIX
    from synthetic.contact_sheet import make_contact_sheet
    from synthetic.eras import ERAS
    from synthetic.generate import generate

    p = load(params_path, SynthParams)
    section = with_overrides(
        p.synth, dataset_size=dataset_size, label_schema=label_schema, seed=seed, out=out, contact_sheet=contact_sheet,
        difficulty=difficulty, domain_shift=domain_shift, label_noise=label_noise, imbalance=imbalance,
        spontaneous_au=spontaneous_au, identity_spread=identity_spread, workers=workers,
    )
    report = generate(section.out, section, progress=progress)
    for source, s in report["sources"].items():
        if source == "ground_truth":
            continue
        click.echo(f"{source:9s} {s['frames']:7d} images/frames {s['faces']:7d} faces "
                   f"{s['bytes'] / max(1, s['faces']) / 1024:6.1f} kB/face")
    click.echo(f"{report['rows']} ground-truth rows in {report['seconds']:.1f} s -> {section.out}")
    outputs = {"report": Path(section.out) / "synth.json", "ground_truth": Path(section.out) / "ground_truth.parquet",
               **{f"version {s}": Path(section.out) / f"{s}{SUFFIX}" for s in ERAS[section.label_schema].sources}}
    if not no_contact_sheet:
        outputs["contact_sheet"] = make_contact_sheet(section.out, section.contact_sheet, seed=section.seed,
                                                     era=ERAS[section.label_schema])
        click.echo(f"contact sheet -> {outputs['contact_sheet']}")
    provenance.write(provenance_path, __spec__.name, {"synth": section.model_dump(mode="json")}, {}, outputs)


if __name__ == "__main__":
    cli()
