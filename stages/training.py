"""What the teacher's and the students' commands share: run the loop, write the report."""
from __future__ import annotations

from pathlib import Path

import click


def run_training(params, index_dir, out: str, log_csv: str, report: str, resume: str, name: str, quiet: bool,
                 soft_labels=None, extra: dict | None = None) -> None:
    """Train (resuming from ``resume`` if it exists), write the report on rank 0, and
    remove the resume file once finished."""
    import torch.distributed as dist

    from pipeline.fileio import write_json
    from pipeline.train import Outputs, train

    outputs = Outputs(checkpoint=Path(out), log_csv=Path(log_csv), report=Path(report), resume=Path(resume))
    result = train(params, index_dir, outputs, name=name, progress=not quiet, soft_labels=soft_labels,
                   extra=extra)
    if result.get("interrupted") or (dist.is_initialized() and dist.get_rank() != 0):
        return
    write_json(outputs.report, result)
    outputs.resume.unlink(missing_ok=True)  # finished: the next run starts afresh
    outputs.best.unlink(missing_ok=True)
    v = result["validation"]
    score = lambda task: f"{v[task]['score']:.4f}" if v[task] else "n/a"  # noqa: E731
    click.echo(f"{name}: best epoch {result['best_epoch']} total {result['best_total']:.4f} "
               f"(AU {score('AU')}, EXPR {score('EXPR')}) -> {out}")
