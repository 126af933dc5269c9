"""The `vlmo` console command.

(Not in ``cli.py``: Kedro imports ``<package>.cli`` for its own project commands; see that module.)

Sub-commands come from the modules that own them: `demo-data` from the demo-world generator, the model commands
(`embed`, `retrieve`, `vqa`) from `vlmo_pipeline.commands.model`; `summary` prints what the pipelines produced;
`verify` checks Arrow datasets against their manifests (sha256, row counts, schema, reject log);
`merge-manifests` assembles a dataset from the parts of a partitioned ingestion.

Every failure a user can cause is ONE line on stderr, ``vlmo <command>: error: <path>: <what is wrong>``: exit status
2 for usage errors (unknown or missing options, bad option values), 1 for runtime errors (missing or corrupt files).
Unexpected exceptions (bugs) keep their traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vlmo_pipeline.commands.model import CommandError, UsageError, guarded, one_line, print_error


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one stderr line (with a pointer to ``--help``), exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see '{self.prog} --help')\n")


def _summary(args: argparse.Namespace) -> int:
    """Print one line per Arrow dataset under data/03_primary (rows per split, rejects) and the reports."""
    from vlmo_pipeline.data.partitions import PART_PATTERN

    primary = Path(args.data) / "03_primary"
    found = sorted(primary.glob("*/manifest.json"))
    manifests = [path for path in found if not PART_PATTERN.match(path.parent.name)]
    if not manifests:
        raise CommandError(f"{primary}: no Arrow datasets yet; run `kedro run --pipeline=ingest`")
    parts = len(found) - len(manifests)
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
    if parts:  # a partitioned ingestion's parts are not datasets until `vlmo merge-manifests` assembles them
        print(f"  (+ {parts} partition folder(s) not merged yet: see `vlmo merge-manifests`)")
    metrics = Path(args.data) / "08_reporting" / "metrics.json"
    if metrics.exists():
        print(f"evaluation metrics: {metrics}")
    return 0


def _dataset_dirs(target: Path) -> list[Path]:
    """``target`` itself when it is a dataset directory, else the dataset directories directly under it."""
    from vlmo_pipeline.data.arrow_io import FAILURE_NAME, MANIFEST_NAME, SHARD_PATTERN

    def is_dataset(folder: Path) -> bool:
        if (folder / MANIFEST_NAME).exists() or (folder / FAILURE_NAME).exists():
            return True
        return any(SHARD_PATTERN.match(entry.name) for entry in folder.iterdir())

    if not target.exists():
        raise CommandError(f"{target}: no such directory")
    if not target.is_dir():
        raise CommandError(f"{target}: not a directory (a dataset directory or a folder of them expected)")
    if is_dataset(target):
        return [target]
    found = sorted(child for child in target.iterdir() if child.is_dir() and is_dataset(child))
    if not found:
        raise CommandError(f"{target}: no Arrow dataset here or in its sub-folders; run `kedro run --pipeline=ingest`")
    return found


def _verify(args: argparse.Namespace) -> int:
    """Check every shard's sha256, row count and schema and the reject log of each dataset against its manifest."""
    from vlmo_pipeline.data.arrow_io import load_manifest, verify_dataset

    bad = 0
    for target in args.dirs:
        try:
            directories = _dataset_dirs(Path(target))
        except CommandError as error:
            print_error("verify", str(error))
            bad += 1
            continue
        for directory in directories:
            problems = verify_dataset(directory, level="size" if args.quick else "sha256")
            for problem in problems:
                print_error("verify", problem)
            if problems:
                bad += 1
                continue
            manifest = load_manifest(directory)
            splits = ", ".join(f"{split}={rows}" for split, rows in manifest["splits"].items()) or "no splits"
            checked = "sizes" if args.quick else "sha256"
            print(
                f"OK {directory}: {manifest['dataset']} {splits} ({len(manifest['shards'])} shards, {checked} checked)"
            )
    return 1 if bad else 0


def _merge_manifests(args: argparse.Namespace) -> int:
    """Assemble a dataset folder from its partitions (vlmo_pipeline.data.partitions.merge_partitions)."""
    from vlmo_pipeline.data.partitions import PartitionError, merge_partitions
    from vlmo_pipeline.files import TargetLockedError

    try:
        result = merge_partitions(args.dataset_dir, args.parts or None, verify=args.verify)
    except (PartitionError, TargetLockedError) as error:
        raise CommandError(str(error)) from error
    manifest = result.manifest
    splits = ", ".join(f"{split}={rows}" for split, rows in manifest["splits"].items()) or "no splits"
    if result.status == "merged":
        how = ", ".join(f"{n} {verb}" for n, verb in ((result.linked, "hard-linked"), (result.copied, "copied")) if n)
        print(
            f"merged {result.parts} parts into {result.dataset_dir}: {manifest['dataset']} {splits} "
            f"({len(manifest['shards'])} shards: {how}; {manifest['rejects']} rejects)"
        )
    elif result.status == "up to date":
        print(f"up to date: {result.dataset_dir} already holds the merge of these {result.parts} parts ({splits})")
    else:
        print(
            f"nothing to merge: {result.dataset_dir} was merged from {result.parts} parts and no part folders are left"
        )
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

    verify = commands.add_parser(
        "verify",
        help="check Arrow datasets against their manifests (sha256, rows, schema, reject log)",
        description="Check every shard's sha256, row count and schema and the reject log of each dataset against "
        "its manifest.json. DIR is a dataset directory or a folder of them (e.g. data/03_primary). Prints one OK "
        "line per good dataset and one error line per problem; exit status 1 when any dataset is bad.",
    )
    verify.add_argument("dirs", nargs="+", metavar="DIR", help="dataset directory, or a folder of dataset directories")
    verify.add_argument("--quick", action="store_true", help="check sizes, rows and schemas only (no sha256)")
    verify.set_defaults(func=guarded(_verify))

    merge = commands.add_parser(
        "merge-manifests",
        help="assemble a dataset from the parts of a partitioned ingestion (ingest.num_partitions)",
        description="Assemble DATASET_DIR from the parts that `kedro run --params ingest.num_partitions=N,"
        "ingest.partition=i` wrote (default: every DATASET_DIR.part-<i>-of-<N> folder beside it). Checks that all N "
        "parts are there once, complete and ingested from the same input with the same settings, then swaps in one "
        "dataset: shards hard-linked and renamed, reject logs concatenated, one manifest. Re-running is harmless.",
    )
    merge.add_argument(
        "dataset_dir", metavar="DATASET_DIR", help="the dataset folder to write, e.g. data/03_primary/coco"
    )
    merge.add_argument("parts", nargs="*", metavar="PART_DIR", help="part folders (default: DATASET_DIR.part-*-of-N)")
    merge.add_argument("--verify", action="store_true", help="re-hash every part's shards (sha256) before merging")
    merge.set_defaults(func=guarded(_merge_manifests))

    from vlmo_pipeline.commands import model as cli_model
    from vlmo_pipeline.data import demo as demo_world

    demo = demo_world.add_subcommand(commands)
    demo.set_defaults(func=guarded(_demo_data_errors(demo.get_default("func"))))
    cli_model.add_subcommands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
