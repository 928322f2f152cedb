"""What the teacher's and the students' commands share: run the loop, write the report."""
from __future__ import annotations

from pathlib import Path

import click


def run_training(params, data, out: str, log_csv: str, report: str | None, resume: str, name: str, quiet: bool,
                 soft_labels=None, extra: dict | None = None) -> dict:
    """Train on ``data`` (``pipeline.training.train.setup``), resuming from ``resume`` if it exists;
    write the report (if given) on rank 0, remove the resume file once finished, and
    return the report (None in a process that wrote nothing: interrupted, or not rank 0)."""
    import torch.distributed as dist

    from pipeline.core.fileio import write_json
    from pipeline.training.train import Outputs, train

    outputs = Outputs(checkpoint=Path(out), log_csv=Path(log_csv), report=report and Path(report), resume=Path(resume))
    result = train(params, data, outputs, name=name, progress=not quiet, soft_labels=soft_labels,
                   extra=extra)
    if result.get("interrupted") or (dist.is_initialized() and dist.get_rank() != 0):
        return None
    if report:
        write_json(outputs.report, result)
    outputs.resume.unlink(missing_ok=True)  # finished: the next run starts afresh
    outputs.best.unlink(missing_ok=True)
    v = result["validation"]
    score = lambda task: f"{v[task]['score']:.4f}" if v[task] else "n/a"  # noqa: E731
    click.echo(f"{name}: best epoch {result['best_epoch']} total {result['best_total']:.4f} "
               f"(AU {score('AU')}, EXPR {score('EXPR')}) -> {out}")
    return result
