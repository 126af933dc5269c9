"""The `paper` Kedro environment (`kedro run --env paper ...`) holds the paper's VLMo-Base settings (spec 4.4, 5.2):
every training section it overrides must load through Kedro's config loader and build a valid RunConfig."""

from __future__ import annotations

import pytest
from kedro.config import OmegaConfigLoader

from vlmo_pipeline.models import get_config
from vlmo_pipeline.training.config import run_config_from_dict

from tests.conftest import REPO

PAPER_SECTIONS = (
    "pretrain_stage1",
    "pretrain_stage2",
    "pretrain_stage3",
    "finetune_retrieval_coco",
    "finetune_retrieval_f30k",
    "finetune_vqa",
    "finetune_nlvr2",
)


@pytest.fixture(scope="module")
def paper_params() -> dict:
    loader = OmegaConfigLoader(conf_source=str(REPO / "conf"), base_env="base", default_run_env="paper")
    return loader["parameters"]


@pytest.mark.parametrize("section", PAPER_SECTIONS)
def test_paper_sections_build_run_configs(paper_params: dict, section: str):
    config = run_config_from_dict(paper_params[section], where=f"conf/paper {section}")
    assert config.trainer.precision == "auto"  # bf16-mixed on the GPUs
    assert config.data.max_text_len == 40


def test_paper_values_are_the_papers(paper_params: dict):
    stage1 = run_config_from_dict(paper_params["pretrain_stage1"])
    assert stage1.init == "vlmo_base_patch16" and stage1.init_from.endswith(".pth")
    assert get_config("vlmo_base_patch16").image_size == 224
    stage3 = run_config_from_dict(paper_params["pretrain_stage3"])
    global_batch = (stage3.data.batch_size * stage3.trainer.devices * stage3.trainer.num_nodes
                    * stage3.trainer.accumulate_grad_batches)
    assert (global_batch, stage3.optim.lr, stage3.trainer.max_steps, stage3.optim.warmup) == (1024, 2e-4, 200000, 2500)
    assert stage3.itc_temperature_init is None  # official 0.07, not the demo's 0.3
    assert stage3.itm_negatives == "hard"  # official look-alike negatives, not the demo's random ones
    stage2 = run_config_from_dict(paper_params["pretrain_stage2"])
    assert stage2.data.batch_size * stage2.trainer.devices * stage2.trainer.accumulate_grad_batches == 1024
    vqa = run_config_from_dict(paper_params["finetune_vqa"])
    assert (vqa.optim.lr, vqa.optim.lr_mult, vqa.trainer.max_epochs) == (3e-5, 20, 10)
    # the demo keeps its own values in conf/base
    base = OmegaConfigLoader(conf_source=str(REPO / "conf"), base_env="base", default_run_env="local")["parameters"]
    assert base["pretrain_stage3"]["optim"]["lr"] != paper_params["pretrain_stage3"]["optim"]["lr"]
