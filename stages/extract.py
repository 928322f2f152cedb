"""``extract@<source>``: detect and align every face of one dataset; shards + frame table."""
from __future__ import annotations

from pathlib import Path

import click

from pipeline.core.params import SOURCE_KINDS, with_overrides
from pipeline.extraction.params import ExtractParams, SourceParams
from pipeline.core.fileio import write_text
from stages.common import follows_out, friendly_errors, load, params_option, provenance_option, set_option


@click.command("extract")
@params_option
@set_option
@click.option("--source", required=True, type=click.Choice([*SOURCE_KINDS, "input"]),
              help="Dataset kind; 'input' is an unlabelled video or folder of images.")
@click.option("--root", default=None, type=click.Path(exists=True),
              help="Dataset root (default: sources.<source>.root in params.yaml, checked against its version).")
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Output folder (default: <extract.out>/<source>).")
@click.option("--report", default=None, type=click.Path(dir_okay=False),
              help="Also write the counts (extract.json) here, e.g. for DVC metrics.")
@click.option("--workers", default=None, type=int, help="Worker processes (default: extract.workers).")
@click.option("--on-error", "on_error", default=None, type=click.Choice(["skip", "fail"]),
              help="Bad rows and files: count and skip them, or stop (default: extract.on_error).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@provenance_option("extract", per_name=True)
@friendly_errors
@follows_out(report=".json")
def cli(params_path, source, root, out, report, workers, on_error, quiet, provenance_path):
    """Find, align (112x112) and store every face of one source, with its labels.

    Writes HDF5 face shards, frames.parquet (one row per face: every AU the source labels,
    the expression among 8 classes with Other, valence/arousal; unknown as -1/NaN) and
    extract.json (counts of what was read, written, skipped and why).
    """
    from pipeline.extraction.dataset_version import check_version
    from pipeline.extraction.extract import extract
    from pipeline.core import provenance
    from pipeline.core.provenance import record_path

    p = load(params_path, ExtractParams, SourceParams)
    params = with_overrides(p.extract, workers=workers, on_error=on_error)
    version = annotations = None
    if root is None:
        if source not in p.sources:
            raise click.UsageError(f"--root is required for --source {source}")
        root, version, annotations = p.sources[source].root, p.sources[source].version, p.sources[source].annotations
    out = out or str(Path(params.out) / source)
    if version is not None:  # there and about this root, before the data are read (a killed synth, say)
        check_version(root, version, None)

    def check(sha256: str) -> None:  # the digest of the bytes read, before anything is written
        if version is not None:
            check_version(root, version, sha256)

    counts = extract(source, root, out, params, progress=not quiet, check=check, annotations=annotations)
    if report:
        write_text(report, (Path(out) / "extract.json").read_text())
    outputs = {"faces": out, "frames": Path(out) / "frames.parquet"} | ({"report": report} if report else {})
    provenance.write(provenance_path or record_path("extract", source), __spec__.name,
                     {"source": source, "extract": params.model_dump(mode="json")}, {"source": root}, outputs,
                     digests={"source": counts["source_sha256"]})
    skipped = sum(r["count"] for r in counts["rows_rejected"].values())  # each reason was logged
    frames = "frames" if source == "input" else "labelled frames"
    unlabelled = counts["frames_without_label"] + counts["invalid_label_rows"]
    click.echo(f"{source}: {counts['faces_written']} faces from {counts['labelled_frames']} {frames} "
               f"({counts['frames_without_face']} without a face, {skipped} rows skipped, {counts['labels_without_frame']} "
               f"labels without a frame (a row of a missing or unreadable file is both), {unlabelled} frames without "
               f"a label not read) -> {out}")


if __name__ == "__main__":
    cli()
