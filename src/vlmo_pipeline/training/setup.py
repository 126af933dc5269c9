"""Set-up of one training run: its vocabulary, its starting model with this stage's heads, its freezing rule.

* :func:`resolve_vocab_file`: ``config.vocab_file`` or the ``vocab.txt`` of the ``init`` model directory;
* :func:`prepare_model`: from a registry name (stage 1; optionally initialised from a BEiT checkpoint) or from the
  previous stage's model directory, switched to this stage's tasks (``set_tasks``), new ITC temperatures and the
  optional VL-FFN copy applied;
* :func:`apply_freezing`: everything outside ``config.trainable`` frozen (stage 1/2 rules by default);
* :func:`resolved_precision`: the Trainer's precision (``auto``: bf16-mixed on a GPU, 32-true on the CPU).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch

from vlmo_pipeline.data.datasets import ANSWER_VOCAB_FILE, load_answer_vocab
from vlmo_pipeline.models import VLMo, create_model, list_configs, load_beit_checkpoint
from vlmo_pipeline.models.pretrained import VOCAB_NAME
from vlmo_pipeline.training.config import RunConfig
from vlmo_pipeline.training.freezing import apply_trainable_substrings, freeze_report, unmatched_substrings
from vlmo_pipeline.training.modules import VLMoTaskModule

__all__ = ["resolve_vocab_file", "answer_vocab", "prepare_model", "apply_freezing", "resolved_precision"]

logger = logging.getLogger(__name__)


def resolve_vocab_file(config: RunConfig) -> Path:
    """``config.vocab_file``, else the ``vocab.txt`` saved with the ``init`` model directory."""
    if config.vocab_file:
        path = Path(config.vocab_file)
        if path.is_dir():
            path = path / VOCAB_NAME
    else:
        path = Path(config.init) / VOCAB_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{config.name}: WordPiece vocabulary {path} not found (set vocab_file, or start from a model directory "
            "that contains vocab.txt)"
        )
    return path


def answer_vocab(config: RunConfig) -> tuple[list[str], Path]:
    names = list(config.data.datasets)
    if not names:
        raise ValueError(f"{config.name}: data.datasets must name the VQA dataset (e.g. vqav2: [train])")
    directory = config.data.dataset_dir(names[0])
    return load_answer_vocab(directory), directory / ANSWER_VOCAB_FILE


def prepare_model(config: RunConfig, vocab_size: int) -> VLMo:
    """Build the starting model of ``config`` with this stage's heads (see module docstring)."""
    overrides = dict(config.model_overrides)
    if config.init in list_configs():
        model = create_model(config.init, vocab_size=vocab_size, loss_names=config.tasks, **overrides)
        if config.init_from:
            # Raises CheckpointMismatchError when the file does not fit the image side; else logs one line.
            load_beit_checkpoint(model, config.init_from)
    elif Path(config.init).is_dir():
        model = VLMo.from_pretrained(config.init, **overrides)
        if model.config.vocab_size != vocab_size:
            raise ValueError(
                f"{config.name}: model {config.init} has vocab_size {model.config.vocab_size} but the tokenizer has "
                f"{vocab_size} tokens"
            )
    else:
        raise FileNotFoundError(
            f"{config.name}: init {config.init!r} is neither a registered config ({', '.join(list_configs())}) nor "
            "a model directory (did the previous stage run?)"
        )
    had_vlffn = any(block.mlp_vl is not None for block in model.transformer.blocks)
    # Temperatures "created by this run": all of them for a model built from a config name, else the new ones.
    from_checkpoint = config.init not in list_configs()
    had_scales = {
        name for name in ("logit_scale", "logit_vl_scale") if from_checkpoint and getattr(model, name, None) is not None
    }
    vqa_labels = len(answer_vocab(config)[0]) if config.stage == "vqa" else None
    model.set_tasks(config.tasks, vqa_num_labels=vqa_labels)
    if config.itc_temperature_init is not None:
        for name in ("logit_scale", "logit_vl_scale"):
            scale = getattr(model, name, None)
            if scale is not None and name not in had_scales:
                with torch.no_grad():
                    scale.fill_(math.log(1.0 / config.itc_temperature_init))
    if config.stage == "stage3" and not had_vlffn and config.vlffn_init != "random":
        _copy_ffn_into_vlffn(model, "mlp_text" if config.vlffn_init == "text" else "mlp_imag")
    return model.train()


@torch.no_grad()
def _copy_ffn_into_vlffn(model: VLMo, source: str) -> None:
    """Initialise every VL-FFN (and its norm) from the same block's L-FFN or V-FFN (option, not official)."""
    norm_source = source.replace("mlp", "norm2")
    for block in model.transformer.blocks:
        if block.mlp_vl is not None:
            block.mlp_vl.load_state_dict(getattr(block, source).state_dict())
            block.norm2_vl.load_state_dict(getattr(block, norm_source).state_dict())


#: Substrings of the default freezing rules naming parameters only some models have (absolute image positions).
_OPTIONAL_SUBSTRINGS = ("transformer.pos_embed",)


def apply_freezing(module: VLMoTaskModule, config: RunConfig) -> dict[str, int]:
    if config.trainable is None:
        return freeze_report(module)
    missing = [
        substring
        for substring in unmatched_substrings(module, config.trainable)
        if substring not in _OPTIONAL_SUBSTRINGS
    ]
    if missing:
        logger.warning(
            "%s: trainable substrings %s match no parameter of this model (a typo or a renamed "
            "module leaves that part frozen)",
            config.name,
            missing,
        )
    trainable = apply_trainable_substrings(module, config.trainable)
    if not trainable:
        raise ValueError(f"{config.name}: trainable={config.trainable} leaves no parameter to train")
    return freeze_report(module)


def resolved_precision(config: RunConfig) -> str | int:
    """``trainer.precision``, with ``auto`` resolved: bf16-mixed on a GPU, 32-true on the CPU."""
    if config.trainer.precision != "auto":
        return config.trainer.precision
    on_gpu = torch.cuda.is_available() and config.trainer.accelerator in ("auto", "gpu", "cuda")
    return "bf16-mixed" if on_gpu else "32-true"
