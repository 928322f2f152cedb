"""What every stage command shares: the --params option and turning errors into messages."""
from __future__ import annotations

import functools
import logging
import os
import signal
import threading

import click

from pipeline.core.errors import CheckpointError, DataError, ParamsError
from pipeline.core.params import load as load_params

def named(ctx, param, value):
    """A click callback refusing an empty path (a shell variable that was not set), which
    would otherwise stand for the current folder or read as a file named ''."""
    if value == "" or (isinstance(value, tuple) and "" in value):
        raise click.BadParameter("an empty name (a shell variable that was not set?)")
    return value


params_option = click.option(
    "--params", "params_path", default="params.yaml", show_default=True,
    type=click.Path(dir_okay=False), callback=named, help="Parameters file.",
)


def _keep_settings(ctx, param, value):
    ctx.meta["params_overrides"] = tuple(value)


#: ``--set KEY=VALUE`` (repeatable): a value of the params file overridden for this run, as
#: ``dvc exp run -S`` does; what the study's stages run (docs/study.md).
set_option = click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE", expose_value=False, callback=_keep_settings,
    help="Override a value of the params file for this run (repeatable), e.g. --set teacher.seed=3.")


def provenance_option(stage: str, per_name: bool = False):
    """``--provenance``: where the run's record goes (``mtaffect info`` reads it), by default
    ``provenance/<stage>.json``, or ``provenance/<stage>/<name>.json`` for a stage run per
    student or source (``per_name``: the default is then left to the command)."""
    from pipeline.core.provenance import record_path

    default = None if per_name else str(record_path(stage))
    where = f"provenance/{stage}/<name>.json" if per_name else None
    return click.option("--provenance", "provenance_path", default=default, show_default=where or True,
                        type=click.Path(dir_okay=False),
                        help="Where this run's provenance record goes (mtaffect info reads it).")


def load(params_path: str, *schemas):
    """The sections of ``schemas`` (``pipeline.core.params.Section`` subclasses) of the
    params file, validated, or a clear one-line error before any work starts."""
    ctx = click.get_current_context(silent=True)
    overrides = ctx.meta.get("params_overrides", ()) if ctx is not None else ()
    try:
        return load_params(params_path, *schemas, overrides=overrides)
    except ParamsError as e:
        raise click.ClickException(str(e)) from None


def warn(notes: list[str]) -> None:
    """Advice on valid but doubtful settings, printed loudly."""
    for note in notes:
        click.secho(f"WARNING: {note}", fg="red", bold=True, err=True)


def follows_out(**sidecars: str):
    """A stage run by hand into its own ``--out`` must not write over the pipeline's reports
    (DVC's outputs): each of ``sidecars`` (parameter name -> suffix, "" for a folder) left
    at its default goes beside ``--out`` instead, as ``<out>.<option><suffix>``, said in a line."""
    from pathlib import Path

    from click.core import ParameterSource

    def wrap(f):
        @functools.wraps(f)
        def run(**kwargs):
            ctx = click.get_current_context()
            out = next(p for p in ctx.command.params if "--out" in getattr(p, "opts", ()))
            if ctx.get_parameter_source(out.name) is ParameterSource.DEFAULT or kwargs[out.name] == out.default:
                return f(**kwargs)
            path = Path(kwargs[out.name])
            base, moved = (path.with_suffix("") if path.suffix else path), []
            for option in ctx.command.params:
                if option.name in sidecars and ctx.get_parameter_source(option.name) is ParameterSource.DEFAULT:
                    kwargs[option.name] = f"{base}.{option.opts[0].lstrip('-')}{sidecars[option.name]}"
                    moved.append(f"{option.opts[0]} {kwargs[option.name]}")
            result = f(**kwargs)
            if moved:  # said once written (a refused run wrote nothing)
                click.echo(f"--out {path}: {', '.join(moved)} (beside it, not over the pipeline's)", err=True)
            return result
        return run
    return wrap


def use_threads(n: int) -> None:
    """Run torch (OpenMP, MKL, oneDNN) on exactly ``n`` threads, set before torch loads.

    The thread count changes the order of sums inside convolutions and matrix products,
    hence the trained weights' bytes: it is a parameter (``threads``), never the machine's
    or the load's choice. MKL and OpenMP are told not to pick fewer threads by themselves
    (``*_DYNAMIC``); their code paths are pinned for every CPU (``stages.CPU_KERNELS``).
    On a machine shared with other jobs, more threads than free cores make
    OpenMP's threads wait for each other: README, "Parameters"."""
    import os
    import sys

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    os.environ.update(OMP_DYNAMIC="FALSE", MKL_DYNAMIC="FALSE")
    if "torch" in sys.modules:  # already loaded (a test calling the command in-process)
        sys.modules["torch"].set_num_threads(n)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


#: The options (by parameter name) that name what a command writes; every other option
#: naming an existing file or folder is something it reads.
WRITES = frozenset({"out", "out_dir", "report", "plots", "provenance_path", "log_dir", "log_csv", "resume_file",
                    "stamp", "predictions", "soft_label_report", "contact_sheet"})

#: Where the synthetic data's complete labels are (the synth stage's default output):
#: evaluate and the study report score against it when it exists.
GROUND_TRUTH = "data/synth/ground_truth.parquet"

#: Commands that add files into their ``--out`` folder (under their own rules against
#: overwriting) rather than replace it whole: that folder may be or hold what they read.
ADDS_INTO = frozenset({"predict", "export-abaw"})


def option_name(parameter: str) -> str:
    """How the user wrote the option of a parameter (``--provenance`` for ``provenance_path``)."""
    ctx = click.get_current_context(silent=True)
    opts = {p.name: p.opts[0] for p in ctx.command.params} if ctx is not None else {}
    return opts.get(parameter, parameter)


def check_outputs(options: dict) -> None:
    """Refuse, before any work, an output the run would regret (not checked for the
    commands of :data:`ADDS_INTO`, which check their folder themselves):

    - one of the command's input options, or a folder holding one (an output folder is
      replaced whole): ``--report`` naming the params file, ``--out`` naming the teacher,
      would destroy what the run reads;
    - one output in the place of another;
    - an output the command could not write (a folder on the way that is read-only or a
      file): found only when it comes to be written, it would leave the outputs written
      before it beside the old ones."""
    import os
    from pathlib import Path

    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.command.name in ADDS_INTO:
        out = options.get("out")
        if out and Path(out).is_symlink() and not Path(out).exists():  # mkdir would say only "File exists"
            raise click.ClickException(f"--out {out}: a symbolic link to {os.readlink(out)}, which does not exist: "
                                       "create that folder, or choose another --out")
        return

    def paths(value):
        values = value if isinstance(value, (list, tuple)) else [value]
        return [Path(v).resolve() for v in values if isinstance(v, (str, Path)) and str(v) and Path(v).exists()]

    reads = [(name, p) for name, value in options.items() if name not in WRITES for p in paths(value)]
    writes = []
    for name, value in options.items():
        if name not in WRITES or not isinstance(value, (str, Path)) or not str(value):
            continue
        target = Path(value).resolve()
        for source, read in reads:
            if target == read or target in read.parents:
                how = "is" if target == read else "holds"
                raise click.ClickException(f"{option_name(name)} {value}: {how} {option_name(source)} {read}, which "
                                           "this command reads: refusing to write there (choose another path)")
        for other, written in writes:  # one output would replace or hold another
            if target == written or target in written.parents or written in target.parents:
                raise click.ClickException(f"{option_name(name)} {value} and {option_name(other)} {written}: one "
                                           "output in the place of another (give each its own path)")
        writes.append((name, target))
        unresolved = Path(value).absolute()
        folder = next(p for p in unresolved.parents if p.exists())  # what the output (and its folders) goes in
        for where in (folder, unresolved) if unresolved.is_dir() else (folder,):
            if not where.is_dir():
                raise click.ClickException(f"{option_name(name)} {value}: {where} is a file, not a folder")
            if not os.access(where, os.W_OK | os.X_OK):
                raise click.ClickException(f"{option_name(name)} {value}: {where} is not writable (permission "
                                           "denied): nothing was done")


def _quiet_exit() -> None:
    """End a command whose standard output was closed (its reader, ``head`` say, has all it
    wanted) quietly, as Unix tools do: status 141 (SIGPIPE's), no message, and nothing left
    to flush into the closed pipe at exit (Python would print "Exception ignored")."""
    import io
    import os
    import sys

    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):  # no real stream (a test's): nothing to flush
        fd = None
    if fd is not None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    sys.exit(141)


#: Commands that write the params file themselves: no run of theirs is stale for its change.
WRITES_PARAMS = frozenset({"preset"})


def _bytes_or_none(path) -> bytes | None:
    """A regular file's bytes, or None (the command says why it cannot read it, if it needs to;
    a named pipe is not read: that would wait for a writer)."""
    if path is None or not os.path.isfile(path):
        return None
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _unrecorded(error: OSError, options: dict) -> str:
    """What to add to an error writing the run's provenance record, the last thing a stage
    writes: its outputs are in place, only their record is missing."""
    from pathlib import Path

    if not error.filename or "provenance_path" not in options:
        return ""
    failed, record = Path(error.filename), options["provenance_path"]
    ours = (record and failed.resolve() == Path(record).resolve()) or "provenance" in failed.parts[:-1]  # or aside
    if not ours:
        return ""
    return " (the outputs are written, their provenance record is not: run the command again once it can be)"


def friendly_errors(fn):
    """Report expected failures (bad params, bad data or checkpoints, files that cannot be
    read or written: a read-only folder, a full disk) as one line, not a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return run(*args, **kwargs)
        except click.ClickException as e:
            stage = os.environ.get("DVC_STAGE")  # set by dvc repro for the command of each stage
            if stage and not isinstance(e, click.UsageError):
                e.message += (f" (DVC removed this stage's outputs before running it: `dvc checkout {stage}` "
                              "brings the last ones back)")
            raise

    def run(*args, **kwargs):
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        if threading.current_thread() is threading.main_thread():
            # `kill` (SIGTERM) stops a command as Ctrl-C does: its cleanup runs, no temporary file stays
            signal.signal(signal.SIGTERM, _interrupt)
        check_outputs(kwargs)
        ctx = click.get_current_context(silent=True)
        watched = kwargs.get("params_path") if ctx is None or ctx.command.name not in WRITES_PARAMS else None
        params_before = _bytes_or_none(watched)
        try:
            result = fn(*args, **kwargs)
        except BrokenPipeError:  # `mtaffect info ... | head -1`: the reader is gone, so is the rest
            _quiet_exit()
        except (ParamsError, DataError, CheckpointError, FileNotFoundError) as e:
            raise click.ClickException(str(e)) from None
        except OSError as e:  # permissions, a full disk, ...: the message names the file
            where = f"{e.filename}: " if e.filename else ""
            if e.filename and e.filename2:  # a rename: from where to where
                where = f"{e.filename} -> {e.filename2}: "
            raise click.ClickException(f"{where}{e.strerror or e}{_unrecorded(e, kwargs)}") from None
        if params_before is not None and _bytes_or_none(watched) != params_before:
            # exit 1: DVC must not record the new values for outputs made with the old ones
            raise click.ClickException(f"{watched} changed while this stage ran: its outputs match the values it "
                                       "started with; run it again")
        return result

    return wrapper
