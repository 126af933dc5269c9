"""Command-line entry point for one training run: ``python -m vlmo_pipeline.train <stage> --params FILE.yml``.

Runs the same code as the Kedro nodes (:func:`vlmo_pipeline.training.runner.train`) and works under ``torchrun``
or SLURM (Lightning picks up the rank environment), e.g.::

    torchrun --nproc_per_node=8 -m vlmo_pipeline.train stage3 --params data/08_reporting/stage3_launch/params.yml
    python -m vlmo_pipeline.train stage2 --params conf/base/parameters_pretrain_stage2.yml \
        --init data/06_models/stage1 --data-root data/03_primary \
        --output-dir data/06_models/stage2 --log-dir data/08_reporting/stage2

(``params.yml`` as a Kedro node writes it for a multi-node run: the resolved section with the catalog's paths and
conf/paper's differences applied. The files under ``conf/`` hold no paths, which the Kedro nodes take from the
catalog, so a run from them needs the path options; conf/paper's own files hold only differences and are not
complete runs.)

``<stage>`` is a run name of the registry (:mod:`vlmo_pipeline.training.runs`; ``--help`` lists them) or its
pipeline name. ``FILE.yml`` is a Kedro parameters
file (the section named after the pipeline is used) or a file holding one run configuration. Paths in it are
relative to the current directory (run it from the project root). Rank 0 writes the final model to ``output_dir``
(or ``--export-dir``), atomically.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from vlmo_pipeline.schema import ConfigError
from vlmo_pipeline.training.config import run_config_from_dict
from vlmo_pipeline.training.launch import export_outcome
from vlmo_pipeline.training.runner import train
from vlmo_pipeline.training.runs import get_run, run_names


def resolve_run(name: str) -> str:
    """Normalise a run or pipeline name to a run name of the registry (``ValueError`` listing the valid names)."""
    return get_run(name).name


def select_section(document: Any, run: str, source: str) -> tuple[str, Mapping[str, Any]]:
    """``(section key, run configuration)`` inside a loaded parameters file (see module docstring); the key is
    ``""`` when the whole file is the run's configuration."""
    if not isinstance(document, Mapping):
        raise ValueError(f"{source}: expected a YAML mapping at the top level")
    spec = get_run(run)
    section, stage = spec.pipeline, spec.stage
    for key in (section, run):
        if key in document:
            values = document[key]
            break
    else:
        if "stage" not in document:
            raise ValueError(f"{source}: no section {section!r} and no top-level 'stage' key")
        key, values = "", document
    if not isinstance(values, Mapping):
        raise ValueError(f"{source}: {key}: expected a mapping of run settings, got {type(values).__name__}")
    if values.get("stage") != stage:
        raise ValueError(f"{source}: run {run!r} needs stage {stage!r}, the file says {values.get('stage')!r}")
    return key, values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vlmo_pipeline.train", description=__doc__.split("\n")[0])
    parser.add_argument("stage", help=f"run name or pipeline name: one of {', '.join(run_names())}")
    parser.add_argument("--params", required=True, type=Path, help="parameters YAML file")
    parser.add_argument("--devices", type=int, default=None, help="devices per node (overrides trainer.devices)")
    parser.add_argument("--num-nodes", type=int, default=None, help="nodes (overrides trainer.num_nodes)")
    parser.add_argument("--init", default=None, help="model to start from: a config name or a model directory")
    parser.add_argument("--vocab-file", default=None, help="WordPiece vocab.txt (default: the one inside --init)")
    parser.add_argument("--data-root", default=None, help="folder of the Arrow datasets (data.root)")
    parser.add_argument("--output-dir", default=None, help="model directory; checkpoints in <it>/lightning")
    parser.add_argument("--log-dir", default=None, help="CSV logs and parameter tables")
    parser.add_argument("--export-dir", type=Path, default=None, help="write the final model here, not output_dir")
    parser.add_argument("--fresh-start", action="store_true", help="ignore an existing last.ckpt")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    run = resolve_run(args.stage)
    if not args.params.is_file():
        raise SystemExit(f"parameters file {args.params} not found")
    document = yaml.safe_load(args.params.read_text(encoding="utf-8"))
    section, values = select_section(document, run, str(args.params))
    values = dict(values)
    values.setdefault("name", run)
    for key in ("init", "vocab_file", "output_dir", "log_dir"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    if args.data_root is not None:
        values["data"] = {**dict(values.get("data") or {}), "root": args.data_root}
    trainer = dict(values.get("trainer") or {})
    if args.devices is not None:
        trainer["devices"] = args.devices
    if args.num_nodes is not None:
        trainer["num_nodes"] = args.num_nodes
    values["trainer"] = trainer
    if args.fresh_start:
        values["fresh_start"] = True
    try:
        config = run_config_from_dict(values, where=str(args.params), path=section)
    except ConfigError as error:  # one line naming the file, the key, the expected type and the value
        raise SystemExit(f"error: {error}") from None
    missing = [
        flag for flag, value in (("--output-dir", config.output_dir), ("--log-dir", config.log_dir)) if not value
    ]
    if missing:
        raise SystemExit(
            f"error: {args.params}: no output_dir / log_dir for {config.name}; give {' and '.join(missing)}"
        )
    outcome = train(config)
    if outcome.is_global_zero:
        target = export_outcome(outcome, args.export_dir or config.output_dir)
        print(
            f"{config.name}: {outcome.summary['global_step']} steps, loss {outcome.summary['first_loss']} -> "
            f"{outcome.summary['last_loss']}; model written to {target}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
