"""What a training run leaves on the way: its resume file, from which an interrupted run goes
on to the same final weights, and its per-epoch log (``pipeline.training.train``)."""
from __future__ import annotations

import csv
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from pipeline.core.errors import CheckpointError
from pipeline.core.fileio import atomic_write, write_torch
from pipeline.training.models import read_torch_file

log = logging.getLogger("mtaffect.train")

LOG_COLUMNS = ["epoch", "lr", "loss", "loss_AU", "loss_EXPR", "loss_VA", "AU_score", "AU_f1", "EXPR_score",
               "EXPR_f1", "ccc_valence", "ccc_arousal", "total"]


@dataclass
class State:
    epoch: int = 0  # the epoch in progress (or next to start)
    step: int = 0  # steps of that epoch already done
    best_total: float = float("-inf")
    best_epoch: int = -1
    best_metrics: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    sums: dict = field(default_factory=dict)  # running loss sums of the epoch in progress
    lr: float = 0.0  # the learning rate of the latest optimiser step


def flat_metrics(result: dict) -> dict:
    """An epoch's validation scores as the log's columns."""
    au, ex, va = result["AU"] or {}, result["EXPR"] or {}, result["VA"] or {}
    return {"AU_score": au.get("score"), "AU_f1": au.get("f1"), "EXPR_score": ex.get("score"),
            "EXPR_f1": ex.get("f1"), "ccc_valence": va.get("ccc_valence"), "ccc_arousal": va.get("ccc_arousal"),
            "total": result["total"]}


def write_log(path: Path, history: list[dict]) -> None:
    """The per-epoch log (a DVC plot): losses and validation scores, rounded to 6 digits."""
    with atomic_write(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, LOG_COLUMNS, lineterminator="\n")
        w.writeheader()
        for row in history:
            w.writerow({k: ("" if row.get(k) is None else round(row[k], 6) + 0.0 if isinstance(row[k], float) else row[k])
                        for k in LOG_COLUMNS})


def save_resume(path: Path, run, state: State) -> None:
    """What an interrupted run needs to go on to the same weights: the model, optimiser,
    scheduler, RNG and ``state``, with the parameters and inputs it must match."""
    write_torch(path, {
        "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(), "state": asdict(state), "params": run.params.model_dump(),
        "torch_rng": torch.get_rng_state(), "inputs": run.inputs,
    })


def load_resume(path: Path, run) -> State:
    """The state of an interrupted run, restored into ``run``; a fresh state when the file
    is of other parameters, or unreadable (it is then moved aside, so it blocks no later
    run, and the run starts afresh)."""
    try:
        saved = read_torch_file(path, "resume file")  # its records' CRC-32 checked too
    except CheckpointError as e:  # whatever is wrong with the file, the run can start afresh
        aside, k = path.with_name(f"{path.name}.unreadable"), 0
        while aside.exists():  # an earlier one is kept as it was
            k += 1
            aside = path.with_name(f"{path.name}.unreadable.{k}")
        os.replace(path, aside)
        log.warning("%s; moved to %s, starting afresh", e, aside)
        return State()
    if not isinstance(saved, dict) or not {"params", "model", "optimizer", "scheduler", "state"} <= set(saved):
        # readable, but something else (a checkpoint given as --resume): not ours to move or replace
        raise CheckpointError(f"--resume {path}: not a resume file (a checkpoint?): it is left as it is; give "
                              "--resume a path of its own (an interrupted run writes it)")
    changed = ("parameters" if saved["params"] != run.params.model_dump() else
               "training data" if saved.get("inputs") != run.inputs else None)
    if changed:  # the interrupted run's state is not a valid start for this one
        log.warning("%s: %s changed since it was written; starting afresh", path, changed)
        path.unlink()
        return State()
    run.model.load_state_dict(saved["model"])
    run.optimizer.load_state_dict(saved["optimizer"])
    run.scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["torch_rng"])
    return State(**saved["state"])
