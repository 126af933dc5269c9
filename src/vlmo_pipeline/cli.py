"""Kedro project CLI extension (Kedro imports ``<package>.cli`` and merges its ``cli`` group).

It exists for one reason: our docs, DVC stages and users write ``kedro run --pipeline=<name>``. Kedro 1.x still
accepts the singular option but deprecates it (a warning on every run, removal announced) in favour of
``--pipelines``. This ``run`` is Kedro's own command with the same options and behaviour, except that
``--pipeline NAME`` is a first-class spelling of ``--pipelines NAME``, so the documented form keeps working.
The `vlmo` console command is in ``vlmo_pipeline.commands.vlmo``.
"""

from __future__ import annotations

import copy

import click
from kedro.framework.cli.project import run as _kedro_run


def _run(**options):
    pipeline = options.pop("pipeline", None)
    if pipeline:
        if options.get("pipelines"):
            raise click.UsageError("use either --pipeline or --pipelines, not both")
        options["pipelines"] = [pipeline]
    return _kedro_run.callback(pipeline=None, **options)


@click.group(name="vlmo_pipeline")
def cli() -> None:
    """Project commands of vlmo_pipeline."""


run = copy.copy(_kedro_run)
run.callback = _run
cli.add_command(run, "run")
