"""The ``mtaffect`` command: every DVC stage as a subcommand, plus tools.

Each stage module is imported only when its command runs, so ``mtaffect --help`` is quick
(torch and friends load only for the stage that needs them).
"""
from __future__ import annotations

import importlib

import click

#: subcommand name -> (module in stages/, one-line help). Order = pipeline order.
COMMANDS = {
    "check-params": ("check_params", "Check the whole of params.yaml and print the values that run."),
    "preset": ("preset", "Write a preset's values (demo, tiny, abaw2020, demo2022, tiny2022) into params.yaml."),
    "synth": ("synth", "Generate the synthetic data set in the four real datasets' formats."),
    "extract": ("extract", "Detect and align every face of one source: HDF5 shards + frame table."),
    "build": ("build", "Merge and balance the per-task training sets; write indexes and the imbalance report."),
    "train-teacher": ("train_teacher", "Train the multitask teacher (Eq. 13); best epoch by the ABAW sum."),
    "soft-labels": ("soft_labels", "Cache the teacher's logits on fixed views of every training frame."),
    "train-student": ("train_student", "Train one student (Eq. 14) against the soft-label cache."),
    "ensemble": ("ensemble", "Bundle the students named in ensemble.members (thresholds fixed or tuned)."),
    "features": ("features", "The frozen CNN's per-task features of every Aff-Wild2 frame, for the temporal model."),
    "rnn-teacher": ("rnn_teacher", "Train the temporal teacher (a GRU per task on the features), per sequence length."),
    "rnn-soft-labels": ("rnn_soft_labels", "Cache the temporal teacher's logits of every training frame."),
    "rnn-student": ("rnn_student", "Train one temporal student (Eq. 14 on windows) against that cache."),
    "rnn-ensemble": ("rnn_ensemble", "Bundle the temporal students named in rnn_ensemble.members."),
    "evaluate": ("evaluate", "Score every model and the baselines on validation, with paired intervals."),
    "study": ("study", "The controlled study: each claim against its control arm over seeds (plan, run, report)."),
    "predict": ("predict", "Per-frame AUs, expression and valence/arousal of new videos and images (tables, pictures)."),
    "export-abaw": ("export_abaw", "ABAW 2020 submission files (<task>_Set/<video>.txt) from predict's tables."),
    "dataset-version": ("dataset_version", "Write a dataset folder's version file (its digest), for sources.<name>.version."),
    "info": ("info", "Where a model, bundle, cache, table or report came from: stage, code commit, inputs, params."),
    "repair-lock": ("repair_lock", "Bring back dvc.lock after a kill cut it short (then `dvc repro` restores finished stages)."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        return importlib.import_module(f"stages.{COMMANDS[name][0]}").cli

    def format_commands(self, ctx, formatter):
        # The one-line help comes from the table above, so --help imports nothing heavy.
        rows = [(name, help_) for name, (_, help_) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mtaffect")
def main():
    """mtaffect: one model for action units, expressions and valence/arousal, trained
    from datasets that each label one task (Deng, Chen, Shi, FG 2020).

    Every stage of dvc.yaml is a subcommand; run `dvc repro` to run them all in order.
    """


if __name__ == "__main__":
    main()
