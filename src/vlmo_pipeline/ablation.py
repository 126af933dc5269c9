"""The paper's stage-wise pretraining ablation, in miniature: ``python -m vlmo_pipeline.ablation`` (``make ablation``).

(About 530 lines: a program, the variants' chain, and the table it writes; nothing else imports it.)

VLMo pretrains in three stages (1: image-only masked image modelling, 2: text-only MLM with attention and V-FFN
frozen, 3: image-text ITC + ITM + MLM); the paper's ablation is that stages 1 and 2 help stage 3. This program
re-runs the demo chain with stages left out, from the same seeds, and tabulates the demo metrics:

==========================  =================================================================================
``full``                    the demo's own chain: its ``metrics.json`` (catalog entry ``metrics``), not retrained
``no_stage1``               stage 2 from a freshly initialised model, then stage 3, the four fine-tunes, evaluate
``no_stage2``               stage 3 from the demo's stage-1 model (catalog ``stage1_model``), fine-tunes, evaluate
``no_stage1_no_stage2``     stage 3 from a freshly initialised model, fine-tunes, evaluate
==========================  =================================================================================

Every run uses the parameter section its Kedro pipeline uses (``conf/base`` merged with ``conf/<env>``,
``conf/local`` by default, through the project's config loader), turned into a :class:`RunConfig` by
:func:`~vlmo_pipeline.training.launch.configure_run` with the starting model, vocabulary and Arrow folders taken
from the Kedro catalog as the nodes receive them; only the work folders (``output_dir``, ``log_dir``: the
catalog's ``<run>_work_dirs``) move to ``<out>/<variant>/models/<run>`` and ``<out>/<variant>/reports/<run>``
(default ``data/09_ablation``), so the demo's ``data/06_models`` and ``data/08_reporting/<run>`` are never written.
A freshly initialised model is the one stage 1 starts from: stage 1's ``init`` config name and ``model_overrides``,
built with stage 1's seed (no BEiT ``init_from``), its MIM heads removed as stage 1 removes them; when stage 2 is
skipped too, stage 2's ``model_overrides`` are applied as stage 2 would apply them, so stage 3 gets the chain's text
length and image size.
Note that ``no_stage1`` trains stage 2 with its own freezing rule: attention and V-FFN stay at their random init.

Each variant is scored by :func:`~vlmo_pipeline.evaluation.suite.run_evaluation` with the ``evaluate`` parameters
(``<out>/<variant>/metrics.json``). The table (``<report-dir>/ablation.md`` and ``ablation.json``, default
``data/08_reporting``) has one row per variant: COCO / F30K TR and IR R@1, the VQA score (also with shuffled and
blank images), NLVR2 dev accuracy (also with shuffled image pairs), held-out ITM accuracy with hard negatives, the
last training loss of stage 3 and the wall time. A metric that the evaluation does not write shows ``n/a``
(``null`` in the JSON). A run whose ``last.ckpt`` under ``<out>`` belongs to the same run is resumed as the
pipelines resume (``--fresh-start`` trains again).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vlmo_pipeline.models.pretrained import VOCAB_NAME
from vlmo_pipeline.training.runs import FINETUNING_RUNS, PRETRAINING_RUNS, RUNS

__all__ = [
    "VARIANTS",
    "FULL",
    "FINETUNE_SECTIONS",
    "TABLE_COLUMNS",
    "AblationSetup",
    "load_setup",
    "build_fresh_model",
    "run_variant",
    "full_row",
    "build_table",
    "render_markdown",
    "run_ablation",
    "main",
]

logger = logging.getLogger(__name__)

FULL = "full"
STAGE1, STAGE2 = PRETRAINING_RUNS[0], PRETRAINING_RUNS[1]
PRETRAIN_SECTIONS = tuple(run.pipeline for run in PRETRAINING_RUNS)
FINETUNE_SECTIONS = tuple(run.pipeline for run in FINETUNING_RUNS)
#: Kedro parameters section -> run name (model folder, training summary, evaluation model key), from the registry.
RUN_NAMES: dict[str, str] = {run.pipeline: run.name for run in RUNS}
#: variant -> the pretraining stages it leaves out (stage 1, when kept, is the demo's own model: not retrained)
VARIANTS: dict[str, tuple[str, ...]] = {
    "no_stage1": (STAGE1.pipeline,),
    "no_stage2": (STAGE2.pipeline,),
    "no_stage1_no_stage2": (STAGE1.pipeline, STAGE2.pipeline),
}
#: catalog entry a variant starts from -> the demo run that wrote it
STARTING_RUNS = {STAGE1.model_output: STAGE1.name}
#: catalog entry of the demo's model directory of each training section
MODEL_ENTRIES = {run.pipeline: run.model_output for run in RUNS}
#: the evaluation's Arrow datasets (catalog ``<name>_arrow``)
EVALUATION_DATASETS = ("coco", "f30k", "vqav2", "nlvr2")
#: table column -> (header, path of the value in metrics.json)
TABLE_COLUMNS: dict[str, tuple[str, tuple[str, ...]]] = {
    "coco_tr_r1": ("COCO TR R@1", ("retrieval", "coco", "tr_r1")),
    "coco_ir_r1": ("COCO IR R@1", ("retrieval", "coco", "ir_r1")),
    "f30k_tr_r1": ("F30K TR R@1", ("retrieval", "f30k", "tr_r1")),
    "f30k_ir_r1": ("F30K IR R@1", ("retrieval", "f30k", "ir_r1")),
    "vqa_score": ("VQA", ("vqa", "score")),
    "vqa_score_shuffled_images": ("VQA shuffled img", ("vqa", "score_shuffled_images")),
    "vqa_score_blank_images": ("VQA blank img", ("vqa", "score_blank_images")),
    "nlvr2_dev_acc": ("NLVR2 dev", ("nlvr2", "dev_acc")),
    "nlvr2_dev_acc_shuffled_images": ("NLVR2 dev shuffled img", ("nlvr2", "dev_acc_shuffled_images")),
    "itm_acc_hard_negatives": ("ITM acc hard neg", ("itm", "acc_hard_negatives")),
}
METRICS_FILE = "metrics.json"
VARIANT_FILE = "variant.json"
TABLE_NAME = "ablation"


@dataclasses.dataclass
class AblationSetup:
    """The merged parameters and the catalog the Kedro pipelines would see, and where the ablation writes."""

    params: dict[str, Any]
    catalog: Any  # kedro.io.DataCatalog
    env: str
    out_dir: Path
    report_dir: Path
    fresh_start: bool = False

    def section(self, name: str) -> dict[str, Any]:
        if name not in self.params:
            raise KeyError(f"parameters: no section {name!r} (conf/base/parameters_{name}.yml)")
        return dict(self.params[name])

    def load(self, entry: str) -> Any:
        return self.catalog.load(entry)

    def protected_dirs(self) -> list[Path]:
        """The demo's model and report folders of every training run (the catalog's ``<run>_work_dirs``), and the
        models' parent folder (``data/06_models``): never written here."""
        dirs = set()
        for run in RUNS:
            work_dirs = self.load(run.work_dirs)
            dirs.update({work_dirs["model_dir"].resolve(), work_dirs["log_dir"].resolve()})
            dirs.add(work_dirs["model_dir"].resolve().parent)
        return sorted(dirs)


def load_setup(
    conf_source: str | os.PathLike = "conf",
    env: str | None = None,
    out_dir: str | os.PathLike = "data/09_ablation",
    report_dir: str | os.PathLike = "data/08_reporting",
    fresh_start: bool = False,
) -> AblationSetup:
    """Parameters and catalog through the project's config loader (``settings.py``), as a Kedro session loads them:
    ``conf/base`` with ``conf/<env>`` (``local`` unless given) on top."""
    from kedro.io import DataCatalog

    from vlmo_pipeline.settings import CONFIG_LOADER_ARGS, CONFIG_LOADER_CLASS

    loader = CONFIG_LOADER_CLASS(conf_source=os.fspath(conf_source), env=env, **CONFIG_LOADER_ARGS)
    params = dict(loader["parameters"])
    catalog = DataCatalog.from_config(loader["catalog"])
    return AblationSetup(
        params=params,
        catalog=catalog,
        env=env or CONFIG_LOADER_ARGS["default_run_env"],
        out_dir=Path(out_dir),
        report_dir=Path(report_dir),
        fresh_start=fresh_start,
    )


def _run_config(setup: AblationSetup, section: str, variant: str, init: Path | None = None):
    """The section's RunConfig as its Kedro node builds it, with output and log folders under the variant's."""
    from vlmo_pipeline.training.launch import configure_run

    values = setup.section(section)
    run = RUN_NAMES[section]
    root = setup.out_dir / variant
    values["output_dir"] = os.fspath(root / "models" / run)
    values["log_dir"] = os.fspath(root / "reports" / run)
    if setup.fresh_start:
        values["fresh_start"] = True
    datasets = dict(values.get("data") or {}).get("datasets") or {}
    dataset_dirs = {name: setup.load(f"{name}_arrow") for name in datasets}
    config = configure_run(
        values, f"parameters_{section}.yml (ablation {variant})", path=section, init=init, dataset_dirs=dataset_dirs
    )
    _check_not_protected(setup, Path(config.output_dir), Path(config.log_dir))
    return config


def _check_not_protected(setup: AblationSetup, *paths: Path) -> None:
    for path in paths:
        resolved = path.resolve()
        for protected in setup.protected_dirs():
            if resolved == protected or protected in resolved.parents or resolved in protected.parents:
                raise ValueError(f"ablation: {path} would write into the demo's {protected}; choose another --out")


def build_fresh_model(setup: AblationSetup, vocab_file: Path, target: Path, skipped: Sequence[str]) -> Path:
    """Write the model stage 1 starts from (its ``init`` + ``model_overrides``, its seed, no BEiT weights) to
    ``target`` as stage 1 saves its own (MIM heads removed); with stage 2's section in ``skipped``, stage 2's
    ``model_overrides`` applied on top, as stage 2 applies them to the model it loads."""
    import lightning as L

    from vlmo_pipeline.datasets.directory import DirectoryDataset
    from vlmo_pipeline.models import list_configs
    from vlmo_pipeline.models.tokenizer import VLMoTokenizer
    from vlmo_pipeline.training.launch import configure_run
    from vlmo_pipeline.training.setup import prepare_model

    section = STAGE1.pipeline
    stage1 = configure_run(setup.section(section), f"parameters_{section}.yml", path=section, vocab_file=vocab_file)
    if stage1.init not in list_configs():
        raise ValueError(
            f"{section}.init {stage1.init!r} is not a registered config name; a fresh model "
            f"needs one of {list_configs()}"
        )
    overrides = dict(stage1.model_overrides)
    if STAGE2.pipeline in skipped:
        section = STAGE2.pipeline
        overrides.update(
            configure_run(setup.section(section), f"parameters_{section}.yml", path=section).model_overrides
        )
    fresh = dataclasses.replace(stage1, init_from=None, model_overrides=overrides)
    tokenizer = VLMoTokenizer(vocab_file, lowercase=True, max_len=fresh.data.max_text_len)
    L.seed_everything(fresh.seed, workers=True, verbose=False)  # as train() does before building its model
    model = prepare_model(fresh, tokenizer.vocab_size)
    model.set_tasks(())  # what stage 1 saves: its MIM mask token and head removed
    _check_not_protected(setup, target)
    DirectoryDataset(path=os.fspath(target)).save(
        lambda directory: model.save_pretrained(directory, vocab_file=vocab_file)
    )
    logger.info("ablation: fresh %s (seed %d, overrides %s) -> %s", fresh.init, fresh.seed, overrides, target)
    return target


def _train(setup: AblationSetup, section: str, variant: str, init: Path):
    """Train one section (in-process or torchrun, as the Kedro node); returns (model directory, summary)."""
    from vlmo_pipeline.datasets.directory import DirectoryDataset
    from vlmo_pipeline.files import atomic_write_text
    from vlmo_pipeline.training.export import SUMMARY_FILE
    from vlmo_pipeline.training.launch import train_for_catalog

    config = _run_config(setup, section, variant, init=init)
    written, summary = train_for_catalog(config)
    DirectoryDataset(path=config.output_dir).save(written)
    atomic_write_text(Path(config.log_dir) / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n", parents=True)
    return Path(config.output_dir), summary


def _run_settings(setup: AblationSetup, sections: Sequence[str]) -> dict[str, dict[str, Any]]:
    settings = {}
    for section in sections:
        values = setup.section(section)
        trainer = dict(values.get("trainer") or {})
        settings[RUN_NAMES[section]] = {
            "seed": values.get("seed", 0),
            "max_steps": trainer.get("max_steps"),
            "batch_size": dict(values.get("data") or {}).get("batch_size"),
        }
    return settings


def run_variant(setup: AblationSetup, variant: str) -> dict[str, Any]:
    """Train and evaluate one variant; writes ``<out>/<variant>/metrics.json`` and ``variant.json``; returns the
    variant record (what ``variant.json`` holds, with the metrics)."""
    from vlmo_pipeline.evaluation.suite import MODEL_NAMES, EvaluationConfig, run_evaluation
    from vlmo_pipeline.files import atomic_write_text

    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {sorted(VARIANTS)}")
    skipped = VARIANTS[variant]
    start = "fresh" if STAGE1.pipeline in skipped else STAGE1.model_output
    pretraining = [section for section in PRETRAIN_SECTIONS[1:] if section not in skipped]
    started = time.perf_counter()
    root = setup.out_dir / variant
    summaries: dict[str, dict[str, Any]] = {}
    if start == "fresh":
        # vocab.txt goes into the fresh model's folder, so the next stage finds it there as it finds stage 1's
        init = build_fresh_model(setup, setup.load("vocab") / VOCAB_NAME, root / "models" / "fresh_init", skipped)
    else:
        init = setup.load(start)
        shared = STARTING_RUNS[start]
        if (summary := _load_optional(setup, f"{shared}_training_summary")) is not None:
            summaries[shared] = summary
    models: dict[str, Path] = {}
    for section in pretraining:
        init, summaries[RUN_NAMES[section]] = _train(setup, section, variant, init)
        models[RUN_NAMES[section]] = init
    for section in FINETUNE_SECTIONS:
        models[RUN_NAMES[section]], summaries[RUN_NAMES[section]] = _train(setup, section, variant, models["stage3"])

    evaluation_started = time.perf_counter()
    config = EvaluationConfig.from_dict(setup.section("evaluate"))
    result = run_evaluation(
        config,
        model_dirs={name: models[name] for name in MODEL_NAMES},
        dataset_dirs={name: setup.load(f"{name}_arrow") for name in EVALUATION_DATASETS},
        stage_summaries=summaries,
    )
    metrics = result.metrics
    atomic_write_text(root / METRICS_FILE, json.dumps(metrics, indent=2) + "\n", parents=True)
    record = {
        "variant": variant,
        "skipped": [RUN_NAMES[section] for section in skipped],
        "starts_from": (
            f"a fresh `{setup.section(STAGE1.pipeline)['init']}` (stage 1's config, overrides and seed)"
            if start == "fresh"
            else f"the demo's {STARTING_RUNS[start]} model `{setup.load(start)}`"
        ),
        "trained": list(models),
        "runs": {
            name: {
                key: summary.get(key) for key in ("global_step", "first_loss", "last_loss", "seconds", "resumed_from")
            }
            for name, summary in summaries.items()
        },
        "evaluation_s": round(time.perf_counter() - evaluation_started, 1),
        "wall_s": round(time.perf_counter() - started, 1),
        "metrics_file": os.fspath(root / METRICS_FILE),
    }
    atomic_write_text(root / VARIANT_FILE, json.dumps(record, indent=2) + "\n", parents=True)
    logger.info("ablation %s: %.0f s, metrics -> %s", variant, record["wall_s"], record["metrics_file"])
    return {**record, "metrics": metrics}


# -------------------------------------------------------------------------------------------------- table
def _load_optional(setup: AblationSetup, entry: str) -> Any:
    """A catalog entry's data, or ``None`` where the demo has not written it."""
    if not setup.catalog.exists(entry):
        return None
    return setup.load(entry)


def _lookup(metrics: Mapping[str, Any] | None, path: Sequence[str]) -> float | None:
    value: Any = metrics
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _full_chain_mismatches(setup: AblationSetup) -> list[str]:
    """Where the demo's trained models used another seed or step count than the parameters do now (the full row
    then does not come from the same settings as the variants)."""
    from vlmo_pipeline.training.export import SUMMARY_FILE

    mismatches = []
    for section, entry in MODEL_ENTRIES.items():
        if not setup.catalog.exists(entry):
            mismatches.append(f"{RUN_NAMES[section]}: the demo's model ({entry}) is missing")
            continue
        path = Path(setup.load(entry)) / SUMMARY_FILE
        recorded = json.loads(path.read_text()).get("run_config", {}) if path.is_file() else {}
        now = _run_settings(setup, [section])[RUN_NAMES[section]]
        then = {
            "seed": recorded.get("seed"),
            "max_steps": (recorded.get("trainer") or {}).get("max_steps"),
            "batch_size": (recorded.get("data") or {}).get("batch_size"),
        }
        for key, value in now.items():
            if then[key] is not None and value is not None and then[key] != value:
                mismatches.append(
                    f"{RUN_NAMES[section]}: demo model trained with {key} {then[key]}, parameters now say {value}"
                )
    return mismatches


def full_row(setup: AblationSetup) -> dict[str, Any]:
    """The ``full`` row from the demo's own outputs (catalog ``metrics`` and ``<run>_training_summary``)."""
    metrics = _load_optional(setup, "metrics")
    summaries = {run: _load_optional(setup, f"{run}_training_summary") for run in RUN_NAMES.values()}
    seconds = [summary.get("seconds") for summary in summaries.values() if summary]
    wall = sum(value for value in seconds if isinstance(value, (int, float)))
    evaluation = _lookup(metrics, ("timing", "total_s"))
    stage3 = summaries.get("stage3") or {}
    last_loss = stage3.get("last_loss")
    if last_loss is None:
        last_loss = _lookup(metrics, ("model", "stages", "stage3", "last_loss"))
    notes = []
    if metrics is None:
        notes.append("the demo's metrics.json is missing: run `make demo` (or `dvc repro`) first")
    return {
        "variant": FULL,
        "skipped": [],
        "starts_from": "the demo chain (not retrained)",
        "metrics": metrics,
        "stage3_last_loss": last_loss,
        "wall_s": round(wall + (evaluation or 0.0), 1) if seconds or evaluation is not None else None,
        "runs": {
            run: {key: summary.get(key) for key in ("global_step", "last_loss", "seconds")}
            for run, summary in summaries.items()
            if summary
        },
        "notes": notes + _full_chain_mismatches(setup),
    }


def build_table(setup: AblationSetup, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``ablation.json``: one row per variant (the metrics of :data:`TABLE_COLUMNS`, ``None`` = not written by the
    evaluation), the stage-3 last loss and the wall time, and the seeds and steps of every run."""
    rows = []
    for record in records:
        runs = record.get("runs") or {}
        resumed = [name for name in record.get("trained") or [] if (runs.get(name) or {}).get("resumed_from")]
        rows.append(
            {
                "variant": record["variant"],
                "skipped": list(record.get("skipped") or []),
                "starts_from": record.get("starts_from"),
                **{key: _lookup(record.get("metrics"), path) for key, (_, path) in TABLE_COLUMNS.items()},
                "stage3_last_loss": record.get("stage3_last_loss", (runs.get("stage3") or {}).get("last_loss")),
                "wall_s": record.get("wall_s"),
                "resumed_runs": resumed,
                "notes": list(record.get("notes") or []),
            }
        )
    evaluate = setup.section("evaluate")
    return {
        "env": setup.env,
        "columns": {key: header for key, (header, _) in TABLE_COLUMNS.items()},
        "rows": rows,
        "runs": _run_settings(setup, list(RUN_NAMES)),
        "evaluate": {
            "controls_seed": evaluate.get("controls_seed"),
            "retrieval_split": evaluate.get("retrieval_split"),
            "vqa_split": evaluate.get("vqa_split"),
            "nlvr2_dev_split": evaluate.get("nlvr2_dev_split"),
        },
        "out_dir": os.fspath(setup.out_dir),
    }


def _cell(value: Any, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def render_markdown(table: Mapping[str, Any]) -> str:
    """``ablation.md``: the table, the seeds and steps, and what each row is."""
    headers = ["variant", "skipped"] + list(table["columns"].values()) + ["stage-3 last loss", "wall time (s)"]
    lines = [
        "# Stage-wise pretraining ablation (demo scale)",
        "",
        "The demo chain with stage 1 (image-only MIM) and/or stage 2 (text-only MLM) left out, from the same seeds "
        f"and parameters (Kedro env `{table['env']}`), next to the full chain. Scores in percent on the demo's "
        f"held-out splits (retrieval: {table['evaluate']['retrieval_split']}, VQA: {table['evaluate']['vqa_split']}, "
        f"NLVR2: {table['evaluate']['nlvr2_dev_split']}); ITM: the stage-3 model's held-out accuracy, hard "
        "negatives. n/a: the evaluation does not write that metric.",
        "",
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    for row in table["rows"]:
        cells = [f"`{row['variant']}`", ", ".join(row["skipped"]) or "-"]
        cells += [_cell(row[key]) for key in table["columns"]]
        cells += [_cell(row["stage3_last_loss"], 3), _cell(row["wall_s"], 0)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Seeds and steps",
        "",
        "Every variant trains each run with its parameter section's seed, steps and batch size (the same as "
        "the full chain); the evaluation's image controls and ITM negatives use "
        f"`controls_seed` {table['evaluate']['controls_seed']}.",
        "",
        "| run | seed | steps | batch |",
        "|---|---|---|---|",
    ]
    for run, settings in table["runs"].items():
        lines.append(f"| {run} | {settings['seed']} | {settings['max_steps']} | {settings['batch_size']} |")
    lines += ["", "## Rows", ""]
    for row in table["rows"]:
        text = f"- `{row['variant']}`: starts from {row['starts_from']}"
        if row["variant"] != FULL:
            text += f"; models, logs and metrics.json in `{table['out_dir']}/{row['variant']}/`"
        if row["resumed_runs"]:
            text += f"; resumed from an earlier last.ckpt: {', '.join(row['resumed_runs'])} (wall time not comparable)"
        lines.append(text + ".")
        lines += [f"  - note: {note}" for note in row["notes"]]
    lines += [
        "",
        "Wall time: for `full` the demo's recorded training seconds of all seven runs plus its evaluation; for "
        "a variant the time this program spent on it (fresh model, training, evaluation; a reused stage-1 "
        "model is not retrained). A fresh model is the one stage 1 starts from (its config name, "
        "`model_overrides` and seed); in `no_stage1` stage 2 keeps its freezing rule, so attention and V-FFN "
        "stay at that random init until stage 3.",
        "",
    ]
    return "\n".join(lines)


def run_ablation(setup: AblationSetup, variants: Sequence[str] = tuple(VARIANTS)) -> dict[str, Any]:
    """Run ``variants``, then write ``ablation.json`` and ``ablation.md`` (rows: ``full`` + the variants)."""
    from vlmo_pipeline.files import atomic_write_text

    unknown = [variant for variant in variants if variant not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; expected some of {list(VARIANTS)}")
    json_path = setup.report_dir / f"{TABLE_NAME}.json"
    md_path = setup.report_dir / f"{TABLE_NAME}.md"
    _check_not_protected(setup, json_path, md_path)
    records = [full_row(setup)] + [run_variant(setup, variant) for variant in variants]
    table = build_table(setup, records)
    atomic_write_text(json_path, json.dumps(table, indent=2) + "\n", parents=True)
    atomic_write_text(md_path, render_markdown(table), parents=True)
    logger.info("ablation table -> %s, %s", md_path, json_path)
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vlmo_pipeline.ablation",
        description="Stage-wise pretraining ablation of the demo chain (make ablation)",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        default=list(VARIANTS),
        choices=list(VARIANTS),
        help="variants to train and evaluate (the full chain's row is always read, never retrained)",
    )
    parser.add_argument("--env", default=None, help="Kedro config environment over conf/base (default: local)")
    parser.add_argument("--conf-source", default="conf", help="the project's conf folder")
    parser.add_argument("--out", default="data/09_ablation", help="models, logs and metrics of the variants")
    parser.add_argument("--report-dir", default="data/08_reporting", help="where ablation.md / ablation.json go")
    parser.add_argument("--fresh-start", action="store_true", help="ignore the variants' earlier last.ckpt")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    setup = load_setup(args.conf_source, args.env, args.out, args.report_dir, fresh_start=args.fresh_start)
    table = run_ablation(setup, args.variants)
    print(render_markdown(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
