"""Typed configuration (vlmo_pipeline.schema): each wrong value is one error naming the source, the key, the
expected type and the value; right values are converted (lists to tuples, integers to floats) and kept."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vlmo_pipeline.data.ingest import IngestConfig
from vlmo_pipeline.pipelines.ingest.nodes import _config as ingest_config
from vlmo_pipeline.schema import ConfigError, build_config
from vlmo_pipeline.training.config import run_config_from_dict
from vlmo_pipeline.training.vocab import VocabConfig


@dataclass
class Inner:
    ratio: float = 0.5
    names: tuple[str, ...] = ("a",)

    def __post_init__(self) -> None:
        if not 0 < self.ratio < 1:
            raise ValueError(f"ratio must be in (0, 1), got {self.ratio}")


@dataclass
class Outer:
    steps: int = 10
    flag: bool = False
    label: str = "x"
    limit: int | None = None
    size: str | int | None = "2GiB"
    pair: tuple[float, float] = (0.9, 0.98)
    splits: dict[str, list[str]] = field(default_factory=dict)
    inner: Inner = field(default_factory=Inner)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"flag": "false"}, "f.yml: sec.flag: expected true or false, got str 'false'"),
        ({"flag": "no"}, "f.yml: sec.flag: expected true or false, got str 'no'"),
        ({"flag": 0}, "f.yml: sec.flag: expected true or false, got int 0"),
        ({"steps": 20.7}, "f.yml: sec.steps: expected an integer, got float 20.7"),
        ({"steps": 20.0}, "f.yml: sec.steps: expected an integer, got float 20.0"),
        ({"steps": True}, "f.yml: sec.steps: expected an integer, got bool True"),
        ({"steps": "20"}, "f.yml: sec.steps: expected an integer, got str '20'"),
        ({"label": 3}, "f.yml: sec.label: expected a string, got int 3"),
        ({"limit": "none"}, "f.yml: sec.limit: expected an integer or null, got str 'none'"),
        ({"size": 1.5}, "f.yml: sec.size: expected a string or an integer or null, got float 1.5"),
        ({"pair": [0.9]}, "f.yml: sec.pair: expected a list of 2 values (a number, a number), got list [0.9]"),
        ({"splits": {"coco": "train"}}, "f.yml: sec.splits.coco: expected a list of strings, got str 'train'"),
        ({"splits": ["coco"]}, "f.yml: sec.splits: expected a mapping to a list of strings, got list ['coco']"),
        ({"inner": {"ratio": "half"}}, "f.yml: sec.inner.ratio: expected a number, got str 'half'"),
        ({"inner": {"names": ["a", 2]}}, "f.yml: sec.inner.names[1]: expected a string, got int 2"),
        ({"inner": {"ratio": 2}}, "f.yml: sec: ratio must be in (0, 1), got 2.0"),
        ({"inner": 3}, "f.yml: sec.inner: expected a mapping of Inner settings, got int 3"),
        ({"stpes": 3}, "f.yml: sec: unknown key(s) ['stpes']; known: ['flag', 'inner', 'label'"),
    ],
)
def test_wrong_values_are_one_error_naming_file_key_type_and_value(values, message):
    with pytest.raises(ConfigError) as error:
        build_config(Outer, values, "f.yml", "sec")
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_every_problem_of_a_mapping_is_in_the_one_error():
    with pytest.raises(ConfigError) as error:
        build_config(Outer, {"steps": "1", "flag": "yes", "inner": {"ratio": None}}, "f.yml")
    assert str(error.value) == (
        "f.yml: steps: expected an integer, got str '1'; flag: expected true or false, got str 'yes'; "
        "inner.ratio: expected a number, got null"
    )


def test_right_values_are_converted_and_kept():
    built = build_config(
        Outer,
        {
            "steps": 3,
            "flag": True,
            "label": Path("some/dir"),
            "limit": None,
            "size": 1024,
            "pair": [1, "0.5"],
            "splits": {"coco": ("train", "val")},
            "inner": {"ratio": "1e-1", "names": ["b", "c"]},
        },
        "f.yml",
    )
    assert built == Outer(
        3, True, "some/dir", None, 1024, (1.0, 0.5), {"coco": ["train", "val"]}, Inner(0.1, ("b", "c"))
    )
    assert isinstance(built.pair[0], float)
    assert build_config(Outer, None, "f.yml") == Outer()


def test_run_config_reports_the_issue_cases_by_key():
    """The cases of issue #12: quoted booleans no longer switch features on, a fractional step count and a
    string where an integer belongs are errors naming the key (before: silently on, accepted, a bare TypeError)."""
    where, path = "parameters_pretrain_stage1.yml", "pretrain_stage1"
    cases = {
        ("data", "augment", "false"): "pretrain_stage1.data.augment: expected true or false, got str 'false'",
        ("data", "hflip", "no"): "pretrain_stage1.data.hflip: expected true or false, got str 'no'",
        ("trainer", "max_steps", 20.7): "pretrain_stage1.trainer.max_steps: expected an integer, got float 20.7",
        ("data", "batch_size", "32"): "pretrain_stage1.data.batch_size: expected an integer, got str '32'",
    }
    for (section, key, value), expected in cases.items():
        with pytest.raises(ConfigError) as error:
            run_config_from_dict({"stage": "stage1", section: {key: value}}, where=where, path=path)
        assert str(error.value) == f"{where}: {expected}"
    # YAML 1.1 reads 1e-4 as a string; a float field takes it, and an integer warm-up stays an integer
    config = run_config_from_dict({"stage": "stage1", "optim": {"lr": "1e-4", "warmup": 5, "betas": [0.9, 0.99]}})
    assert (config.optim.lr, config.optim.warmup, config.optim.betas) == (1e-4, 5, (0.9, 0.99))
    assert config.trainer.precision == "auto"
    assert run_config_from_dict({"stage": "stage1", "trainer": {"precision": 32}}).trainer.precision == 32


def test_other_parameter_sections_are_typed():
    with pytest.raises(ConfigError, match=r"^parameters_vocab.yml: vocab.lowercase: expected true or false"):
        VocabConfig.from_dict({"lowercase": "false"})
    with pytest.raises(ConfigError, match=r"^parameters_ingest.yml: ingest.workers: expected an integer, got str"):
        ingest_config({"workers": "2"}, "coco")
    # a dataset's override is named as such, and wins over the shared value
    with pytest.raises(ConfigError, match=r"^parameters_ingest.yml: ingest.overrides.text.shard_rows: expected an"):
        ingest_config({"overrides": {"text": {"shard_rows": 5.5}}}, "text")
    config = ingest_config({"shard_rows": 10, "overrides": {"text": {"shard_rows": 99}}}, "text")
    assert config == IngestConfig(shard_rows=99)
    assert ingest_config({"vqa_vocab_splits": ["train"]}, "coco").vqa_vocab_splits == ("train",)
