"""The per-run trainable-parameter tables (``trainable_parameters.md`` / ``.json`` beside each run's CSV log):
stage 2's against the official freezing rule (from a real run), stages 1 and 3 and a fine-tune as sanity checks,
the report's links to them, and the runner's progress lines."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from vlmo_pipeline.evaluation.report import parameter_table_links, render_report_markdown
from vlmo_pipeline.models.tokenizer import VLMoTokenizer
from vlmo_pipeline.training.modules import build_module
from vlmo_pipeline.training.parameter_table import (
    GROUPS,
    OTHER,
    TABLE_JSON_NAME,
    TABLE_NAME,
    parameter_group,
    trainable_parameter_table,
)
from vlmo_pipeline.training.runner import train
from vlmo_pipeline.training.setup import apply_freezing, prepare_model, resolve_vocab_file

try:
    from .tiny_training_world import tiny_run, tiny_world  # noqa: F401  (fixture)
except ImportError:  # rootdir-style import when tests/training is not a package
    from tiny_training_world import tiny_run, tiny_world  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _vocab_size(vocab_file: Path) -> int:
    return VLMoTokenizer(vocab_file, lowercase=True).vocab_size


@pytest.fixture(scope="module")
def stage1_like_dir(tiny_world: Path, tmp_path_factory) -> Path:
    """An (untrained) stage-1 model exported as stage 1 does: the starting point of stage 2 / 3 runs."""
    work = tmp_path_factory.mktemp("stage1_like")
    config = tiny_run("stage1", tiny_world, work)
    vocab = resolve_vocab_file(config)
    model = prepare_model(config, _vocab_size(vocab))
    model.set_tasks(())
    return model.save_pretrained(work / "stage1", vocab_file=vocab)


def _table(config) -> dict:
    vocab = resolve_vocab_file(config)
    module = build_module(prepare_model(config, _vocab_size(vocab)), config)
    apply_freezing(module, config)
    return trainable_parameter_table(module, run=config.name, stage=config.stage, rule=config.trainable)


def _states(table: dict) -> dict[str, str]:
    return {row["group"]: row["state"] for row in table["groups"]}


def test_stage2_run_writes_a_table_that_follows_the_freezing_rule(
    tiny_world: Path, stage1_like_dir: Path, tmp_path: Path, caplog
):
    config = tiny_run(
        "stage2",
        tiny_world,
        tmp_path,
        init=stage1_like_dir,
        steps=2,
        trainer={"max_steps": 2, "log_every_n_steps": 1, "progress_bar": True, "checkpoint_every_n_steps": 1},
    )
    caplog.set_level(logging.INFO)
    outcome = train(config)
    log_dir = Path(config.log_dir)
    table = json.loads((log_dir / TABLE_JSON_NAME).read_text())
    markdown = (log_dir / TABLE_NAME).read_text()
    assert (log_dir / "metrics.csv").is_file()  # written after the fit, nothing of Lightning's log removed
    assert outcome.summary["parameter_table"] == str(log_dir / TABLE_NAME)

    states = _states(table)
    # Official stage 2 (run.py): shared attention, norm1, layer scale, V-FFN (+ norm), patch embedding, image CLS
    # frozen; L-FFN (+ norm), text and token-type embeddings, MLM head, rel-pos table and final norm trainable.
    for group in (
        "shared attention",
        "attention norm (norm1)",
        "layer scale (gamma_1, gamma_2)",
        "V-FFN",
        "V-FFN norm",
        "patch embedding",
        "image CLS / position embedding",
    ):
        assert states[group] == "frozen", group
    for group in (
        "L-FFN",
        "L-FFN norm",
        "text embeddings",
        "modality (token-type) embeddings",
        "MLM head",
        "relative position bias",
        "final norm",
    ):
        assert states[group] == "trainable", group
    assert OTHER not in states and "VL-FFN" not in states  # no VL-FFN before stage 3
    assert table["trainable_rule"] == list(config.trainable)
    # Same totals as the freeze report of the run, every group's columns add up.
    totals, counts = table["totals"], outcome.summary["parameters"]
    assert (totals["trainable"], totals["frozen"]) == (counts["trainable_params"], counts["frozen_params"])
    assert totals["trainable_tensors"] == counts["trainable_tensors"]
    assert totals["total"] == sum(parameter.numel() for parameter in outcome.model.parameters())
    assert all(row["trainable"] + row["frozen"] == row["total"] for row in table["groups"])
    assert "| shared attention | blocks.*.attn (qkv, q/v bias, proj) | frozen | 0 |" in markdown
    assert "| V-FFN | blocks.*.mlp_imag | frozen | 0 |" in markdown
    assert "| L-FFN | blocks.*.mlp_text | trainable |" in markdown
    assert "only those get a gradient" in markdown  # the rel-pos table note

    # One line per event: a short freezing line, progress lines in steps of max_steps (pytest is not a TTY).
    messages = [record.getMessage() for record in caplog.records]
    assert any(message.startswith("stage2: ") and "parameters trainable" in message for message in messages)
    progress = [record.getMessage() for record in caplog.records if record.name == "vlmo_pipeline.progress"]
    assert progress and progress[-1].startswith("stage2: step 2/2 (100 %), loss ")
    assert "samples/s" in progress[-1] and "took" in progress[-1]
    assert not any("GPU available" in message or "litlogger" in message for message in messages)


def test_stage1_and_stage3_tables_are_sane(tiny_world: Path, stage1_like_dir: Path, tmp_path: Path):
    stage1 = _table(tiny_run("stage1", tiny_world, tmp_path))
    states = _states(stage1)
    for group in (
        "shared attention",
        "V-FFN",
        "patch embedding",
        "MIM mask token + head (stage 1)",
        "relative position bias",
    ):
        assert states[group] == "trainable", group
    assert {"text embeddings", "L-FFN", "L-FFN norm"} <= set(states)
    for group in (
        "text embeddings",
        "modality (token-type) embeddings",
        "L-FFN",
        "L-FFN norm",
        "VL-FFN",
        "VL-FFN norm",
        "MLM head",
    ):
        assert states.get(group, "frozen") == "frozen", group

    stage3 = _table(tiny_run("stage3", tiny_world, tmp_path, init=stage1_like_dir))
    assert stage3["trainable_rule"] is None and stage3["totals"]["frozen"] == 0
    states = _states(stage3)
    assert {"VL-FFN", "ITM head", "ITC projections + temperatures", "MLM head", "shared attention"} <= set(states)
    assert set(states.values()) == {"trainable"} and OTHER not in states

    vqa = _table(tiny_run("vqa", tiny_world, tmp_path, init=stage1_like_dir))
    assert _states(vqa).get("VQA head") == "trainable" and OTHER not in _states(vqa)


def test_every_model_parameter_has_a_named_group(tiny_world: Path, stage1_like_dir: Path, tmp_path: Path):
    from vlmo_pipeline.models import create_model

    model = create_model("vlmo_tiny", vocab_size=64, loss_names=("itm", "itc", "mlm", "vqa", "nlvr2", "mim"))
    unmatched = [name for name, _ in model.named_parameters() if parameter_group(name) == OTHER]
    assert unmatched == []
    assert parameter_group("model.transformer.blocks.3.attn.qkv.weight") == "shared attention"
    assert parameter_group("model.transformer.blocks.0.norm2_vl.weight") == "VL-FFN norm"
    assert len({name for name, _, _ in GROUPS}) == len(GROUPS)


def test_report_links_each_stage_table(tmp_path: Path):
    run_dir, report_dir = tmp_path / "08_reporting" / "stage2", tmp_path / "08_reporting" / "report"
    run_dir.mkdir(parents=True)
    (run_dir / TABLE_NAME).write_text("# table\n")
    stages = {
        "stage2": {
            "global_step": 3,
            "first_loss": 6.0,
            "last_loss": 5.0,
            "seconds": 2.0,
            "log_csv": str(run_dir / "metrics.csv"),
            "parameters": {"trainable_params": 624761, "frozen_params": 908672},
        },
        "vqa": {"global_step": 3, "log_csv": str(tmp_path / "08_reporting" / "vqa" / "metrics.csv")},
    }
    links = parameter_table_links(report_dir, stages)
    assert links == {"stage2": "../stage2/trainable_parameters.md"}  # vqa wrote none: no dangling link
    metrics = {
        "retrieval": {},
        "chance": {
            "retrieval": {},
            "vqa": {"score": 1.0},
            "nlvr2": {"dev_acc": 50.0, "test_acc": 50.0},
            "itm": {"acc_hard_negatives": 50.0, "acc_random_negatives": 50.0},
        },
        "vqa": {"score": 1.0, "score_shuffled_images": 1.0, "score_blank_images": 1.0, "by_type": {}, "by_family": {}},
        "nlvr2": {"dev_acc": 1.0, "test_acc": 1.0, "dev_acc_shuffled_images": 1.0},
        "itm": {
            "acc_hard_negatives": 1.0,
            "acc_random_negatives": 1.0,
            "hard_negative_duplicate_rate": 0.0,
            "random_negative_duplicate_rate": 0.0,
        },
    }
    text = render_report_markdown(metrics, stages, {}, parameter_tables=links)
    assert "| stage2 | 3 | 6.0 | 5.0 | 2.0 | 624,761 / 1,533,433 ([table](../stage2/trainable_parameters.md)) |" in text
    assert "| vqa | 3 | n/a | n/a | n/a | n/a |" in text
