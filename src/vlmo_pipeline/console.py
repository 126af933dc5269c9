"""The `vlmo` console command.

(Not in ``cli.py``: Kedro imports ``<package>.cli`` for its own project commands; see that module.)

Sub-commands come from the modules that own them: `demo-data` from the demo-world generator, the model commands
(`embed`, `retrieve`, `vqa`) from `vlmo_pipeline.cli_model`; `summary` prints what the pipelines produced.

Every failure a user can cause is ONE line on stderr, ``vlmo <command>: error: <path>: <what is wrong>``: exit status
2 for usage errors (unknown or missing options, bad option values), 1 for runtime errors (missing or corrupt files).
Unexpected exceptions (bugs) keep their traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vlmo_pipeline.cli_model import CommandError, UsageError, guarded, one_line


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one stderr line (with a pointer to ``--help``), exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see '{self.prog} --help')\n")


def _summary(args: argparse.Namespace) -> int:
    """Print one line per Arrow dataset under data/03_primary (rows per split, rejects) and the reports."""
    primary = Path(args.data) / "03_primary"
    manifests = sorted(primary.glob("*/manifest.json"))
    if not manifests:
        raise CommandError(f"{primary}: no Arrow datasets yet; run `kedro run --pipeline=ingest`")
    lines = []
    for path in manifests:
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
            splits = ", ".join(f"{split}={rows}" for split, rows in manifest["splits"].items())
            lines.append(
                f"  {manifest['dataset']:<7} {splits}  "
                f"({len(manifest['shards'])} shards, {manifest['rejects']} rejects)"
            )
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CommandError(f"{path}: unreadable manifest ({error})") from error
        except (KeyError, TypeError, AttributeError) as error:  # valid JSON, wrong shape
            raise CommandError(f"{path}: not a dataset manifest (bad or missing field: {error})") from error
    print(f"Arrow datasets in {primary}:")
    print("\n".join(lines))
    metrics = Path(args.data) / "08_reporting" / "metrics.json"
    if metrics.exists():
        print(f"evaluation metrics: {metrics}")
    return 0


def _demo_data_errors(run):
    """demo-data reports bad option values (ValueError) and a folder holding real data (FileExistsError)."""

    def checked(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except FileExistsError as error:
            raise CommandError(str(error)) from error
        except ValueError as error:  # generate_demo_world validates --images / --image-size this way
            raise UsageError(str(error)) from error

    return checked


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="vlmo", description="VLMo pipeline tools")
    commands = parser.add_subparsers(dest="command", required=True)  # sub-parsers are OneLineParsers too

    summary = commands.add_parser("summary", help="summarise the Arrow datasets and reports under data/")
    summary.add_argument("--data", default="data", help="the project's data folder")
    summary.set_defaults(func=guarded(_summary))

    from vlmo_pipeline import cli_model
    from vlmo_pipeline.data import demo_world

    demo = demo_world.add_subcommand(commands)
    demo.set_defaults(func=guarded(_demo_data_errors(demo.get_default("func"))))
    cli_model.add_subcommands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
