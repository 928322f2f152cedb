"""``mtaffect predict``: the trained ensemble on new videos, images and folders."""
from __future__ import annotations


import click

from stages.common import friendly_errors, named, use_threads


@click.command("predict")
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--model", "bundle", default="models/ensemble.pt", show_default=True, type=click.Path(dir_okay=False),
              callback=named, help="The model bundle the ensemble stage writes.")
@click.option("--temporal", type=click.Path(dir_okay=False), callback=named,
              help="A temporal ensemble bundle (models/rnn/ensemble/T<length>.pt): each face's track through its "
                   "GRUs instead of the frame ensemble. Videos only, every frame; the CNN that made its features "
                   "must be a member of --model.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the tables and pictures.")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True,
              help="Table format: <out>/<input name>.csv or .parquet.")
@click.option("--all-faces", is_flag=True,
              help="Every face of every frame, each with a track id (default: the main face, one row per frame).")
@click.option("--every", type=click.IntRange(min=1), default=1, show_default=True, help="Every N-th video frame.")
@click.option("--smooth", type=click.IntRange(min=1), default=1, show_default=True,
              help="Centred moving average over W (odd) predicted frames of each face's track, videos only (1: off).")
@click.option("--overlay", is_flag=True, help="Also write <input name>_overlay.mp4 with boxes and predictions.")
@click.option("--no-timeline", is_flag=True, help="Do not draw <input name>.png for videos.")
@click.option("--detect-size", type=click.IntRange(min=48, max=4096), default=None,
              help="Long side, in pixels, of the picture the face detector sees (default: the extraction's, "
                   "from the bundle). Raise it for small faces in large photographs.")
@click.option("--aligned", is_flag=True,
              help="The images are aligned face crops, such as s-Aff-Wild2's cropped_aligned/<video>/: each is "
                   "one face, predicted on as it is (no detection). Images only.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--threads", type=click.IntRange(min=1, max=1024), default=1, show_default=True,
              help="CPU threads for the networks (more than the free cores slows a shared machine down).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@friendly_errors
def cli(inputs, bundle, temporal, out, fmt, all_faces, every, smooth, overlay, no_timeline, detect_size, aligned,
        device, threads, quiet):
    """Per-frame action units, expression and valence/arousal for each INPUT: a video, an
    image, or a folder (its videos one by one, its images as one table).

    Writes <out>/<name>.csv (one row per frame, or per face; a frame without a face is a
    row with face = false), a PNG timeline per video and, with --overlay, an annotated
    video. Columns: README, "Predicting on new videos and images".
    """
    use_threads(threads)
    from tqdm import tqdm

    from pipeline.core.device import resolve_device
    from pipeline.predict.media import VideoFrames, find_inputs
    from pipeline.predict.outputs import OutputFolder, check_out_option
    from pipeline.predict.rows import Ensemble
    from pipeline.predict.run import FaceFinder, Settings, output_paths, predict_input
    from pipeline.predict.temporal import TemporalModel

    if smooth % 2 == 0:
        raise click.UsageError(f"--smooth {smooth}: the window is centred on each frame, so it must be odd")
    if temporal and (every != 1 or smooth != 1):
        raise click.UsageError("--temporal reads every frame of a face's track (the GRUs learned from consecutive "
                               "frames and smooth over them already): leave --every and --smooth at 1")
    out_dir = check_out_option(out)
    target = OutputFolder(out_dir, "predict")
    found, notices = find_inputs(inputs)
    for line in notices:
        click.echo(line)
    videos = any(inp.kind == "video" for inp in found)
    if smooth != 1 and not videos:
        raise click.UsageError(f"--smooth {smooth}: it is about a video's frames, and no input is a video")
    if overlay and not aligned and (stills := sum(inp.kind != "video" for inp in found)):
        if stills == len(found):
            raise click.UsageError("--overlay: an overlay is a video, and no input is a video (the table has each "
                                   "image's boxes and predictions)")
        click.echo(f"--overlay: {stills} image input(s) get no overlay (it is a video); their rows are in the tables")
    if aligned and (detect_size or all_faces or overlay or every != 1):
        raise click.UsageError("--aligned: each image is one face, found by no detector, and no video: leave "
                               "--detect-size, --all-faces, --overlay and --every out")
    if every != 1 and not videos:
        raise click.UsageError(f"--every {every}: it is about a video's frames, and no input is a video")
    if aligned:
        for inp in found:
            if inp.kind == "video":
                raise click.UsageError(f"{inp.path}: --aligned is for images of aligned faces; predict on videos "
                                       "without it")
    if temporal:
        for inp in found:
            if inp.kind != "video":
                raise click.UsageError(f"{inp.path}: --temporal needs videos (images have no frame order); "
                                       "predict on the images without it")
    settings = Settings(every=every, all_faces=all_faces, smooth=smooth, overlay=overlay,
                        timeline=not no_timeline, fmt=fmt, detect_size=detect_size, aligned=aligned)
    outputs = [p for inp in found for p in output_paths(inp, out_dir, settings).values()]
    target.claim(outputs)
    dev = resolve_device(device)
    model = TemporalModel(temporal, bundle, dev) if temporal else Ensemble(bundle, dev)
    settings.batch = model.detection["block"]  # the extraction's: the tracker's blocks shape its results
    with target.writing(outputs):  # a failed run leaves no --out folder it made
        try:
            probe = out_dir / ".mtaffect-write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise click.ClickException(f"{out_dir}: cannot write there ({e.strerror or e})") from None
        finder = FaceFinder(model.detection, settings, model.size)
        for inp in found:
            total = len(inp.images)
            if inp.kind == "video":
                listed = VideoFrames(inp.path).listed
                total = -(-listed // every) if listed > 0 else None
            with tqdm(total=total, desc=inp.name, unit="frame", disable=quiet) as bar:
                try:
                    summary = predict_input(inp, model, finder, target, settings, bar)
                except ValueError as e:
                    raise click.ClickException(str(e)) from None
            for warning in summary.warnings:
                click.secho(f"warning: {warning}", fg="yellow", err=True)
            tracks = f", {len(summary.tracks)} tracks" if all_faces else ""
            skipped = f", {summary.skipped} unreadable image(s) skipped" if summary.skipped else ""
            click.echo(f"{inp.path}: {summary.rows} rows, {summary.frames_with_face} of {summary.frames} frames with a "
                       f"face{tracks}{skipped} -> {summary.table}" + "".join(f", {p}" for p in summary.pictures))


if __name__ == "__main__":
    cli()
