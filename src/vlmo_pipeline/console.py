"""The `vlmo` console command.

(Not in ``cli.py``: Kedro imports ``<package>.cli`` for its own project commands; see that module.)

Sub-commands come from the modules that own them: `demo-data` from the demo-world generator, the model commands
(`embed`, `retrieve`, `vqa`) from `vlmo_pipeline.cli_model`; `summary` prints what the pipelines produced.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _summary(args: argparse.Namespace) -> int:
    """Print one line per Arrow dataset under data/03_primary (rows per split, rejects) and the reports."""
    primary = Path(args.data) / "03_primary"
    manifests = sorted(primary.glob("*/manifest.json"))
    if not manifests:
        print(f"no Arrow datasets under {primary} yet: run `kedro run --pipeline=ingest`", file=sys.stderr)
        return 1
    print(f"Arrow datasets in {primary}:")
    for path in manifests:
        manifest = json.loads(path.read_text())
        splits = ", ".join(f"{split}={rows}" for split, rows in manifest["splits"].items())
        print(f"  {manifest['dataset']:<7} {splits}  ({len(manifest['shards'])} shards, {manifest['rejects']} rejects)")
    metrics = Path(args.data) / "08_reporting" / "metrics.json"
    if metrics.exists():
        print(f"evaluation metrics: {metrics}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlmo", description="VLMo pipeline tools")
    commands = parser.add_subparsers(dest="command", required=True)

    summary = commands.add_parser("summary", help="summarise the Arrow datasets and reports under data/")
    summary.add_argument("--data", default="data", help="the project's data folder")
    summary.set_defaults(func=_summary)

    from vlmo_pipeline import cli_model
    from vlmo_pipeline.data import demo_world

    demo_world.add_subcommand(commands)
    cli_model.add_subcommands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
