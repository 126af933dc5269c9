"""The run registry is the one table of training runs: the parameters files, the catalog and dvc.yaml agree with it,
and the Kedro pipelines are built from it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog

from vlmo_pipeline.commands.train import resolve_run
from vlmo_pipeline.pipeline_registry import register_pipelines
from vlmo_pipeline.training.config import STAGES
from vlmo_pipeline.training.runs import FINETUNING_RUNS, PRETRAINING_RUNS, RUNS, get_run

REPO = Path(__file__).resolve().parents[2]


def _yaml(*parts: str) -> dict:
    return yaml.safe_load((REPO.joinpath(*parts)).read_text())


def _paths(value) -> list[str]:
    """Every string inside a loaded YAML value that names a path under data/."""
    if isinstance(value, dict):
        return [path for item in value.values() for path in _paths(item)]
    if isinstance(value, list):
        return [path for item in value for path in _paths(item)]
    return [value] if isinstance(value, str) and value.startswith("data/") else []


def test_no_parameter_file_under_conf_base_holds_a_data_path():
    """Paths live in the catalog only; the nodes receive them as catalog inputs."""
    for path in sorted((REPO / "conf" / "base").glob("parameters*.yml")):
        assert _paths(_yaml("conf", "base", path.name)) == [], path.name


@pytest.mark.parametrize("run", RUNS, ids=lambda run: run.name)
def test_parameters_catalog_and_dvc_agree_with_the_registry(run):
    section = _yaml("conf", "base", f"parameters_{run.pipeline}.yml")[run.pipeline]
    assert section["stage"] == run.stage and run.stage in STAGES
    assert set(section["data"]["datasets"]) <= set(run.datasets), "the node must hand every dataset it reads"

    catalog = DataCatalog.from_config(OmegaConfigLoader(str(REPO / "conf"), base_env="base")["catalog"])
    work_dirs = catalog.load(run.work_dirs)
    assert work_dirs == {
        "model_dir": Path(f"data/06_models/{run.name}"),
        "log_dir": Path(f"data/08_reporting/{run.name}"),
    }
    assert Path(catalog.get(run.model_output)._describe()["path"]) == work_dirs["model_dir"]
    summary = Path(catalog.get(run.summary_output)._describe()["filepath"])
    assert summary == work_dirs["log_dir"] / "training_summary.json"
    for dataset in run.datasets:
        assert catalog.get(f"{dataset}_arrow")._describe()["path"] == f"data/03_primary/{dataset}"

    stage = _yaml("dvc.yaml")["stages"][run.pipeline]
    assert stage["cmd"] == f"kedro run --pipeline={run.pipeline}"
    assert str(work_dirs["model_dir"]) in stage["outs"]
    assert str(summary) in stage["outs"]


def test_kedro_pipelines_and_entry_point_are_built_from_the_registry():
    pipelines = register_pipelines()
    for run in RUNS:
        (node,) = pipelines[run.pipeline].nodes
        assert (node.name, node.inputs, node.outputs) == (
            run.pipeline,
            run.inputs,
            [run.model_output, run.summary_output],
        )
        assert resolve_run(run.pipeline) == resolve_run(run.name) == run.name
    # each fine-tune starts from stage 3's model, each pretraining stage from the one before
    assert [run.starts_from for run in PRETRAINING_RUNS] == [None, "stage1_model", "stage2_model"]
    assert {run.starts_from for run in FINETUNING_RUNS} == {PRETRAINING_RUNS[-1].model_output}
    with pytest.raises(ValueError, match="unknown run 'finetune_gqa'"):
        get_run("finetune_gqa")
